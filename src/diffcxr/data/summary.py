"""Dataset summaries for ``diffcxr data info``: counts, views, splits, label prevalence, unreadable files."""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np

from diffcxr.data.image_io import read_image_array
from diffcxr.data.records import Record
from diffcxr.errors import ImageReadError
from diffcxr.findings import CHEXPERT_FINDINGS


def summarize_records(records: Sequence[Record], *, check_images: bool = False, progress: bool = False) -> dict:
    """Counts over records. With ``check_images`` every image is decoded and failures are listed."""
    labels = np.stack([r.labels for r in records]) if records else np.zeros((0, len(CHEXPERT_FINDINGS)), np.float32)
    prevalence = {
        name: {
            "positive": int((labels[:, i] == 1).sum()),
            "negative": int((labels[:, i] == 0).sum()),
            "uncertain": int((labels[:, i] == -1).sum()),
            "not_mentioned": int(np.isnan(labels[:, i]).sum()),
        }
        for i, name in enumerate(CHEXPERT_FINDINGS)
    }
    with_path = [r for r in records if r.image_path is not None]
    summary = {
        "records": len(records),
        "patients": len({r.patient_id or r.id for r in records}),
        "with_image_path": len(with_path),
        "image_files_missing": sum(1 for r in with_path if not r.image_path.is_file()),
        "with_report_text": sum(1 for r in records if r.report.strip()),
        "views": dict(collections.Counter(r.view for r in records).most_common()),
        "splits": dict(collections.Counter(r.split or "-" for r in records).most_common()),
        "labels_source": dict(collections.Counter(r.labels_source for r in records).most_common()),
        "label_prevalence": prevalence,
    }
    if check_images:
        unreadable = {}
        iterator = with_path
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(with_path, desc="checking images", unit="img")
        for record in iterator:
            try:
                read_image_array(record.image_path)
            except ImageReadError as exc:
                unreadable[record.id] = str(exc)
        summary["unreadable"] = unreadable
    return summary


def format_summary(spec: str, summary: dict) -> str:
    """Plain-text rendering of :func:`summarize_records` output."""
    lines = [
        f"dataset {spec}",
        f"  records {summary['records']}  patients {summary['patients']}  with image path {summary['with_image_path']}"
        f"  image files missing {summary['image_files_missing']}  with report text {summary['with_report_text']}",
        "  views   " + ", ".join(f"{k}: {v}" for k, v in summary["views"].items()),
        "  splits  " + ", ".join(f"{k}: {v}" for k, v in summary["splits"].items()),
        "  labels from " + ", ".join(f"{k}: {v}" for k, v in summary["labels_source"].items()),
        f"  {'finding':<27}{'pos':>7}{'neg':>7}{'unc':>7}{'n/m':>8}",
    ]
    for name, counts in summary["label_prevalence"].items():
        lines.append(f"  {name:<27}{counts['positive']:>7}{counts['negative']:>7}{counts['uncertain']:>7}{counts['not_mentioned']:>8}")
    if "unreadable" in summary:
        lines.append(f"  unreadable images: {len(summary['unreadable'])}")
        lines += [f"    {k}: {v}" for k, v in sorted(summary["unreadable"].items())]
    return "\n".join(lines)
