"""The finding vocabularies shared by the data layer, the report labeler and the models.

``CHEXPERT_FINDINGS`` are the 14 CheXpert observations in the column order of
``mimic-cxr-2.0.0-chexpert.csv``. ``KNOWLEDGE_FINDINGS`` are the 11 findings that Diff-CXR's
"general disease knowledge" prompt is written over, in the prompt's order.

Label values everywhere: ``1.0`` positive, ``0.0`` negative, ``-1.0`` uncertain, ``NaN`` not mentioned.
"""

from __future__ import annotations

import numpy as np

from diffcxr.errors import DiffCXRError

CHEXPERT_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)

KNOWLEDGE_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "Pleural Effusion",
    "Pneumonia",
    "Pneumothorax",
)

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0

FRONTAL_VIEWS: frozenset[str] = frozenset({"PA", "AP", "AP SUPINE", "AP AXIAL", "PA LLD", "AP LLD", "AP ERECT"})


def is_frontal(view: str | None) -> bool:
    """True for PA/AP-type view strings (case-insensitive); False for lateral or unknown views."""
    if not view:
        return False
    return view.strip().upper() in FRONTAL_VIEWS


LABEL_POLICIES: tuple[str, ...] = ("positive", "negative", "exclude")


def map_labels(labels, uncertain: str = "exclude", missing: str = "negative") -> np.ndarray:
    """The one label policy of the project: ``1/0/-1/NaN`` labels → ``1/0/NaN`` targets (NaN = left out).

    ``uncertain`` says what ``-1`` becomes and ``missing`` what not mentioned (NaN) becomes: ``"positive"``
    (1), ``"negative"`` (0) or ``"exclude"`` (NaN). Used by classifier training, its hold-out AUROC and every
    mAUC of generated images, so all of them read the labels the same way.
    """
    if uncertain not in LABEL_POLICIES or missing not in LABEL_POLICIES:
        raise DiffCXRError(f"label policies must be one of {', '.join(LABEL_POLICIES)}, got uncertain={uncertain!r}, "
                           f"missing={missing!r}")
    out = np.asarray(labels, dtype=np.float64).copy()
    value = {"exclude": np.nan, "positive": 1.0, "negative": 0.0}
    nan, unc = np.isnan(out), out == -1
    out[nan] = value[missing]
    out[unc] = value[uncertain]
    return out
