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
from diffcxr.cli.arguments import CLIParser
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
    "app": "diffcxr.cli.app",
}

# Expected failures: the user's input or environment, not a bug in diffcxr. Each becomes one line (-v: traceback).
USER_ERRORS = (DiffCXRError, OSError, UnicodeError, ValueError, MemoryError)


def _expected_failure(exc: BaseException) -> bool:
    """Also a corrupt weights file (safetensors) and an image too large to decode safely (PIL)."""
    if isinstance(exc, USER_ERRORS):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"SafetensorError", "DecompressionBombError", "UnidentifiedImageError"})


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, DiffCXRError):
        return first or type(exc).__name__
    if isinstance(exc, MemoryError):
        return "out of memory (is a count or size option far too large?)"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = CLIParser(
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
    argv = list(argv) if argv is not None else sys.argv[1:]
    verbose = "-v" in argv or "--verbose" in argv
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        return int(args._run(args) or 0)
    except Exception as exc:  # the one error boundary: expected failures are one line, bugs keep their traceback
        if verbose or not _expected_failure(exc):
            raise
        code = getattr(exc, "exit_code", 1)  # TrainingInterrupted: 128 + signal, as a shell reports a signal
        print(f"diffcxr: {'interrupted' if code > 128 else 'error'}: {_one_line(exc)}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("diffcxr: interrupted", file=sys.stderr)
        return 130


def close_process_group() -> None:
    """Close torch.distributed's process group if this run opened one (every process of ``accelerate launch``).

    A gloo group left to the interpreter's exit can abort a process whose work is done ("terminate called without
    an active exception"), turning a finished multi-process run into a failed one. No barrier: a process that
    returned takes part in no further collective, and a barrier would hang beside a process that failed.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def entry() -> int:
    """The ``diffcxr`` console script and ``python -m diffcxr``: :func:`main`, then :func:`close_process_group`.

    Not part of ``main`` because commands call ``main`` in-process (``evaluate --model`` runs ``generate``).
    """
    code = main()
    close_process_group()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(entry())
