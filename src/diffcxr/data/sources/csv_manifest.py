"""``csv`` source: a generic manifest (image path, report text, optional labels) and the ``phantom`` alias."""

from __future__ import annotations

from pathlib import Path

from diffcxr.data.records import Record
from diffcxr.data.reports import clean_report_text
from diffcxr.data.sources._tables import describe_header, labels_from_row, read_table
from diffcxr.errors import DatasetError

PATH_COLUMNS = ("path", "image", "image_path", "filename", "file")
REPORT_COLUMNS = ("report", "text", "report_text", "caption")
KNOWN_COLUMNS = {"id", "patient_id", "view", "split", *PATH_COLUMNS, *REPORT_COLUMNS}


def read_csv_manifest(path: Path, root: str | None = None) -> list[Record]:
    """Read a manifest CSV. Image paths are relative to ``root`` (default: the CSV's folder) unless absolute.

    Columns: an image column (``path``/``image``/``filename``), a report column (``report``/``text``), optional
    ``id``, ``patient_id``, ``view``, ``split`` and any of the 14 CheXpert finding names; other columns are kept
    in ``Record.meta``.
    """
    if path.is_dir():
        path = path / "metadata.csv"
        if not path.is_file():
            raise DatasetError(f"no metadata.csv in {path.parent}; give the manifest CSV file itself")
    rows = read_table(path)
    if not rows:
        raise DatasetError(f"manifest {path} has a header but no rows")
    columns = rows[0].keys()
    path_column = next((c for c in PATH_COLUMNS if c in columns), None)
    report_column = next((c for c in REPORT_COLUMNS if c in columns), None)
    if path_column is None and report_column is None:
        raise DatasetError(f"manifest {path} needs an image column ({'/'.join(PATH_COLUMNS)}) or a report column ({'/'.join(REPORT_COLUMNS)}); it has {describe_header(columns)}")
    base = Path(root) if root else path.parent
    records = []
    for line, row in enumerate(rows, start=2):
        image = (row.get(path_column) or "").strip() if path_column else ""
        image_path = (Path(image) if Path(image).is_absolute() else base / image) if image else None
        labels, annotated = labels_from_row(row, f"{path}:{line}")
        split = (row.get("split") or "").strip().lower()
        records.append(
            Record(
                id=(row.get("id") or "").strip() or (Path(image).stem if image else f"row{line - 1}"),
                image_path=image_path,
                report=clean_report_text(row.get(report_column) or "") if report_column else "",
                labels=labels,
                patient_id=(row.get("patient_id") or "").strip(),
                view=(row.get("view") or "").strip().upper() or "UNKNOWN",
                split={"validate": "val", "valid": "val", "validation": "val"}.get(split, split),
                labels_source="dataset" if annotated else "none",
                meta={k: v for k, v in row.items() if k not in KNOWN_COLUMNS and k is not None},
            )
        )
    return records


def read_phantom(path: Path) -> list[Record]:
    """``phantom:DIR`` — a folder written by ``diffcxr phantom`` (``DIR/metadata.csv`` + ``DIR/images``)."""
    if not path.is_dir():
        raise DatasetError(f"phantom dataset must be a folder written by `diffcxr phantom`, got {path}")
    return read_csv_manifest(path / "metadata.csv" if (path / "metadata.csv").exists() else path)
