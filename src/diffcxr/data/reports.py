"""Radiology report text: section extraction, de-identification token cleaning, and the report policy.

Report policy (used by every dataset source): the report text that conditions generation is
``FINDINGS + IMPRESSION`` when both exist, the one that exists otherwise, and — only when neither
exists — the whole cleaned text (``fallback="full"``). Comparison, indication and history are never
part of the conditioning text: they describe the patient, not the image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# MIMIC-style headers ("FINDINGS:", "IMPRESSION:", "FINAL REPORT", ...). Order does not matter.
SECTION_ALIASES: dict[str, str] = {
    "findings": "findings",
    "finding": "findings",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "indication": "indication",
    "indications": "indication",
    "history": "indication",
    "clinical history": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "comparison": "comparison",
    "comparisons": "comparison",
    "technique": "technique",
    "examination": "examination",
    "exam": "examination",
    "notification": "notification",
    "recommendation": "recommendation",
    "recommendations": "recommendation",
}

_HEADER_RE = re.compile(
    r"(?im)^[ \t]*(" + "|".join(sorted((re.escape(k) for k in SECTION_ALIASES), key=len, reverse=True)) + r")[ \t]*:"
)
# De-identification placeholders: IU uses runs of X ("XXXX", "x-XXXX"), MIMIC uses "___".
_DEID_RE = re.compile(r"X{3,}|_{2,}")
_XRAY_RE = re.compile(r"\b([xX])-XXXX\b")
_GLUED_SENTENCE_RE = re.compile(r"(?<=[a-z\s])\.(?=[A-Z])")  # "effusion.No" -> "effusion. No"
_SPACE_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([.,;:])")
_REPEATED_PUNCT_RE = re.compile(r"([.,;:])(\s*\1)+")

MAX_REPORT_CHARS = 1_000_000


def clean_report_text(text: str) -> str:
    """Remove de-identification tokens (``XXXX``, ``___``), collapse whitespace, tidy punctuation.

    >>> clean_report_text("Normal chest x-XXXX.  No ___ effusion .")
    'Normal chest x-ray. No effusion.'
    """
    text = _XRAY_RE.sub(r"\1-ray", text)
    text = _DEID_RE.sub(" ", text)
    text = _GLUED_SENTENCE_RE.sub(". ", text)
    text = _SPACE_RE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    text = _REPEATED_PUNCT_RE.sub(r"\1", text)
    return text.strip().lstrip(".,;: ")


def extract_sections(text: str) -> dict[str, str]:
    """Split a free-text report (MIMIC style, ``HEADER: body``) into canonical sections.

    Returns a dict with canonical section names (``findings``, ``impression``, ``indication``,
    ``comparison``, ...) mapped to their raw bodies; text before the first header goes under
    ``"preamble"``. Repeated sections are concatenated.
    """
    sections: dict[str, str] = {}
    matches = list(_HEADER_RE.finditer(text))
    if not matches:
        return {"preamble": text.strip()} if text.strip() else {}
    if text[: matches[0].start()].strip():
        sections["preamble"] = text[: matches[0].start()].strip()
    for i, match in enumerate(matches):
        name = SECTION_ALIASES[match.group(1).lower().strip()]
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end():end].strip()
        if body:
            sections[name] = f"{sections[name]} {body}" if name in sections else body
    return sections


def compose_report(sections: Mapping[str, str | None], fallback: str = "full") -> str:
    """Apply the report policy to extracted sections and return cleaned text ('' if nothing usable).

    ``fallback``: ``"full"`` uses every section except comparison/indication when neither findings nor
    impression exists; ``"none"`` returns ``""`` in that case.
    """
    parts = [clean_report_text(sections.get(name) or "") for name in ("findings", "impression")]
    parts = [p for p in parts if p]
    if not parts and fallback == "full":
        skip = {"comparison", "indication", "technique", "examination"}
        parts = [clean_report_text(body or "") for name, body in sections.items() if name not in skip]
        parts = [p for p in parts if p]
    text = " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in parts)
    return text


def report_from_text(text: str, fallback: str = "full") -> str:
    """Free text (a MIMIC ``sXXXX.txt`` file, a clinical note) → the conditioning report text."""
    return compose_report(extract_sections(text), fallback=fallback)
