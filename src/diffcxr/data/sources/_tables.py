"""Small helpers shared by the sources: reading (gzipped) CSV tables and finding files next to a path."""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

import numpy as np

from diffcxr.data.records import empty_labels, parse_label_value
from diffcxr.errors import DatasetError
from diffcxr.findings import CHEXPERT_FINDINGS


def read_table(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV (or ``.csv.gz``) file as dicts; a clear error for unreadable files."""
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read table {path}: {exc}") from None
    text = raw.decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        raise DatasetError(f"table {path} is empty (no header row)")
    return list(reader)


_COLUMN_NAME = re.compile(r"[\w .()\-]{1,40}")


def describe_header(columns) -> str:
    """The columns of a CSV header for an error message, without echoing a file that is not a CSV at all
    (``/etc/passwd`` read as CSV has one "column" that is its whole first line)."""
    names = [str(c).strip() for c in columns or [] if c is not None]
    if not names:
        return "no header row"
    if len(names) <= 20 and all(_COLUMN_NAME.fullmatch(n) for n in names):
        return "columns " + ", ".join(names)
    return f"a first line that is not a header of column names ({len(names)} field{'s' * (len(names) != 1)})"


def find_first(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` (tried also with ``.gz``) that exists in ``folder``."""
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def labels_from_row(row: dict[str, str], where: str) -> tuple[np.ndarray, bool]:
    """CheXpert columns of a row → (labels vector, whether any finding column was present)."""
    labels = empty_labels()
    present = False
    for index, name in enumerate(CHEXPERT_FINDINGS):
        if name in row:
            present = True
            try:
                labels[index] = parse_label_value(row[name])
            except ValueError as exc:
                raise DatasetError(f"{where}: column {name!r}: {exc}") from None
    return labels, present
