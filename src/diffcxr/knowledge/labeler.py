"""Rule-based CheXpert-style report labeler: mentions, then negation/uncertainty scope, then aggregation.

Pipeline for one report (all regular expressions precompiled at import):

1. *Mentions*: direct phrases per finding (``phrases.MENTIONS``) minus exclusions, plus anatomy +
   qualifier phrases ("the heart is normal in size", "enlargement of the cardiac silhouette").
2. *Scope*: within each sentence, the nearest negation / uncertainty trigger before the mention
   (within ``PRE_SCOPE_WORDS``, not across a scope terminator such as "but", "however", ";") and the
   nearest trigger after it (within ``POST_SCOPE_WORDS``) decide: uncertainty wins over negation,
   otherwise the mention is positive.
   Only the sections that describe the image are read (:func:`diffcxr.data.reports.reading_spans`):
   FINDINGS and IMPRESSION when the report has them — headers are found at line starts and inside
   one-line reports —, otherwise every section but INDICATION / HISTORY / COMPARISON / TECHNIQUE /
   EXAMINATION; a report without headers is read whole. A WET READ is superseded by the FINAL REPORT.
3. *Aggregation* per finding: positive > uncertain > negative; ``None`` when never mentioned.
   ``No Finding`` is ``1`` only when no finding other than Support Devices, and no other abnormality
   (emphysema, granuloma, degenerative change ...), is positive or uncertain; ``None`` otherwise, as in
   the CheXpert / MIMIC-CXR label files.

:func:`label_report` never raises on ``str`` input: empty, non-English or oversized text gives a
:class:`LabelResult` with ``warnings``.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Iterable, Iterator

import numpy as np

from diffcxr.data.reports import MAX_REPORT_CHARS, reading_spans
from diffcxr.findings import CHEXPERT_FINDINGS, NEGATIVE, POSITIVE, UNCERTAIN
from diffcxr.knowledge import phrases as P

OTHER = "Other"
_PATHOLOGIES = tuple(f for f in CHEXPERT_FINDINGS if f not in ("No Finding", "Support Devices"))


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One mention: ``text[start:end]`` of the labeled text supports ``finding`` = ``value``."""

    finding: str
    value: float
    start: int
    end: int
    text: str
    section: str = "all"  # the report section it was read in ("findings", "impression", ... or "all")
    section_start: int = 0  # offsets of that section's body in the labeled text
    section_end: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class LabelResult:
    """Labels of one report over the 14 CheXpert findings (``None`` = not mentioned)."""

    text: str
    labels: dict[str, float | None]
    sections: list[str] = dataclasses.field(default_factory=list)  # sections read (["all"]: no headers)
    evidence: list[Evidence] = dataclasses.field(default_factory=list)
    other_findings: list[Evidence] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_vector(self) -> np.ndarray:
        """``float32`` array (14,) in ``CHEXPERT_FINDINGS`` order; NaN where not mentioned."""
        return np.array([np.nan if self.labels[f] is None else self.labels[f] for f in CHEXPERT_FINDINGS],
                        dtype=np.float32)

    def positives(self, uncertain_as_positive: bool = False) -> list[str]:
        """Findings labeled positive (and uncertain ones when ``uncertain_as_positive``), in CheXpert order."""
        accept = (POSITIVE, UNCERTAIN) if uncertain_as_positive else (POSITIVE,)
        return [f for f in CHEXPERT_FINDINGS if self.labels[f] in accept]

    def to_dict(self) -> dict:
        """JSON-serialisable form (labels, evidence, other findings, warnings)."""
        return {
            "labels": dict(self.labels),
            "sections": list(self.sections),
            "evidence": [e.to_dict() for e in self.evidence],
            "other_findings": [e.to_dict() for e in self.other_findings],
            "warnings": list(self.warnings),
        }


# ---------------------------------------------------------------------------------------------
# Compiled patterns
# ---------------------------------------------------------------------------------------------
def _is_punctuation(fragment: str) -> bool:
    return not re.search(r"[a-z]", fragment)


def _alternation(fragments: Iterable[str]) -> str:
    """One alternation, word-bounded as a whole (fast: the look-behind fails at once inside words)."""
    words = [f for f in fragments if not _is_punctuation(f)]
    punct = [f for f in fragments if _is_punctuation(f)]
    parts = [rf"(?<!\w)(?:{'|'.join(words)})(?!\w)"] if words else []
    return "|".join(parts + [f"(?:{f})" for f in punct])


