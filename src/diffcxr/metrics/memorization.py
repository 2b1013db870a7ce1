"""Memorisation check: each generated image's nearest training image by feature cosine similarity.

The training features are held as one ``(M, D)`` float32 matrix (L2-normalised); generated features are
compared in chunks, so memory is ``O(M·D + chunk·M)``. ``share_above`` is the fraction of generated images
whose nearest training image has cosine ≥ ``threshold``; ``closest`` lists the top pairs for inspection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from diffcxr.errors import DiffCXRError

__all__ = ["MemorizationResult", "nearest_neighbours", "memorization"]


@dataclass
class MemorizationResult:
    similarity: torch.Tensor  # (N,) best cosine per generated image
    index: torch.Tensor  # (N,) index of the nearest training image
    threshold: float
    closest: list[tuple[int, int, float]] = field(default_factory=list)  # (generated, train, cosine), best first

    @property
    def share_above(self) -> float:
        return float((self.similarity >= self.threshold).float().mean())

    def to_dict(self, generated_ids=None, train_ids=None) -> dict:
        g = (lambda i: generated_ids[i]) if generated_ids is not None else (lambda i: i)
        t = (lambda i: train_ids[i]) if train_ids is not None else (lambda i: i)
        return {"threshold": self.threshold, "share_above": self.share_above,
                "n_above": int((self.similarity >= self.threshold).sum()),
                "n_generated": int(self.similarity.numel()),
                "mean_nearest_cosine": float(self.similarity.mean()),
                "max_nearest_cosine": float(self.similarity.max()),
                "closest": [{"generated": g(a), "train": t(b), "cosine": c} for a, b, c in self.closest]}


def _normalise(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).detach().float().cpu()
    if x.ndim != 2:
        raise DiffCXRError(f"features must be a (N, D) matrix, got shape {tuple(x.shape)}")
    return torch.nn.functional.normalize(x, dim=1)


def nearest_neighbours(query, reference, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarity and index of the nearest ``reference`` row for every ``query`` row."""
    q, r = _normalise(query), _normalise(reference)
    if q.shape[1] != r.shape[1]:
        raise DiffCXRError(f"feature dimensions differ: {q.shape[1]} vs {r.shape[1]}")
    if r.shape[0] == 0 or q.shape[0] == 0:
        raise DiffCXRError("memorisation check needs at least one generated and one training image")
    sims, idxs = [], []
    for start in range(0, q.shape[0], chunk):
        s, i = (q[start:start + chunk] @ r.T).max(dim=1)
        sims.append(s)
        idxs.append(i)
    return torch.cat(sims), torch.cat(idxs)


def memorization(generated, train, threshold: float = 0.95, top_k: int = 8) -> MemorizationResult:
    """Nearest training image per generated image; pairs with cosine ≥ ``threshold`` are flagged."""
    sim, idx = nearest_neighbours(generated, train)
    order = torch.argsort(sim, descending=True)[:top_k]
    closest = [(int(i), int(idx[i]), float(sim[i])) for i in order]
    return MemorizationResult(similarity=sim, index=idx, threshold=float(threshold), closest=closest)
