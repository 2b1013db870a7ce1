"""Radiology report text: section extraction, de-identification token cleaning, and the report policy.

Report policy (used by every dataset source): the report text that conditions generation is
``FINDINGS + IMPRESSION`` when both exist, the one that exists otherwise, and — only when neither
exists — the whole cleaned text (``fallback="full"``). Comparison, indication and history are never
part of the conditioning text: they describe the patient, not the image.

Report length: one limit everywhere (:data:`MAX_REPORT_CHARS`, 100,000 characters). Real reports are under
10 kB; anything near the limit is a wrong file, not a report. :func:`validate_report` refuses it (generation,
``diffcxr label``); the library labeler labels the first ``MAX_REPORT_CHARS`` characters and says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Section headers of MIMIC-CXR and IU-Xray reports → canonical names. Order does not matter.
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
    "clinical information": "indication",
    "clinical indication": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "reason for study": "indication",
    "comparison": "comparison",
    "comparisons": "comparison",
    "technique": "technique",
    "procedure": "technique",
    "examination": "examination",
    "exam": "examination",
    "notification": "notification",
    "recommendation": "recommendation",
    "recommendations": "recommendation",
    "addendum": "addendum",
    "wet read": "wet_read",
    "final report": "final_report",
}
# The sections disease knowledge is read from, in training and in generation alike (the labeler, the text the
# report encoder sees, the dataset sources). A report without any header is read whole.
REPORT_SECTIONS: tuple[str, ...] = ("findings", "impression")
# Sections that describe the patient or the request, never the image.
PATIENT_SECTIONS: frozenset[str] = frozenset({"indication", "comparison", "technique", "examination", "wet_read"})


def _alternation(names, upper: bool = False) -> str:
    """Longest first; the words of a multi-word header may be separated by any spaces."""
    names = sorted(names, key=len, reverse=True)
    return "|".join(r"[ \t]+".join(re.escape(w.upper() if upper else w) for w in n.split()) for n in names)


# "HEADER:" anywhere (start of a line or inside a one-line report) in any case: looked up backwards from each colon
_COLON_HEADER_RE = re.compile(rf"(?i)(?<![\w/])({_alternation(SECTION_ALIASES)})[ \t]*\Z")
_COLON_REACH = 40  # no header is longer than this
# an upper-case header without its colon, at the end of its line or before a sentence in normal case ("FINDINGS
# Moderate ...", also inside a one-line report; an all-capitals report's "HISTORY OF CHF" is not a header);
# FINAL REPORT / WET READ in upper case wherever they stand
_UPPER_HEADER_RE = re.compile(
    rf"(?<![\w/])(?P<line>{_alternation(SECTION_ALIASES, upper=True)})"
    r"(?=[ \t]*(?:\n|$)|[ \t]+(?:[A-Z][a-z]|\d|_|\())"
    r"|(?<![\w/])(?P<marker>FINAL[ \t]+REPORT|WET[ \t]+READ)(?![\w])"
)


def _headers(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, canonical name)`` of every header, in text order (overlaps resolved left to right)."""
    found = []
    colon = text.find(":")
    while colon >= 0:
        m = _COLON_HEADER_RE.search(text, max(0, colon - _COLON_REACH), colon)
        if m:
            found.append((m.start(), colon + 1, " ".join(m.group(1).lower().split())))
        colon = text.find(":", colon + 1)
    for m in _UPPER_HEADER_RE.finditer(text):
        found.append((m.start(), m.end(), " ".join((m.group("line") or m.group("marker")).lower().split())))
    found.sort()
    out: list[tuple[int, int, str]] = []
    for start, end, name in found:
        if not out or start >= out[-1][1]:
            out.append((start, end, SECTION_ALIASES[name]))
    return out


# De-identification placeholders: IU uses runs of X ("XXXX", "x-XXXX"), MIMIC uses "___".
_DEID_RE = re.compile(r"X{3,}|_{2,}")
_XRAY_RE = re.compile(r"\b([xX])-XXXX\b")
_GLUED_SENTENCE_RE = re.compile(r"(?<=[a-z\s])\.(?=[A-Z])")  # "effusion.No" -> "effusion. No"
_SPACE_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([.,;:])")
_REPEATED_PUNCT_RE = re.compile(r"([.,;:])(\s*\1)+")

MAX_REPORT_CHARS = 100_000


