"""``mimic`` source: MIMIC-CXR-JPG (images, metadata, CheXpert labels, official split) + free-text reports.

Expected under the root (``.csv`` or ``.csv.gz``)::

    mimic-cxr-2.0.0-metadata.csv   dicom_id, subject_id, study_id, ViewPosition, ...
    mimic-cxr-2.0.0-chexpert.csv   subject_id, study_id, <14 findings>   (1 / 0 / -1 / empty)
    mimic-cxr-2.0.0-split.csv      dicom_id, study_id, subject_id, split (train / validate / test)
    files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg
    files/pXX/pSUBJECT/sSTUDY.txt  (reports, from mimic-cxr-reports.zip; or give ?reports=DIR)

Labels are the dataset's CheXpert labels; the report is findings + impression of the free text.
"""

from __future__ import annotations

from pathlib import Path

from diffcxr.data.records import Record
from diffcxr.data.reports import report_from_text
from diffcxr.data.sources._tables import find_first, labels_from_row, read_table
from diffcxr.errors import DatasetError

TABLES = {
    "metadata": ("mimic-cxr-2.0.0-metadata.csv",),
    "chexpert": ("mimic-cxr-2.0.0-chexpert.csv", "mimic-cxr-2.1.0-chexpert.csv"),
    "split": ("mimic-cxr-2.0.0-split.csv",),
}


def _study_folder(root: Path, subject: str, study: str) -> Path:
    return root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"


def read_mimic(path: Path, reports: str | None = None) -> list[Record]:
    """Read a MIMIC-CXR-JPG root. Images without a metadata row are ignored; missing reports give ``""``."""
    if not path.is_dir():
        raise DatasetError(f"mimic source needs the MIMIC-CXR-JPG root folder, got {path}")
    tables = {name: find_first(path, names) for name, names in TABLES.items()}
    if tables["metadata"] is None:
        raise DatasetError(f"{path}: mimic-cxr-2.0.0-metadata.csv(.gz) not found; is this the MIMIC-CXR-JPG root?")
    report_root = Path(reports) if reports else path
    if not report_root.is_dir():
        raise DatasetError(f"MIMIC report folder not found: {report_root}")

    labels = {}
    if tables["chexpert"] is not None:
        for line, row in enumerate(read_table(tables["chexpert"]), start=2):
            labels[(row["subject_id"], row["study_id"])] = labels_from_row(row, f"{tables['chexpert']}:{line}")[0]
    splits = {}
    if tables["split"] is not None:
        splits = {row["dicom_id"]: row["split"].strip().lower() for row in read_table(tables["split"])}

    report_cache: dict[tuple[str, str], str] = {}
    records = []
    for row in read_table(tables["metadata"]):
        try:
            dicom_id, subject, study = row["dicom_id"], row["subject_id"], row["study_id"]
        except KeyError as exc:
            raise DatasetError(f"{tables['metadata']} lacks column {exc}") from None
        key = (subject, study)
        if key not in report_cache:
            report_cache[key] = _read_report(report_root, subject, study)
        record = Record(
            id=dicom_id,
            image_path=_study_folder(path, subject, study) / f"{dicom_id}.jpg",
            report=report_cache[key],
            patient_id=subject,
            view=(row.get("ViewPosition") or "").strip().upper() or "UNKNOWN",
            split={"validate": "val"}.get(splits.get(dicom_id, ""), splits.get(dicom_id, "")),
            meta={"study": study},
        )
        if key in labels:
            record.labels = labels[key].copy()
            record.labels_source = "dataset"
        records.append(record)
    return records


def _read_report(report_root: Path, subject: str, study: str) -> str:
    for folder in (report_root, report_root / "reports"):
        candidate = _study_folder(folder, subject, study).with_suffix(".txt")
        if candidate.is_file():
            return report_from_text(candidate.read_text(encoding="utf-8", errors="replace"))
    return ""
