"""The finding vocabularies shared by the data layer, the report labeler and the models.

``CHEXPERT_FINDINGS`` are the 14 CheXpert observations in the column order of
``mimic-cxr-2.0.0-chexpert.csv``. ``KNOWLEDGE_FINDINGS`` are the 11 findings that Diff-CXR's
"general disease knowledge" prompt is written over, in the prompt's order.

Label values everywhere: ``1.0`` positive, ``0.0`` negative, ``-1.0`` uncertain, ``NaN`` not mentioned.
"""

from __future__ import annotations

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