def validate_report(text, index: int | str | None = None, allow_empty: bool = False) -> str:
    """Return ``text`` stripped; raise :class:`~diffcxr.errors.ReportError` for non-strings, empty (unless
    ``allow_empty``) or oversized (> :data:`MAX_REPORT_CHARS`) reports. ``index`` names the report in errors."""
    from diffcxr.errors import ReportError

    where = f"report #{index}" if index is not None else "report"
    if not isinstance(text, str):
        raise ReportError(f"{where} must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped and not allow_empty:
        raise ReportError(f"{where} is empty: give the findings/impression text")
    if len(text) > MAX_REPORT_CHARS:
        raise ReportError(
            f"{where} has {len(text):,} characters (limit {MAX_REPORT_CHARS:,}); radiology reports are a few kB — "
            "is this the right file?"
        )
    return stripped


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


@dataclass(frozen=True)
class Section:
    """One section of a report: ``text[start:body_start]`` is its header, ``text[body_start:end]`` its body."""

    name: str
    start: int
    body_start: int
    end: int


def find_sections(text: str) -> list[Section]:
    """The sections of a report in text order (canonical names as in :data:`SECTION_ALIASES`).

    Headers are found at the start of a line or inside a one-line report (``"INDICATION: ... FINDINGS: ..."``),
    in any case with a colon, in upper case without one at the start of a line, and ``FINAL REPORT`` /
    ``WET READ`` wherever they stand. Text before the first header is a ``"preamble"`` section. When a
    ``WET READ`` precedes the ``FINAL REPORT``, the final report supersedes it: everything before ``FINAL
    REPORT`` is dropped. A report without headers gives ``[]``.
    """
    headers = _headers(text)
    if not headers:
        return []
    sections = []
    if text[: headers[0][0]].strip():
        sections.append(Section("preamble", 0, 0, headers[0][0]))
    for i, (start, body_start, name) in enumerate(headers):
        end = headers[i + 1][0] if i + 1 < len(headers) else len(text)
        sections.append(Section(name, start, body_start, end))
    finals = [k for k, sec in enumerate(sections) if sec.name == "final_report"]
    if finals and any(sec.name == "wet_read" for sec in sections[: finals[-1]]):
        sections = sections[finals[-1]:]
    return sections


def reading_spans(text: str, sections: tuple[str, ...] = REPORT_SECTIONS) -> list[tuple[str, int, int]]:
    """Which parts of a report disease knowledge is read from: ``[(section name, start, end), ...]``.

    The bodies of the ``sections`` (FINDINGS and IMPRESSION by default) when the report has any of them; else,
    for a report with headers, every section except those describing the patient or the request
    (indication/history, comparison, technique, examination, a superseded wet read); a report without headers
    is read whole (``[("all", 0, len(text))]``).
    """
    found = find_sections(text)
    if not found:
        return [("all", 0, len(text))]
    chosen = [sec for sec in found if sec.name in sections] or [
        sec for sec in found if sec.name not in PATIENT_SECTIONS]
    return [(sec.name, sec.body_start, sec.end) for sec in chosen if text[sec.body_start:sec.end].strip()]


def report_text(text: str, sections: tuple[str, ...] = REPORT_SECTIONS) -> tuple[str, list[str]]:
    """The text a report conditions generation with, and the sections it came from: the :func:`reading_spans`
    of ``text`` joined (whitespace-normalised), or the whole text for a report without headers."""
    spans = reading_spans(text, sections)
    body = " ".join(" ".join(text[a:b].split()) for _, a, b in spans)
    names = list(dict.fromkeys(name for name, _, _ in spans))
    return (body or " ".join(text.split())), names


def extract_sections(text: str) -> dict[str, str]:
    """A report's sections as ``{canonical name: body}`` (see :func:`find_sections`); text before the first header
    is ``"preamble"``, repeated sections are concatenated, a report without headers is one ``"preamble"``."""
    found = find_sections(text)
    if not found:
        return {"preamble": text.strip()} if text.strip() else {}
    out: dict[str, str] = {}
    for sec in found:
        body = text[sec.body_start:sec.end].strip()
        if body and sec.name != "final_report":
            out[sec.name] = f"{out[sec.name]} {body}" if sec.name in out else body
    return out


def compose_report(sections: Mapping[str, str | None], fallback: str = "full") -> str:
    """Apply the report policy to extracted sections and return cleaned text ('' if nothing usable).

    ``fallback``: ``"full"`` uses every section except comparison/indication when neither findings nor
    impression exists; ``"none"`` returns ``""`` in that case.
    """
    parts = [clean_report_text(sections.get(name) or "") for name in ("findings", "impression")]
    parts = [p for p in parts if p]
    if not parts and fallback == "full":
        parts = [clean_report_text(body or "") for name, body in sections.items() if name not in PATIENT_SECTIONS]
        parts = [p for p in parts if p]
    text = " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in parts)
    return text


def report_from_text(text: str, fallback: str = "full") -> str:
    """Free text (a MIMIC ``sXXXX.txt`` file, a clinical note) → the conditioning report text."""
    return compose_report(extract_sections(text), fallback=fallback)
