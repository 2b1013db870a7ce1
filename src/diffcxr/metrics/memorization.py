"""Memorisation check: each generated image's nearest training image by feature cosine similarity.

Cosines are computed on features centred by the training features' mean (``center=True``; raw pooled CNN
features are mostly positive, which makes every raw cosine high). The training features are held as one ``(M, D)`` float32 matrix (L2-normalised); generated features are
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


def nearest_neighbours(query, reference, chunk: int = 1024, center: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarity and index of the nearest ``reference`` row for every ``query`` row.

    ``center``: subtract the reference features' mean from both sides first. Pooled CNN features are mostly
    positive, so raw cosines of unrelated images are already high; centred cosines are near 0 for unrelated
    images and 1 for copies.
    """
    query, reference = torch.as_tensor(query).detach().float().cpu(), torch.as_tensor(reference).detach().float().cpu()
    if center and reference.ndim == 2 and reference.shape[0] > 1 and query.ndim == 2 and query.shape[1] == reference.shape[1]:
        mu = reference.mean(0, keepdim=True)
        query, reference = query - mu, reference - mu
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


def memorization(generated, train, threshold: float = 0.95, top_k: int = 8, center: bool = True) -> MemorizationResult:
    """Nearest training image per generated image; pairs with (centred) cosine ≥ ``threshold`` are flagged."""
    sim, idx = nearest_neighbours(generated, train, center=center)
    order = torch.argsort(sim, descending=True)[:top_k]
    closest = [(int(i), int(idx[i]), float(sim[i])) for i in order]
    return MemorizationResult(similarity=sim, index=idx, threshold=float(threshold), closest=closest)