def _grouped(table: dict[str, list[str]]) -> tuple[re.Pattern[str], dict[str, str]]:
    """One word-bounded regex with a named group per finding (one scan instead of one per finding)."""
    names = {f"g{i}": finding for i, finding in enumerate(table) if table[finding]}
    body = "|".join(f"(?P<{g}>{'|'.join(table[f])})" for g, f in names.items())
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)"), names


_MENTION_RE, _MENTION_GROUPS = _grouped(P.MENTIONS)
# Exclusions stay one regex per finding (they may overlap across findings) and run only when needed.
_EXCLUSION_RES: dict[str, re.Pattern[str]] = {f: re.compile(_alternation(v)) for f, v in P.EXCLUSIONS.items() if v}
_ANATOMY_RES = [(re.compile(_alternation([rx])), pos, neg) for rx, pos, neg in P.ANATOMY]
_QUALIFIER_RE = re.compile(
    r"(?<!\w)(?:" + "|".join(f"(?P<{kind}>{'|'.join(v)})" for kind, v in P.QUALIFIERS.items()) + r")(?!\w)")
_OTHER_RE = re.compile(_alternation(P.OTHER_FINDINGS))
_OTHER_EXCLUSION_RE = re.compile(_alternation(P.OTHER_EXCLUSIONS))
_TRIGGER_KINDS = [(kind, direction) for kind, direction, _ in P.TRIGGERS]
_TRIGGER_RE = re.compile(
    r"(?<!\w)(?:" + "|".join(f"(?P<t{i}>{'|'.join(f for f in v if not _is_punctuation(f))})"
                             for i, (_, _, v) in enumerate(P.TRIGGERS) if any(not _is_punctuation(f) for f in v))
    + r")(?!\w)|" + "|".join(f"(?P<p{i}>{'|'.join(f for f in v if _is_punctuation(f))})"
                               for i, (_, _, v) in enumerate(P.TRIGGERS) if any(_is_punctuation(f) for f in v)))
_WORD_RE = re.compile(r"\w+")
# sentence ends: ". " / "? " / "! ", a blank line, or a line break before a bullet or a numbered item
# (a "?" that opens a clinical question, "? pneumonia", does not end a sentence)
_SENTENCE_END_RE = re.compile(r"[.!](?=\s|$)|(?<=[^\s(])\?(?=\s|$)|\n[ \t]*\n|\n(?=[ \t]*(?:[-*\u2022]|\d{1,2}[.)])[ \t])")
_ASCII_WORD_RE = re.compile(r"[a-z]+")


@dataclasses.dataclass(frozen=True)
class _Trigger:
    start: int
    end: int
    kind: str       # neg | unc | rel | pseudo | term
    direction: str  # pre | post | both


class _Doc:
    """Per-report index: lower-cased text, word positions, sentence ids and scope triggers."""

    def __init__(self, text: str) -> None:
        low = text.lower()
        if len(low) != len(text):  # a few non-ASCII characters change length when lower-cased
            low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        self.low = low
        self.word_starts = [m.start() for m in _WORD_RE.finditer(low)]
        self.sentence_ends = [m.start() for m in _SENTENCE_END_RE.finditer(low)]
        self.triggers: dict[int, list[_Trigger]] = {}
        for m in _TRIGGER_RE.finditer(low):
            kind, direction = _TRIGGER_KINDS[int(m.lastgroup[1:])]
            t = _Trigger(m.start(), m.end(), kind, direction)
            self.triggers.setdefault(self.sentence(t.start), []).append(t)

    def sentence(self, pos: int) -> int:
        return bisect.bisect_left(self.sentence_ends, pos)

    def words_between(self, a: int, b: int) -> int:
        """Number of words starting in ``[a, b)``."""
        return bisect.bisect_left(self.word_starts, b) - bisect.bisect_left(self.word_starts, a)

    def scope(self, start: int, end: int, inner: tuple[int, int] | None = None) -> str | None:
        """The scope verdict for a mention at ``[start, end)``: ``"neg"``, ``"unc"`` or ``None`` (positive)."""
        triggers = self.triggers.get(self.sentence(start), ())
        kinds: list[str] = []
        # nearest trigger before the mention ("rel" = "concerning for": negated when itself in a negation's scope)
        relational = False
        for t in reversed(triggers):
            if t.end > start:
                continue
            if t.kind == "term":
                break
            if t.kind == "pseudo" or t.direction == "post":
                continue
            if self.words_between(t.end, start) > P.PRE_SCOPE_WORDS:
                break
            if t.kind == "rel" and not relational:
                relational = True
                continue
            kinds.append(("neg" if t.kind == "neg" else "unc") if relational else t.kind)
            break
        if relational and not kinds:
            kinds.append("unc")
        # nearest trigger after the mention
        for t in triggers:
            if t.start < end:
                continue
            if t.kind == "term":
                break
            if t.kind == "pseudo":
                continue
            if t.direction == "pre":
                if t.kind == "neg":
                    break
                continue
            if self.words_between(end, t.start) <= P.POST_SCOPE_WORDS:
                kinds.append(t.kind)
            break
        # triggers between an anatomy term and its qualifier ("the heart is not enlarged")
        if inner is not None:
            for t in triggers:
                if t.start >= inner[0] and t.end <= inner[1] and t.kind in ("neg", "unc", "rel"):
                    kinds.append("unc" if t.kind == "rel" else t.kind)
        if "unc" in kinds:
            return "unc"
        if "neg" in kinds:
            return "neg"
        return None


