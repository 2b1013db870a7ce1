"""What every subcommand's parser shares: one-line usage errors and validated numeric options.

Numbers are checked once, where they are parsed: ``--guidance nan`` or ``--seed -1`` is a usage error naming the
option, never a value that silently turns a feature off or writes ``NaN`` into a JSON file.
"""

from __future__ import annotations

import argparse
import math

from diffcxr.errors import DiffCXRError

__all__ = ["CLIParser", "finite_float", "positive_float", "fraction", "count", "non_negative"]


class CLIParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``diffcxr: error: ...``, exit 1) instead of usage + exit 2."""

    def error(self, message: str):  # noqa: D102 - argparse API
        raise DiffCXRError(f"{self.prog}: {message} (see {self.prog} --help)")


def finite_float(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def count(text: str) -> int:
    """An integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def non_negative(text: str) -> int:
    """An integer >= 0 (seeds, thread counts, "0 = all/auto" options)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value
