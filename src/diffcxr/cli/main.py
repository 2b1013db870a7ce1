"""``diffcxr`` entry point and the one registry of subcommands.

Every subcommand lives in its own module exposing::

    HELP: str                                   # one line for ``diffcxr --help``
    def add_arguments(parser) -> None           # argparse setup
    def run(args) -> int                        # the work; returns the exit code

Command modules import only ``argparse`` at module level and the library inside ``run``, so
``diffcxr --help`` stays fast and a broken optional dependency of one command never breaks the others.
``main(argv)`` is callable in-process (tests use it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from diffcxr import __version__
from diffcxr.errors import DiffCXRError

# name -> module path. Add new subcommands here and nowhere else.
COMMANDS: dict[str, str] = {
    "env": "diffcxr.cli.env",
    "phantom": "diffcxr.cli.phantom",
    "label": "diffcxr.cli.label",
    "flops": "diffcxr.cli.flops",
    "generate": "diffcxr.cli.generate",
    "data": "diffcxr.cli.data",
    "filter": "diffcxr.cli.filter",
    "evaluate": "diffcxr.cli.evaluate",
    "downstream": "diffcxr.cli.downstream",
    "train": "diffcxr.cli.train",
    "demo": "diffcxr.cli.demo",
}

# Errors that are caused by the user's input/environment rather than by a bug in diffcxr.
USER_ERRORS = (DiffCXRError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffcxr",
        description="Diff-CXR: generate chest X-rays from radiology reports, and everything around it.",
    )
    parser.add_argument("--version", action="version", version=f"diffcxr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_path in COMMANDS.items():
        module = importlib.import_module(module_path)
        cmd_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd_parser)
        cmd_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as exc:
        if args.verbose:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"diffcxr: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("diffcxr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
