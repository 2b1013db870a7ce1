"""How much of its report can be read back from a condition? A small trained readout, no generation.

The U-ViT denoiser reads the 77 condition tokens as tokens of its sequence: projected, with a learned position
embedding, through attention. :class:`ConditionReadout` reads them the same way, with one learned attention query
per finding and question, and is trained on the conditions of training reports to
answer two questions about each report: is the finding present (the report's labels), and, where the report puts
it on one side only, on which side. Scored on held-out reports, it says what a reader of that shape can get out of
a condition: if two token reductions read the same here, the reduction is not what limits how well generated
images follow their reports; if one reads lower, it has dropped or hidden what the report says.

Targets follow the adherence benchmarks: presence is 1 for a positive label, 0 for a negative or unmentioned one,
uncertain labels are left out (:func:`diffcxr.metrics.per_finding_auroc`); side is 1 for "left", 0 for "right",
left out where the finding is absent, bilateral or central (:func:`diffcxr.evaluation.laterality.finding_side`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffcxr.errors import DiffCXRError
from diffcxr.findings import CHEXPERT_FINDINGS


class ConditionReadout(nn.Module):
    """One-head cross-attention readout: per finding a presence query and a side query over the condition tokens.

    Like the U-ViT's context tokens, each of the ``tokens`` condition tokens is projected to ``width`` and gets a
    learned position embedding. Input ``(B, tokens, dim)``. Output ``(presence_logits, side_logits)``, each
    ``(B, findings)`` (side > 0 reads "left").
    """

    def __init__(self, dim: int, tokens: int, findings: int = len(CHEXPERT_FINDINGS), width: int = 64):
        super().__init__()
        self.findings, self.width = findings, width
        self.embed = nn.Linear(dim, width)
        self.position = nn.Parameter(torch.randn(tokens, width) * 0.02)
        self.norm = nn.LayerNorm(width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.query = nn.Parameter(torch.randn(2 * findings, width) / math.sqrt(width))
        self.weight = nn.Parameter(torch.randn(2 * findings, width) / math.sqrt(width))
        self.bias = nn.Parameter(torch.zeros(2 * findings))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm(self.embed(tokens) + self.position)
        attention = torch.softmax(self.query @ self.key(x).transpose(1, 2) / math.sqrt(self.width), dim=-1)
        logits = ((attention @ self.value(x)) * self.weight).sum(-1) + self.bias  # (B, 2F)
        return logits[:, : self.findings], logits[:, self.findings:]


def readout_targets(records, findings=CHEXPERT_FINDINGS) -> tuple[np.ndarray, np.ndarray]:
    """``(presence, side)``, each float ``(N, F)`` for ``records`` (with labels and phantom metadata): presence
    1 / 0 / NaN (uncertain), side 1 (left) / 0 (right) / NaN (not one-sided)."""
    from diffcxr.evaluation.laterality import finding_side
    from diffcxr.findings import map_labels

    presence = map_labels(np.stack([np.asarray(r.labels, dtype=np.float64) for r in records]), "exclude", "negative")
    sides = [[finding_side(r.meta, f) for f in findings] for r in records]
    side = np.array([[np.nan if s is None else float(s == "left") for s in row] for row in sides])
    return presence, side


def fit_readout(tokens: torch.Tensor, presence: np.ndarray, side: np.ndarray, *, seed: int = 0,
                steps: int = 800, batch_size: int = 128, lr: float = 2e-3, width: int = 64) -> ConditionReadout:
    """Train a :class:`ConditionReadout` on ``tokens`` ``(N, T, d)`` against :func:`readout_targets`; binary
    cross-entropy on the presence and side targets that are not NaN, AdamW, seeded."""
    if tokens.ndim != 3 or len(tokens) != len(presence) or presence.shape != side.shape:
        raise DiffCXRError(f"readout needs tokens (N, T, d) and targets (N, F), got {tuple(tokens.shape)}, "
                           f"{presence.shape}, {side.shape}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    readout = ConditionReadout(tokens.shape[-1], tokens.shape[1], presence.shape[1], width)
    optimizer = torch.optim.AdamW(readout.parameters(), lr=lr, weight_decay=1e-4)
    targets = [torch.as_tensor(t, dtype=torch.float32) for t in (presence, side)]
    for _ in range(steps):
        idx = torch.randint(len(tokens), (min(batch_size, len(tokens)),), generator=generator)
        loss = sum(_masked_bce(logits, target[idx]) for logits, target in zip(readout(tokens[idx].float()), targets))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return readout.eval()


def _masked_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    keep = ~torch.isnan(target)
    if not keep.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[keep], target[keep])


@dataclass
class ReadoutScores:
    """A readout's answers on held-out conditions: presence and side logits, each float ``(N, F)``."""

    presence: np.ndarray
    side: np.ndarray


@torch.no_grad()
def read_conditions(readout: ConditionReadout, tokens: torch.Tensor, batch_size: int = 256) -> ReadoutScores:
    """The readout's logits for ``tokens`` ``(N, T, d)``."""
    outs = [readout(tokens[i:i + batch_size].float()) for i in range(0, len(tokens), batch_size)]
    return ReadoutScores(presence=torch.cat([o[0] for o in outs]).numpy(), side=torch.cat([o[1] for o in outs]).numpy())


def presence_mauc(scores: np.ndarray, labels: np.ndarray, findings=CHEXPERT_FINDINGS) -> float:
    """mAUC of presence logits ``(N, F)`` against raw labels (1/0/-1/NaN), scored as the adherence benchmarks do."""
    from diffcxr.metrics import per_finding_auroc

    return per_finding_auroc(scores, labels, findings).mauc


def side_accuracy(scores: np.ndarray, side: np.ndarray) -> float:
    """Share of the one-sided (report, finding) pairs whose side logit has the report's sign (> 0 = left); NaN
    when there are none."""
    keep = ~np.isnan(side)
    return float(((scores[keep] > 0) == (side[keep] == 1)).mean()) if keep.any() else float("nan")