_VALUE = {None: POSITIVE, "neg": NEGATIVE, "unc": UNCERTAIN}
_PRIORITY = {POSITIVE: 3, UNCERTAIN: 2, NEGATIVE: 1}


def _overlaps(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in spans)


_EXCLUSION_REACH = 120  # no exclusion phrase is longer than this many characters


def _excluded(pattern: re.Pattern[str], low: str, start: int, end: int) -> bool:
    """True when an exclusion phrase overlaps ``[start, end)`` (searched in a window around the mention)."""
    for x in pattern.finditer(low, max(0, start - _EXCLUSION_REACH), min(len(low), end + _EXCLUSION_REACH)):
        if x.start() < end and start < x.end():
            return True
        if x.start() >= end:
            break
    return False


def _direct_mentions(doc: _Doc, text: str) -> Iterator[Evidence]:
    for m in _MENTION_RE.finditer(doc.low):
        finding = _MENTION_GROUPS[m.lastgroup]
        pattern = _EXCLUSION_RES.get(finding)
        if pattern is not None and _excluded(pattern, doc.low, m.start(), m.end()):
            continue
        value = _VALUE[doc.scope(m.start(), m.end())]
        snippet = text[m.start():m.end()]
        yield Evidence(finding, value, m.start(), m.end(), snippet)
        for extra in P.ALSO_MEANS.get(finding, ()):
            if extra[0].search(doc.low, m.start(), m.end()):
                yield Evidence(extra[1], value, m.start(), m.end(), snippet)


def _qualifier_for(doc: _Doc, start: int, end: int, qualifiers: list[tuple[int, int, str]]) -> tuple[int, int, str] | None:
    """Nearest qualifier in the same sentence before (≤ 4 words) or after (≤ 8 words) the anatomy term."""
    sid = doc.sentence(start)
    # a colon ends a scope but not "Heart: normal size"
    terms = [t for t in doc.triggers.get(sid, ()) if t.kind == "term" and doc.low[t.start:t.end] != ":"]
    best, best_gap = None, None
    for q in qualifiers:
        if doc.sentence(q[0]) != sid or (q[0] < end and start < q[1]):
            continue
        if q[1] <= start:
            gap, lo, hi, limit = doc.words_between(q[1], start), q[1], start, P.QUALIFIER_BEFORE_WORDS
        else:
            gap, lo, hi, limit = doc.words_between(end, q[0]), end, q[0], P.QUALIFIER_AFTER_WORDS
        if gap > limit or any(t.start >= lo and t.end <= hi for t in terms):
            continue
        if best_gap is None or gap < best_gap or (gap == best_gap and q[0] > start):
            best, best_gap = q, gap
    return best


