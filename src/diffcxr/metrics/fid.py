"""Fréchet distance between Gaussians fitted to feature sets, from streaming statistics.

FID = ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})

:class:`StreamingGaussianStats` keeps a running sum and a running sum of outer products in float64, so memory is
``O(D²)`` whatever the number of images (no ``N×D`` feature matrix is ever held), and two accumulators merge
exactly (``a.merge(b)`` == having seen both streams). The square-root trace uses an eigendecomposition of the
*symmetric* matrix ``S1^{1/2} S2 S1^{1/2}`` (no scipy, no complex arithmetic); tiny negative eigenvalues from
rounding are clipped to 0.
"""

from __future__ import annotations


import numpy as np
import torch

from diffcxr.errors import DiffCXRError

__all__ = ["StreamingGaussianStats", "frechet_distance", "fid_from_features"]


class StreamingGaussianStats:
    """Running mean/covariance of ``D``-dimensional features in float64; memory ``O(D²)``, mergeable.

    >>> s = StreamingGaussianStats(); s.update(torch.randn(10, 4)); s.update(torch.randn(5, 4)); s.n
    15
    """

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim
        self.n = 0
        self._sum: torch.Tensor | None = None
        self._outer: torch.Tensor | None = None
        if dim is not None:
            self._init(dim)

    def _init(self, dim: int) -> None:
        self.dim = int(dim)
        self._sum = torch.zeros(self.dim, dtype=torch.float64)
        self._outer = torch.zeros(self.dim, self.dim, dtype=torch.float64)

    def update(self, features: torch.Tensor | np.ndarray) -> "StreamingGaussianStats":
        """Add a batch ``(B, D)`` of features (any float dtype, any device)."""
        x = torch.as_tensor(features).detach().to("cpu", torch.float64)
        if x.ndim != 2:
            raise DiffCXRError(f"features must be a (batch, dim) matrix, got shape {tuple(x.shape)}")
        if self._sum is None:
            self._init(x.shape[1])
        if x.shape[1] != self.dim:
            raise DiffCXRError(f"feature dimension changed: {x.shape[1]} after {self.dim}")
        if not torch.isfinite(x).all():
            raise DiffCXRError("features contain NaN or inf (black/NaN images or a broken extractor?)")
        self.n += x.shape[0]
        self._sum += x.sum(0)
        self._outer += x.T @ x
        return self

    def merge(self, other: "StreamingGaussianStats") -> "StreamingGaussianStats":
        """Add another accumulator's statistics into this one (e.g. from another process/shard)."""
        if other.n == 0:
            return self
        if self._sum is None:
            self._init(other.dim)
        if other.dim != self.dim:
            raise DiffCXRError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        self.n += other.n
        self._sum += other._sum
        self._outer += other._outer
        return self

    @property
    def mean(self) -> np.ndarray:
        if self.n < 1:
            raise DiffCXRError("no features were accumulated")
        return (self._sum / self.n).numpy()

    @property
    def cov(self) -> np.ndarray:
        """Unbiased sample covariance (divides by ``n - 1``)."""
        if self.n < 2:
            raise DiffCXRError(f"a covariance needs at least 2 feature vectors, got {self.n}")
        mu = self._sum / self.n
        cov = (self._outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return ((cov + cov.T) / 2).numpy()

    def state_dict(self) -> dict:
        return {"n": self.n, "sum": self._sum, "outer": self._outer}

    @classmethod
    def from_state_dict(cls, state: dict) -> "StreamingGaussianStats":
        stats = cls()
        if state["sum"] is not None:
            stats._init(state["sum"].shape[0])
            stats._sum.copy_(state["sum"])
            stats._outer.copy_(state["outer"])
        stats.n = int(state["n"])
        return stats


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (float64, scipy-free).

    ``Tr((S1 S2)^{1/2})`` is computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix
    ``S1^{1/2} S2 S1^{1/2}`` (same spectrum as ``S1 S2``).
    """
    mu1, mu2 = np.asarray(mu1, np.float64).ravel(), np.asarray(mu2, np.float64).ravel()
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise DiffCXRError(f"mean/covariance shapes do not match: {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    root1 = _sqrtm_psd(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)
    return max(value, 0.0)


def fid_from_features(real, fake) -> float:
    """FID between two feature matrices ``(N, D)`` (convenience over :class:`StreamingGaussianStats`)."""
    a, b = StreamingGaussianStats().update(real), StreamingGaussianStats().update(fake)
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)
