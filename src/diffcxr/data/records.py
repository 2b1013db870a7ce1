"""The one record type every dataset source produces, and patient-level splitting.

A :class:`Record` is everything about one image except its pixels, so reading a dataset's records is cheap
(labeling 3,955 IU reports or counting MIMIC views needs no image decoding).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from diffcxr.findings import CHEXPERT_FINDINGS, is_frontal

SPLITS = ("train", "val", "test")


def empty_labels() -> np.ndarray:
    """A float32 vector over :data:`CHEXPERT_FINDINGS`, all NaN (= not mentioned)."""
    return np.full(len(CHEXPERT_FINDINGS), np.nan, dtype=np.float32)


def parse_label_value(value: object) -> float:
    """CheXpert cell → ``1.0``/``0.0``/``-1.0``/``NaN``. Accepts numbers, '1', '1.0', '-1', '', 'nan', None."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float, np.floating)):
        number = float(value)
    else:
        text = str(value).strip().lower()
        if text in ("", "nan", "none", "null", "na"):
            return math.nan
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"label value {value!r} is not one of 1, 0, -1 or empty") from None
    if math.isnan(number):
        return math.nan
    if number not in (1.0, 0.0, -1.0):
        raise ValueError(f"label value {value!r} is not one of 1, 0, -1 or empty")
    return number


@dataclasses.dataclass
class Record:
    """One image of a dataset, without its pixels.

    ``labels``: float32 ``(14,)`` over :data:`CHEXPERT_FINDINGS`; 1 positive, 0 negative, -1 uncertain,
    NaN not mentioned. ``labels_source`` says where they came from (``"dataset"`` annotations or
    ``"labeler"`` = derived from the report text).
    """

    id: str
    image_path: Path | None
    report: str
    labels: np.ndarray = dataclasses.field(default_factory=empty_labels)
    patient_id: str = ""
    view: str = "UNKNOWN"
    split: str = ""
    labels_source: str = "none"
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def is_frontal(self) -> bool:
        return is_frontal(self.view)

    def labels_dict(self) -> dict[str, float | None]:
        """Labels as ``{finding: 1.0/0.0/-1.0/None}``."""
        return {name: (None if math.isnan(v) else float(v)) for name, v in zip(CHEXPERT_FINDINGS, self.labels.tolist())}


def patient_split(patient_id: str, fractions: Sequence[float] = (0.8, 0.1, 0.1), salt: str = "diffcxr") -> str:
    """Deterministic train/val/test assignment from a hash of the patient id (no patient in two splits)."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    digest = hashlib.sha256(f"{salt}:{patient_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


def assign_missing_splits(records: Iterable[Record], fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> None:
    """Give every record without an official split a patient-level hash split (in place)."""
    for record in records:
        if not record.split:
            record.split = patient_split(record.patient_id or record.id, fractions)


def label_from_reports(records: Sequence[Record], overwrite: bool = False) -> int:
    """Fill labels from the report text with :mod:`diffcxr.knowledge` (in place). Returns how many records.

    ``labels_source`` decides: ``"dataset"`` (full annotations) is left alone unless ``overwrite``;
    ``"partial"`` (a few dataset labels, e.g. the COVID ``finding`` column) keeps its labels and takes the
    labeler's for the findings it does not annotate; ``"none"`` takes the labeler's. "No Finding" is cleared
    when a merged pathology label is positive or uncertain.
    """
    no_finding = CHEXPERT_FINDINGS.index("No Finding")
    pathologies = [i for i, name in enumerate(CHEXPERT_FINDINGS) if name not in ("No Finding", "Support Devices")]
    count = 0
    for record in records:
        if (record.labels_source == "dataset" and not overwrite) or not record.report:
            continue
        from diffcxr.knowledge import label_report  # only when a record needs it

        derived = np.asarray(label_report(record.report).to_vector(), dtype=np.float32)
        if record.labels_source == "partial" and not overwrite:
            merged = np.where(np.isnan(record.labels), derived, record.labels).astype(np.float32)
            if np.isnan(record.labels[no_finding]) and np.any(np.isin(merged[pathologies], (1.0, -1.0))):
                merged[no_finding] = np.nan
            record.labels = merged
            record.labels_source = "partial+labeler"
        else:
            record.labels = derived
            record.labels_source = "labeler"
        count += 1
    return count
