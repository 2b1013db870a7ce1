"""Files of reports to label or generate from: one reader for ``.txt``, ``.jsonl`` and ``.csv``, streamed.

* ``.txt`` (or ``-`` for standard input): one report per non-blank line; its id is the line number.
* ``.jsonl`` / ``.ndjson``: one object per line with a string ``report``, optional ``id`` and ``labels`` (an
  object such as ``{"Edema": 1}`` or a string such as ``"Edema=1"``); the default id is the line number.
* ``.csv``: the first of :data:`REPORT_COLUMNS` the header has (CheXGenBench's prompt files have ``prompt`` /
  ``annotated_prompt``; CheXpert-style label files ``Reports``), an optional ``id`` column; the default id is the
  row number. Rows with an empty report are kept (a label file stays aligned with its input); generation
  refuses them.

Files are read as strict UTF-8 one line at a time, so a file of a million reports is never held in memory, and
every problem is a :class:`~diffcxr.errors.ReportError` naming ``file:line``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from diffcxr.data.sources._tables import describe_header
from diffcxr.errors import ReportError

__all__ = ["ReportItem", "REPORT_COLUMNS", "REPORT_FILE_SUFFIXES", "iter_report_file"]

REPORT_COLUMNS = ("report", "reports", "prompt", "annotated_prompt")  # CSV header, any case: the first present
REPORT_FILE_SUFFIXES = (".txt", ".jsonl", ".ndjson", ".csv")


@dataclass(frozen=True)
class ReportItem:
    """One report of a reports file: ``labels`` is ``None``, a ``{finding: value}`` mapping or an override string."""

    id: str
    report: str
    labels: dict | str | None = None
    line: int = 0  # where it starts in the file (1-based)


def iter_report_file(source: str | Path) -> Iterator[ReportItem]:
    """Yield the reports of a ``.txt`` / ``.jsonl`` / ``.csv`` file (``"-"``: standard input, one per line)."""
    if str(source) == "-":
        yield from _txt_items(sys.stdin, "<stdin>")
        return
    path = Path(source).expanduser()
    if path.is_dir():
        raise ReportError(f"{path} is a folder; give a reports file (.txt, .jsonl or .csv)")
    if not path.is_file():
        raise ReportError(f"reports file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in REPORT_FILE_SUFFIXES:
        raise ReportError(f"{path}: unsupported reports file type {suffix or '(no suffix)'!r}; use .txt (one report "
                          "per line), .jsonl (key 'report') or .csv (column 'report')")
    reader = {".txt": _txt_items, ".jsonl": _jsonl_items, ".ndjson": _jsonl_items, ".csv": _csv_items}[suffix]
    with path.open(encoding="utf-8", newline="" if suffix == ".csv" else None) as handle:
        try:
            yield from reader(handle, str(path))
        except UnicodeDecodeError as exc:
            raise ReportError(f"{path} is not UTF-8 text (byte {exc.start} of a read block); re-save it as UTF-8") from None


def _txt_items(handle: io.TextIOBase, name: str) -> Iterator[ReportItem]:
    for lineno, line in enumerate(handle, start=1):
        if line.strip():
            yield ReportItem(id=str(lineno), report=line.strip(), line=lineno)


def _jsonl_items(handle: io.TextIOBase, name: str) -> Iterator[ReportItem]:
    for lineno, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{name}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("report"), str):
            raise ReportError(f"{name}:{lineno}: each line must be an object with a \"report\" string (optional \"id\")")
        labels = obj.get("labels")
        if labels is not None and not isinstance(labels, (dict, str)):
            raise ReportError(f"{name}:{lineno}: \"labels\" must be an object such as {{\"Edema\": 1}} or a string "
                              f"such as \"Edema=1\", got {type(labels).__name__}")
        report_id = obj.get("id", lineno)
        if not isinstance(report_id, (str, int)):
            raise ReportError(f"{name}:{lineno}: \"id\" must be a string or an integer")
        yield ReportItem(id=str(report_id), report=obj["report"], labels=labels, line=lineno)


def _csv_items(handle: io.TextIOBase, name: str) -> Iterator[ReportItem]:
    csv.field_size_limit(sys.maxsize)
    reader = csv.DictReader(handle)
    columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
    column = next((columns[c] for c in REPORT_COLUMNS if c in columns), None)
    if column is None:
        raise ReportError(f"{name}: no report column; the CSV needs one of {', '.join(REPORT_COLUMNS)} "
                          f"(it has {describe_header(reader.fieldnames)})")
    id_column = columns.get("id")
    for row_number, row in enumerate(reader, start=1):
        report_id = (row.get(id_column) or "").strip() if id_column else ""
        yield ReportItem(id=report_id or str(row_number), report=(row.get(column) or "").strip(), line=reader.line_num)
