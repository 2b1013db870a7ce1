"""``python -m diffcxr`` entry point."""

import sys

from diffcxr.cli.main import main

sys.exit(main())
