"""Kernel Inception Distance: unbiased MMD² with a cubic polynomial kernel, averaged over random subsets.

Same estimator as torchmetrics' ``KernelInceptionDistance`` (and Bińkowski et al. 2018):
``k(x, y) = (gamma · x·y + coef)^degree`` with ``gamma = 1/D``, ``coef = 1``, ``degree = 3``; ``subsets`` random
subsets of ``subset_size`` rows from each side; reported as mean ± std over subsets. Memory stays bounded by
*reservoir sampling* (:class:`ReservoirSampler`, algorithm R): a uniform random sample of at most
``capacity`` feature vectors is kept however many images stream through.
"""

from __future__ import annotations

import numpy as np
import torch

from diffcxr.errors import DiffCXRError

__all__ = ["ReservoirSampler", "polynomial_mmd2", "kernel_inception_distance"]


class ReservoirSampler:
    """A uniform sample of at most ``capacity`` rows from a stream of ``(B, D)`` batches (algorithm R)."""

    def __init__(self, capacity: int = 10_000, seed: int = 0) -> None:
        if capacity < 2:
            raise DiffCXRError(f"reservoir capacity must be >= 2, got {capacity}")
        self.capacity = int(capacity)
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._rows: torch.Tensor | None = None
        self._filled = 0

    def update(self, features) -> "ReservoirSampler":
        x = torch.as_tensor(features).detach().to("cpu", torch.float32)
        if x.ndim != 2:
            raise DiffCXRError(f"features must be a (batch, dim) matrix, got shape {tuple(x.shape)}")
        if self._rows is None:
            self._rows = torch.empty(self.capacity, x.shape[1])
        for row in x:
            if self._filled < self.capacity:
                self._rows[self._filled] = row
                self._filled += 1
            else:
                j = int(self._rng.integers(0, self.seen + 1))
                if j < self.capacity:
                    self._rows[j] = row
            self.seen += 1
        return self

    @property
    def features(self) -> torch.Tensor:
        if self._rows is None:
            return torch.empty(0, 0)
        return self._rows[: self._filled]

    def merge(self, other: "ReservoirSampler") -> "ReservoirSampler":
        """Fold in the reservoir of another part of the stream (another process's images): the result is a
        uniform sample of both parts. While both together fit, it holds every row, this part's first — so a
        sharded pass over at most ``capacity`` images gives exactly the rows of a one-process pass."""
        if other.seen == 0:
            return self
        if self.seen == 0:
            self._rows = None if other._rows is None else other._rows.clone()
            self._filled, self.seen = other._filled, other.seen
            return self
        mine, theirs = self.features, other.features
        if self.seen + other.seen <= self.capacity:
            rows = torch.cat([mine, theirs])
        else:  # how many of the merged sample come from this part: hypergeometric over the two stream lengths
            take = int(self._rng.hypergeometric(self.seen, other.seen, self.capacity))
            pick_mine = torch.from_numpy(self._rng.choice(mine.shape[0], take, replace=False))
            pick_theirs = torch.from_numpy(self._rng.choice(theirs.shape[0], self.capacity - take, replace=False))
            rows = torch.cat([mine[pick_mine], theirs[pick_theirs]])
        self._rows = torch.empty(self.capacity, rows.shape[1])
        self._rows[: rows.shape[0]] = rows
        self._filled, self.seen = rows.shape[0], self.seen + other.seen
        return self


def polynomial_mmd2(f_real: torch.Tensor, f_fake: torch.Tensor, degree: int = 3, gamma: float | None = None,
                    coef: float = 1.0, dtype: torch.dtype = torch.float32,
                    fake_ids: torch.Tensor | None = None) -> float:
    """Unbiased MMD² between two equal-size feature sets with a polynomial kernel.

    Kernel matrices in ``dtype`` (float32 by default, like torchmetrics; float64 for exact comparisons), sums in
    float64. ``fake_ids`` (the source index of each fake row, for a bootstrap sample with repeats) leaves the
    pairs of one source out of the within-fake sum, as the diagonal is, so repeats do not bias MMD² upwards.
    """
    x, y = f_real.to(dtype), f_fake.to(dtype)
    m = x.shape[0]
    if m < 2 or y.shape[0] != m:
        raise DiffCXRError("MMD needs two sets of the same size >= 2")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    k_xx = (x @ x.T * gamma + coef) ** degree
    k_yy = (y @ y.T * gamma + coef) ** degree
    k_xy = (x @ y.T * gamma + coef) ** degree
    k_xx, k_yy, k_xy = k_xx.double(), k_yy.double(), k_xy.double()
    sum_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    if fake_ids is None:
        sum_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    else:
        distinct = fake_ids.reshape(-1, 1) != fake_ids.reshape(1, -1)
        if not distinct.any():
            raise DiffCXRError("MMD needs at least 2 distinct fake samples")
        sum_yy = k_yy[distinct].sum() / distinct.sum()
    return float(sum_xx + sum_yy - 2 * k_xy.mean())


def kernel_inception_distance(real, fake, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
                              gamma: float | None = None, coef: float = 1.0, seed: int = 0,
                              fake_ids=None) -> tuple[float, float, int]:
    """KID (mean, std over ``subsets``) between feature matrices; returns ``(mean, std, subset_size_used)``.

    ``subset_size`` is lowered to the smaller set's size when there are fewer features (the size used is
    returned, so it can be recorded). ``fake_ids``: see :func:`polynomial_mmd2` (bootstrap samples).
    """
    real, fake = torch.as_tensor(real).float(), torch.as_tensor(fake).float()
    ids = None if fake_ids is None else torch.as_tensor(fake_ids)
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise DiffCXRError(f"KID needs at least 2 real and 2 generated images, got {real.shape[0]} and {fake.shape[0]}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        i = torch.from_numpy(rng.choice(real.shape[0], size, replace=False))
        j = torch.from_numpy(rng.choice(fake.shape[0], size, replace=False))
        values.append(polynomial_mmd2(real[i], fake[j], degree, gamma, coef, fake_ids=None if ids is None else ids[j]))
    arr = np.asarray(values)
    return float(arr.mean()), float(arr.std()), size
