"""The side a report gives each positive finding ("left", "right" or "bilateral"), for a side-aware knowledge prompt.

The labeler reads presence only. :func:`finding_sides` reads the side words next to each positive mention the
labeler found: first in the mention's clause ("Small right pleural effusion and left basilar atelectasis": the
effusion is right, the atelectasis left), then, when the clause names no side, in its sentence ("Left lower lobe
opacity, consistent with pneumonia": the pneumonia is left). A finding named on both sides, or with "bilateral",
"bilaterally" or "both", is bilateral; so is one whose mentions disagree (left in one sentence, right in
another), and one at both bases or apices ("bibasilar", "at the lung bases"). The lingula is left. Findings of
the heart and the mediastinum have no side.

>>> from diffcxr.knowledge import label_report
>>> finding_sides(label_report("Small right pleural effusion and left basilar atelectasis. No pneumothorax."))
{'Atelectasis': 'left', 'Pleural Effusion': 'right'}
"""

from __future__ import annotations

import re

from diffcxr.findings import KNOWLEDGE_FINDINGS, POSITIVE
from diffcxr.knowledge.labeler import _SENTENCE_END_RE as _SENTENCE_BREAK  # the labeler's own sentences

__all__ = ["LATERAL_FINDINGS", "finding_sides"]

#: The knowledge-prompt findings that can lie on one side (not the heart's and the mediastinum's).
LATERAL_FINDINGS: tuple[str, ...] = tuple(f for f in KNOWLEDGE_FINDINGS
                                          if f not in ("Cardiomegaly", "Enlarged Cardiomediastinum"))

_BOTH_SIDES = ("bilateral", "bilaterally", "both", "bibasilar", "bibasal", "biapical", "bases", "apices")
_LEFT = ("left", "lingula", "lingular")  # the lingula is part of the left lung
_SIDE_WORD = re.compile(rf"\b({'|'.join(_LEFT + ('right',) + _BOTH_SIDES)})\b", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[;,:]|\b(?:and|with|but|while|whereas|as well as)\b", re.IGNORECASE)


def _side_of(words: list[str]) -> str | None:
    found = {"bilateral" if w in _BOTH_SIDES else "left" if w in _LEFT else w for w in (w.lower() for w in words)}
    if not found:
        return None
    if found == {"left"} or found == {"right"}:
        return found.pop()
    return "bilateral"


def _span(text: str, start: int, end: int, breaks: re.Pattern[str], lo: int = 0, hi: int | None = None
          ) -> tuple[int, int]:
    """The piece of ``text[lo:hi]`` around ``[start, end)`` between two matches of ``breaks``."""
    hi = len(text) if hi is None else hi
    left = max((m.end() for m in breaks.finditer(text, lo, start)), default=lo)
    right = next((m.start() for m in breaks.finditer(text, end, hi)), hi)
    return left, right


def _mention_side(text: str, start: int, end: int) -> str | None:
    s_lo, s_hi = _span(text, start, end, _SENTENCE_BREAK)
    c_lo, c_hi = _span(text, start, end, _CLAUSE_BREAK, s_lo, s_hi)
    return (_side_of(_SIDE_WORD.findall(text, c_lo, c_hi))
            or _side_of(_SIDE_WORD.findall(text, s_lo, s_hi)))


def finding_sides(result) -> dict[str, str]:
    """``{finding: "left" | "right" | "bilateral"}`` for each positive finding of ``result`` (a
    :class:`~diffcxr.knowledge.LabelResult`) in :data:`LATERAL_FINDINGS` whose positive mentions name a side;
    findings without a side word are left out. Keys in the knowledge prompt's order."""
    sides: dict[str, set[str]] = {}
    for e in result.evidence:
        if e.value != POSITIVE or e.finding not in LATERAL_FINDINGS or result.labels.get(e.finding) != POSITIVE:
            continue
        side = _mention_side(result.text, e.start, e.end)
        if side:
            sides.setdefault(e.finding, set()).add(side)
    out = {}
    for finding in sorted(sides, key=KNOWLEDGE_FINDINGS.index):
        found = sides[finding]
        out[finding] = found.pop() if len(found) == 1 else "bilateral"
    return out
