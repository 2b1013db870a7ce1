"""``iu`` source: Indiana University chest X-rays (Open-I), from the original XML or R2Gen's annotation.json.

One :class:`Record` per image (a study's frontal and lateral images share its report). Views come from the
DICOM metadata table (``nlmcxr_dicom_metadata.csv[.gz]``, ``View Position``) when it is given or found next
to the reports; images without a recorded view are ``UNKNOWN`` (about a third of IU), which
``frontal_only`` drops.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffcxr.data.iu_reports import iter_iu_reports
from diffcxr.data.records import Record
from diffcxr.data.reports import clean_report_text
from diffcxr.data.sources._tables import find_first, read_table
from diffcxr.errors import DatasetError

METADATA_NAMES = ("nlmcxr_dicom_metadata.csv",)
REPORT_ARCHIVE_NAMES = ("NLMCXR_reports.tgz", "NLMCXR_reports.tar.gz", "ecgen-radiology")
IMAGE_FOLDER_NAMES = ("images", "NLMCXR_png", "png")
R2GEN_SPLITS = {"train": "train", "val": "val", "test": "test"}


def read_iu(path: Path, images: str | None = None, metadata: str | None = None) -> list[Record]:
    """Read IU-Xray from ``path`` (reports archive/folder, a folder containing them, or ``annotation.json``)."""
    if path.is_file() and path.suffix == ".json":
        return _read_r2gen(path, Path(images) if images else path.parent / "images")
    folder = path if path.is_dir() else path.parent
    reports_path = path
    if path.is_dir() and not any(path.glob("*.xml")):
        found = next((folder / n for n in REPORT_ARCHIVE_NAMES if (folder / n).exists()), None)
        if found is None:
            if (folder / "annotation.json").is_file():
                return _read_r2gen(folder / "annotation.json", Path(images) if images else folder / "images")
            raise DatasetError(f"no IU reports in {path}: expected NLMCXR_reports.tgz, ecgen-radiology/ or annotation.json")
        reports_path = found
    image_dir = Path(images) if images else next((folder / n for n in IMAGE_FOLDER_NAMES if (folder / n).is_dir()), None)
    if image_dir is not None and not image_dir.is_dir():
        raise DatasetError(f"IU image folder not found: {image_dir}")
    metadata_path = Path(metadata) if metadata else find_first(folder, METADATA_NAMES)
    views = _read_views(metadata_path) if metadata_path else {}
    image_files = _index_images(image_dir) if image_dir else {}

    records = []
    for report in iter_iu_reports(reports_path):
        for image_id in report.image_ids:
            records.append(
                Record(
                    id=image_id,
                    image_path=image_files.get(image_id) if image_dir else None,
                    report=report.report,
                    patient_id=report.uid,  # IU has one study per patient
                    view=views.get(image_id, "UNKNOWN"),
                    meta={"study": report.uid, "mesh_major": ";".join(report.mesh_major), "source_file": report.source_file},
                )
            )
    if image_dir is not None:
        missing = sum(r.image_path is None for r in records)
        if missing == len(records):
            raise DatasetError(f"none of the {len(records)} IU report images were found as PNGs in {image_dir} (expected names like CXR1_1_IM-0001-3001.png)")
    return records


def _index_images(image_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in image_dir.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm")}


def _read_views(metadata_path: Path) -> dict[str, str]:
    rows = read_table(metadata_path)
    if rows and ("imageid" not in rows[0] or "View Position" not in rows[0]):
        raise DatasetError(f"{metadata_path} lacks the 'imageid' / 'View Position' columns of the IU DICOM metadata")
    return {row["imageid"]: row["View Position"].strip().upper() for row in rows if row.get("View Position", "").strip()}


def _read_r2gen(annotation: Path, image_dir: Path) -> list[Record]:
    """R2Gen ``annotation.json``: ``{"train"|"val"|"test"|"    ": [{"id", "report", "image_path": [...]}]}``.

    The released file names its test split with a string of spaces; it is read as ``test``.
    """
    try:
        data = json.loads(annotation.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read R2Gen annotation {annotation}: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{annotation} is not an R2Gen annotation file (expected an object of splits)")
    records = []
    for key, entries in data.items():
        split = R2GEN_SPLITS.get(key.strip().lower(), "test" if not key.strip() else "")
        if not split:
            raise DatasetError(f"{annotation}: unknown split key {key!r}")
        for entry in entries:
            study = entry["id"]
            for relative in entry.get("image_path", []):
                path = image_dir / relative
                records.append(
                    Record(
                        id=f"{study}/{Path(relative).stem}",
                        image_path=path,
                        report=clean_report_text(entry.get("report", "")),
                        patient_id=study,
                        split=split,
                        meta={"study": study},
                    )
                )
    return records
