"""``covid`` source: the ieee8023 COVID-19 chest X-ray collection (``metadata.csv`` + ``images/``)."""

from __future__ import annotations

import logging
from pathlib import Path

from diffcxr.data.records import Record
from diffcxr.data.reports import clean_report_text
from diffcxr.data.sources._tables import read_table
from diffcxr.errors import DatasetError
from diffcxr.findings import CHEXPERT_FINDINGS

logger = logging.getLogger(__name__)
PNEUMONIA = CHEXPERT_FINDINGS.index("Pneumonia")
NO_FINDING = CHEXPERT_FINDINGS.index("No Finding")


def read_covid(path: Path, images: str | None = None, modality: str = "X-ray") -> list[Record]:
    """Read the COVID-19 collection. The report is the ``clinical_notes`` free text (cleaned).

    Duplicate metadata rows (same ``filename``) are dropped, keeping the first. Only ``modality`` rows (X-ray)
    are kept. The ``finding`` column adds dataset labels: an infectious finding (COVID-19, SARS, bacterial or
    viral pneumonia, ...) sets Pneumonia = 1, "No Finding" sets No Finding = 1; the rest is left to the labeler.
    """
    metadata = path / "metadata.csv" if path.is_dir() else path
    if not metadata.is_file():
        raise DatasetError(f"no metadata.csv in {path} (expected the covid-chestxray-dataset folder)")
    image_dir = Path(images) if images else metadata.parent / "images"
    rows = read_table(metadata)
    if rows and "filename" not in rows[0]:
        raise DatasetError(f"{metadata} has no 'filename' column; is it the ieee8023 covid-chestxray-dataset metadata?")
    seen: set[str] = set()
    records: list[Record] = []
    duplicates = 0
    for row in rows:
        filename = (row.get("filename") or "").strip()
        if not filename or (modality and row.get("modality", modality) != modality):
            continue
        if filename in seen:
            duplicates += 1
            continue
        seen.add(filename)
        record = Record(
            id=Path(filename).stem,
            image_path=image_dir / filename,
            report=clean_report_text(row.get("clinical_notes") or ""),
            patient_id=(row.get("patientid") or "").strip(),
            view=(row.get("view") or "").strip().upper() or "UNKNOWN",
            meta={k: row.get(k, "") for k in ("finding", "sex", "age", "license", "offset", "location", "doi", "url")},
        )
        finding = (row.get("finding") or "").strip().lower()
        if finding and finding != "todo":
            record.labels[NO_FINDING if finding == "no finding" else PNEUMONIA] = 1.0
            record.labels_source = "partial"
        records.append(record)
    if duplicates:
        logger.info("covid: dropped %d duplicate metadata rows", duplicates)
    return records
