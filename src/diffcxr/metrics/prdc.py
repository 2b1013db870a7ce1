"""Precision, recall, density and coverage of generated features (Naeem et al., ICML 2020), in bounded memory.

With ``k`` nearest neighbours (CheXGenBench: k = 5 on RadDINO features) and Euclidean distances:

- each real feature ``r_i`` gets a radius ``ρ_i`` = distance to its k-th nearest *other* real feature; each
  generated feature ``f_j`` a radius ``σ_j`` likewise among the generated ones;
- **precision** = share of generated features inside at least one real ball ``B(r_i, ρ_i)`` (fidelity);
- **recall** = share of real features inside at least one generated ball ``B(f_j, σ_j)`` (diversity);
- **density** = ``1/(k·M) Σ_j #{i : f_j ∈ B(r_i, ρ_i)}`` (can exceed 1; ≈ 1 for matching distributions);
- **coverage** = share of real features whose nearest generated feature lies inside their own ball.

Distances are computed in row blocks of ``chunk`` features, so 10,000 × 10,000 features of 768 dimensions
need a few hundred MB, never the full distance matrix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from diffcxr.errors import DiffCXRError

__all__ = ["PRDC", "prdc", "kth_neighbour_radii"]


@dataclass(frozen=True)
class PRDC:
    precision: float
    recall: float
    density: float
    coverage: float
    k: int
    n_real: int
    n_fake: int

    def to_dict(self) -> dict:
        return asdict(self)


def _as_tensor(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not torch.is_tensor(x) else x).float()
    if t.ndim != 2:
        raise DiffCXRError(f"{name} features must be (N, d), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise DiffCXRError(f"{name} features contain NaN or inf")
    return t


def _blocks(a: torch.Tensor, b: torch.Tensor, chunk: int):
    """``(start, distances of a[start:start+chunk] to every row of b)`` for consecutive row blocks of ``a``."""
    for start in range(0, a.shape[0], chunk):
        yield start, torch.cdist(a[start:start + chunk], b)


def kth_neighbour_radii(features, k: int = 5, chunk: int = 1024) -> torch.Tensor:
    """Distance of every row to its k-th nearest other row, ``(N,)`` (the row itself excluded)."""
    x = _as_tensor(features, "input")
    if x.shape[0] <= k:
        raise DiffCXRError(f"k = {k} nearest neighbours need more than {k} features, got {x.shape[0]}")
    radii = torch.empty(x.shape[0])
    for start, d in _blocks(x, x, chunk):
        radii[start:start + d.shape[0]] = d.topk(k + 1, dim=1, largest=False).values[:, k]  # column 0: itself
    return radii


def prdc(real, fake, k: int = 5, chunk: int = 1024) -> PRDC:
    """PRDC of ``fake`` ``(M, d)`` against ``real`` ``(N, d)`` features (numpy or torch), ``k`` neighbours."""
    if k < 1:
        raise DiffCXRError(f"k must be >= 1, got {k}")
    r, f = _as_tensor(real, "real"), _as_tensor(fake, "generated")
    if r.shape[1] != f.shape[1]:
        raise DiffCXRError(f"real and generated features differ in dimension: {r.shape[1]} vs {f.shape[1]}")
    real_radii = kth_neighbour_radii(r, k, chunk)
    fake_radii = kth_neighbour_radii(f, k, chunk)
    inside_count = torch.zeros(f.shape[0])        # per generated feature: how many real balls hold it
    for start, d in _blocks(f, r, chunk):          # d: (block of generated, all real)
        inside = d <= real_radii.unsqueeze(0)
        inside_count[start:start + d.shape[0]] = inside.sum(dim=1).float()
    real_recalled = torch.zeros(r.shape[0], dtype=torch.bool)
    real_covered = torch.zeros(r.shape[0], dtype=torch.bool)
    for start, d in _blocks(r, f, chunk):          # d: (block of real, all generated)
        rows = slice(start, start + d.shape[0])
        real_recalled[rows] = (d <= fake_radii.unsqueeze(0)).any(dim=1)
        real_covered[rows] = d.min(dim=1).values <= real_radii[rows]
    return PRDC(precision=float((inside_count > 0).float().mean()), recall=float(real_recalled.float().mean()),
                density=float(inside_count.sum() / (k * f.shape[0])), coverage=float(real_covered.float().mean()),
                k=k, n_real=int(r.shape[0]), n_fake=int(f.shape[0]))
