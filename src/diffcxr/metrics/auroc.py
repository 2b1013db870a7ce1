"""Per-finding AUROC of classifier scores against report labels, and their mean (mAUC).

Label conventions (:mod:`diffcxr.findings`): ``1`` positive, ``0`` negative, ``-1`` uncertain, ``NaN`` not
mentioned. Before scoring, each label is mapped:

- ``uncertain`` (``-1``): ``"exclude"`` (default: the image does not count for that finding), ``"positive"``
  or ``"negative"``;
- ``missing`` (``NaN``, the report does not mention the finding): ``"negative"`` (default: a report that does
  not mention a finding describes an image without it) or ``"exclude"``.

A finding whose remaining labels have only one class (or fewer than ``min_per_class`` of either) has no AUROC:
it is *skipped* and listed in :attr:`AUROCResult.skipped` with the reason. ``mauc`` is the unweighted mean over
the findings that were scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diffcxr.errors import DiffCXRError
from diffcxr.findings import CHEXPERT_FINDINGS, map_labels

__all__ = ["AUROCResult", "map_labels", "per_finding_auroc", "binary_auroc"]


@dataclass
class AUROCResult:
    per_finding: dict[str, float] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # finding -> {"pos": n, "neg": n}
    skipped: dict[str, str] = field(default_factory=dict)  # finding -> reason
    uncertain: str = "exclude"
    missing: str = "negative"

    @property
    def mauc(self) -> float:
        return float(np.mean(list(self.per_finding.values()))) if self.per_finding else float("nan")

    def to_dict(self) -> dict:
        return {"mauc": None if np.isnan(self.mauc) else self.mauc, "per_finding": self.per_finding,
                "counts": self.counts, "skipped": self.skipped, "n_scored": len(self.per_finding),
                "uncertain": self.uncertain, "missing": self.missing}

    def table(self) -> str:
        """A Markdown table: finding, AUROC, positives, negatives (skipped findings last with their reason)."""
        lines = ["| finding | AUROC | pos | neg |", "|---|---:|---:|---:|"]
        for name, value in self.per_finding.items():
            c = self.counts[name]
            lines.append(f"| {name} | {value:.3f} | {c['pos']} | {c['neg']} |")
        for name, reason in self.skipped.items():
            c = self.counts.get(name, {"pos": 0, "neg": 0})
            lines.append(f"| {name} | skipped: {reason} | {c['pos']} | {c['neg']} |")
        lines.append(f"| **mean (mAUC)** | **{self.mauc:.3f}** | | |")
        return "\n".join(lines)


def binary_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC by the rank statistic (Mann–Whitney U, ties get half credit); equals sklearn's roc_auc_score."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    n_pos, n_neg = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def per_finding_auroc(scores, labels, findings=CHEXPERT_FINDINGS, *, uncertain: str = "exclude",
                      missing: str = "negative", min_per_class: int = 1, only=None) -> AUROCResult:
    """AUROC per finding of ``scores`` ``(N, F)`` against ``labels`` ``(N, F)`` (``1/0/-1/NaN``).

    ``findings`` names the ``F`` columns; ``only`` restricts scoring to a subset of them (e.g. the 11 knowledge
    findings). Non-finite scores are an error (a black/NaN image should fail loudly, not shift the metric).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != labels.shape or scores.shape[1] != len(findings):
        raise DiffCXRError(f"scores {scores.shape} and labels {labels.shape} must both be (N, {len(findings)})")
    if not np.isfinite(scores).all():
        raise DiffCXRError("classifier scores contain NaN or inf")
    mapped = map_labels(labels, uncertain, missing)
    result = AUROCResult(uncertain=uncertain, missing=missing)
    wanted = list(findings) if only is None else [f for f in findings if f in set(only)]
    for name in wanted:
        k = list(findings).index(name)
        keep = ~np.isnan(mapped[:, k])
        y, s = mapped[keep, k], scores[keep, k]
        pos, neg = int((y == 1).sum()), int((y == 0).sum())
        result.counts[name] = {"pos": pos, "neg": neg}
        if pos < min_per_class or neg < min_per_class:
            result.skipped[name] = "only negatives" if pos == 0 and neg else (
                "only positives" if neg == 0 and pos else (
                    "no labels" if pos + neg == 0 else f"fewer than {min_per_class} per class"))
            continue
        result.per_finding[name] = binary_auroc(y, s)
    return result
