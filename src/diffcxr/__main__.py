"""``python -m diffcxr`` entry point."""

import sys

from diffcxr.cli.main import entry

sys.exit(entry())
