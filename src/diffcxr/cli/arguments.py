"""What every subcommand's parser shares: one-line usage errors and validated numeric options.

Numbers are checked once, where they are parsed: ``--guidance nan`` or ``--seed -1`` is a usage error naming the
option, never a value that silently turns a feature off or writes ``NaN`` into a JSON file.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from diffcxr.errors import DiffCXRError

T = TypeVar("T")

__all__ = ["CLIParser", "finite_float", "positive_float", "fraction", "count", "count_at_most", "non_negative",
           "comma_list"]


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


def count_at_most(limit: int, why: str) -> Callable[[str], int]:
    """An integer in ``[1, limit]``; ``why`` says what the limit protects (memory, disk)."""

    def parse(text: str) -> int:
        value = count(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"{text!r} is more than {limit:,} ({why})")
        return value

    parse.__name__ = "count"
    return parse


def comma_list(item: Callable[[str], T]) -> Callable[[str], list[T]]:
    """A comma-separated list of at least one ``item`` value (``"16,32,64"``)."""

    def parse(text: str) -> list[T]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"{text!r} holds no values")
        return [item(part) for part in parts]

    parse.__name__ = f"list of {getattr(item, '__name__', 'values')}"
    return parse
