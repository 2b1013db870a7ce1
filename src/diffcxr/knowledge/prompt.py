"""The Diff-CXR "general disease knowledge" prompt and user overrides of derived labels.

The prompt is one sentence per positive finding over ``KNOWLEDGE_FINDINGS`` (11 findings, fixed order),
finding names lower-cased: ``"There is atelectasis. There is pleural effusion."``; ``"There is no
finding."`` when none is positive. The side-aware variant (``sides``, from :func:`~diffcxr.knowledge.finding_sides`)
names each finding's side where the report gives one: ``"There is left atelectasis."``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from diffcxr.errors import ReportError
from diffcxr.findings import CHEXPERT_FINDINGS, KNOWLEDGE_FINDINGS, NEGATIVE, POSITIVE, UNCERTAIN

NO_FINDING_PROMPT = "There is no finding."


def _is(value: float | None, target: float) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and float(value) == target


def knowledge_prompt(labels: Mapping[str, float | None], uncertain_as_positive: bool = False,
                     sides: Mapping[str, str] | None = None) -> str:
    """Canonical knowledge prompt from labels (missing keys / ``None`` / NaN = not mentioned); ``sides``
    (``{finding: "left" | "right" | "bilateral"}``) puts the side before the finding's name.

    >>> knowledge_prompt({"Pleural Effusion": 1.0, "Atelectasis": -1.0})
    'There is pleural effusion.'
    >>> knowledge_prompt({"Pleural Effusion": 1.0, "Atelectasis": -1.0}, uncertain_as_positive=True)
    'There is atelectasis. There is pleural effusion.'
    >>> knowledge_prompt({"Pleural Effusion": 1.0}, sides={"Pleural Effusion": "left"})
    'There is left pleural effusion.'
    """
    sides = sides or {}
    sentences = []
    for finding in KNOWLEDGE_FINDINGS:
        value = labels.get(finding)
        if _is(value, POSITIVE) or (uncertain_as_positive and _is(value, UNCERTAIN)):
            side = f"{sides[finding]} " if finding in sides else ""
            sentences.append(f"There is {side}{finding.lower()}.")
    return " ".join(sentences) if sentences else NO_FINDING_PROMPT


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.lower())


_CANONICAL = {_key(f): f for f in CHEXPERT_FINDINGS}
_VALUES = {
    "1": POSITIVE, "1.0": POSITIVE, "+1": POSITIVE, "pos": POSITIVE, "positive": POSITIVE, "true": POSITIVE, "yes": POSITIVE,
    "0": NEGATIVE, "0.0": NEGATIVE, "neg": NEGATIVE, "negative": NEGATIVE, "false": NEGATIVE, "no": NEGATIVE,
    "-1": UNCERTAIN, "-1.0": UNCERTAIN, "u": UNCERTAIN, "uncertain": UNCERTAIN,
    "": None, "none": None, "nan": None, "blank": None,
}


def canonical_finding(name: str) -> str:
    """``"pleural_effusion"`` / ``"Pleural Effusion"`` / ``"pleural-effusion"`` → ``"Pleural Effusion"``."""
    found = _CANONICAL.get(_key(name))
    if found is None:
        raise ReportError(f"unknown finding {name.strip()!r}; valid findings: {', '.join(CHEXPERT_FINDINGS)}")
    return found


def parse_label_overrides(spec: str) -> dict[str, float | None]:
    """Parse ``"Pleural Effusion=1,cardiomegaly=0"`` (values 1/0/-1/blank) into ``{finding: value}``.

    Finding names are case-, space-, hyphen- and underscore-insensitive. Raises :class:`ReportError`
    naming the valid findings / values on a bad entry.
    """
    overrides: dict[str, float | None] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ReportError(f"label override {item.strip()!r} is not FINDING=VALUE (e.g. 'Pleural Effusion=1')")
        name, raw = item.split("=", 1)
        finding = canonical_finding(name)
        value_key = raw.strip().lower()
        if value_key not in _VALUES:
            raise ReportError(f"label override {item.strip()!r}: value must be 1, 0, -1 or blank")
        overrides[finding] = _VALUES[value_key]
    return overrides


def label_value(value: object) -> float | None:
    """Normalise an override value: 1 / 0 / -1 (int, float, or string like ``"1"``, ``"u"``), or None / NaN / ``""``.

    Raises :class:`ReportError` for anything else.
    """
    if value is None:
        return None
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _VALUES:
            return _VALUES[key]
    elif isinstance(value, (int, float)):
        number = float(value)
        if math.isnan(number):
            return None
        if number in (POSITIVE, NEGATIVE, UNCERTAIN):
            return number
    raise ReportError(f"label value {value!r} is not 1, 0, -1 or blank")


def apply_overrides(labels: Mapping[str, float | None], overrides: Mapping[str, object]) -> dict[str, float | None]:
    """A new labels dict with ``overrides`` applied (finding names canonicalised, values normalised to
    ``1.0`` / ``0.0`` / ``-1.0`` / ``None``)."""
    out = dict(labels)
    for name, value in overrides.items():
        out[canonical_finding(name)] = label_value(value)
    return out