def _anatomy_mentions(doc: _Doc, text: str, direct: list[Evidence]) -> Iterator[Evidence]:
    qualifiers = [(m.start(), m.end(), m.lastgroup) for m in _QUALIFIER_RE.finditer(doc.low)]
    if not qualifiers:
        return
    taken: list[tuple[int, int]] = []
    for pattern, enlarged_findings, normal_findings in _ANATOMY_RES:
        for m in pattern.finditer(doc.low):
            if _overlaps(m.span(), taken):
                continue
            taken.append(m.span())
            q = _qualifier_for(doc, m.start(), m.end(), qualifiers)
            if q is None:
                continue
            lo, hi = min(m.start(), q[0]), max(m.end(), q[1])
            if q[2] == "normal":
                value, findings = NEGATIVE, normal_findings
            elif q[2] == "borderline":
                value, findings = UNCERTAIN, enlarged_findings
            else:
                inner = (m.end(), q[0]) if q[0] >= m.end() else (q[1], m.start())
                value, findings = _VALUE[doc.scope(lo, hi, inner)], enlarged_findings
            for finding in findings:
                if any(e.finding == finding and e.start < hi and lo < e.end for e in direct):
                    continue  # "enlarged heart" is already a direct mention
                yield Evidence(finding, value, lo, hi, text[lo:hi])


def _other_mentions(doc: _Doc, text: str) -> Iterator[Evidence]:
    excluded = [m.span() for m in _OTHER_EXCLUSION_RE.finditer(doc.low)]
    for m in _OTHER_RE.finditer(doc.low):
        if excluded and _overlaps(m.span(), excluded):
            continue
        yield Evidence(OTHER, _VALUE[doc.scope(m.start(), m.end())], m.start(), m.end(), text[m.start():m.end()])


def _in_sections(items: list[Evidence], spans: list[tuple[str, int, int]]) -> list[Evidence]:
    """The mentions that lie inside a read section, each tagged with that section and its offsets."""
    out = []
    for e in items:
        for name, lo, hi in spans:
            if lo <= e.start and e.end <= hi:
                out.append(Evidence(e.finding, e.value, e.start, e.end, e.text, name, lo, hi))
                break
    return out


def _looks_english(low: str) -> bool:
    words = _ASCII_WORD_RE.findall(low[:5000])
    hits = sum(w in P.ENGLISH_MARKERS for w in words)
    return hits >= 2 or (hits > 0 and hits >= 0.3 * len(words))


def _empty_labels() -> dict[str, float | None]:
    return {f: None for f in CHEXPERT_FINDINGS}


def label_report(text: str) -> LabelResult:
    """Label one report over the 14 CheXpert findings. Never raises on ``str`` input.

    >>> label_report("Moderate right pleural effusion. No pneumothorax.").labels["Pleural Effusion"]
    1.0
    """
    warnings: list[str] = []
    if not isinstance(text, str):
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", errors="replace")
        else:
            warnings.append(f"report is not text ({type(text).__name__}); treated as empty")
            text = ""
    if len(text) > MAX_REPORT_CHARS:
        warnings.append(f"report has {len(text):,} characters; only the first {MAX_REPORT_CHARS:,} were labeled")
        text = text[:MAX_REPORT_CHARS]
    labels = _empty_labels()
    if not text.strip():
        warnings.append("report text is empty")
        return LabelResult(text=text, labels=labels, warnings=warnings)

    doc = _Doc(text)
    direct = list(_direct_mentions(doc, text))
    evidence = direct + list(_anatomy_mentions(doc, text, direct))
    other = list(_other_mentions(doc, text))
    spans = reading_spans(text)
    evidence, other = _in_sections(evidence, spans), _in_sections(other, spans)
    evidence.sort(key=lambda e: (e.start, e.end, e.finding))

    for e in evidence:
        current = labels[e.finding]
        if current is None or _PRIORITY[e.value] > _PRIORITY[current]:
            labels[e.finding] = e.value
    abnormal = any(labels[f] in (POSITIVE, UNCERTAIN) for f in _PATHOLOGIES) or any(
        e.value in (POSITIVE, UNCERTAIN) for e in other)
    if not abnormal:
        if evidence or other or _looks_english(doc.low):
            labels["No Finding"] = POSITIVE
        else:
            warnings.append("report does not look like English radiology text; no findings labeled")
    return LabelResult(text=text, labels=labels, sections=list(dict.fromkeys(name for name, _, _ in spans)),
                       evidence=evidence, other_findings=other, warnings=warnings)


def label_reports(texts: Iterable[str], progress: bool = False, total: int | None = None) -> list[LabelResult]:
    """Label many reports (optionally with a tqdm progress bar)."""
    if progress:
        from tqdm.auto import tqdm

        texts = tqdm(texts, total=total, desc="labeling", unit="report")
    return [label_report(t) for t in texts]
