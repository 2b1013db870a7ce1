"""Latents → one feature vector per sample (pure numpy, chunked so a 377k-sample cache never doubles in memory).

``latents``: ``(N, C, h, w)`` array of VAE latents (any float dtype; float16 caches are fine).

* ``flatten``  — the latent as one ``C·h·w`` vector (the paper's choice; the default).
* ``pool``     — per-channel average pool to ``pool_size × pool_size`` (``C·p·p`` values): global layout only.
* ``l2``       — flattened, then scaled to unit length (distance ≈ angle; ignores overall intensity/contrast).
* ``pool_l2``  — pooled, then unit length.

:func:`pca_reduce` projects features on their top principal components (fitted on a seeded subset).
"""

from __future__ import annotations

import numpy as np

from diffcxr.errors import DiffCXRError

CHUNK = 8192


def feature_dim(latent_shape: tuple[int, ...], kind: str = "flatten", pool_size: int = 4) -> int:
    c, h, w = latent_shape
    if kind in ("pool", "pool_l2"):
        return c * min(pool_size, h) * min(pool_size, w)
    return c * h * w


def _pool(block: np.ndarray, pool_size: int) -> np.ndarray:
    """Average-pool ``(n, C, h, w)`` to ``(n, C, p, p)`` with bins as even as possible (like adaptive pooling)."""
    n, c, h, w = block.shape
    ph, pw = min(pool_size, h), min(pool_size, w)
    rows = np.linspace(0, h, ph + 1).round().astype(int)
    cols = np.linspace(0, w, pw + 1).round().astype(int)
    out = np.empty((n, c, ph, pw), dtype=np.float32)
    for i in range(ph):
        for j in range(pw):
            out[:, :, i, j] = block[:, :, rows[i]:rows[i + 1], cols[j]:cols[j + 1]].mean(axis=(2, 3), dtype=np.float32)
    return out


def latent_features(latents: np.ndarray, kind: str = "flatten", pool_size: int = 4, chunk: int = CHUNK) -> np.ndarray:
    """``(N, C, h, w)`` latents → ``(N, D)`` float32 features (see module docstring for ``kind``)."""
    latents = np.asarray(latents) if not isinstance(latents, np.ndarray) else latents
    if latents.ndim != 4:
        raise DiffCXRError(f"latents must be (N, C, h, w), got shape {tuple(latents.shape)}")
    if len(latents) == 0:
        raise DiffCXRError("no latents to filter (the dataset is empty)")
    if kind not in ("flatten", "pool", "l2", "pool_l2"):
        raise DiffCXRError(f"unknown feature kind {kind!r}; choose flatten, pool, l2 or pool_l2")
    n = len(latents)
    out = np.empty((n, feature_dim(latents.shape[1:], kind, pool_size)), dtype=np.float32)
    for start in range(0, n, chunk):
        block = np.asarray(latents[start:start + chunk], dtype=np.float32)
        if kind in ("pool", "pool_l2"):
            block = _pool(block, pool_size)
        block = block.reshape(len(block), -1)
        if kind in ("l2", "pool_l2"):
            block = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        out[start:start + len(block)] = block
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out).all(axis=1)).sum())
        raise DiffCXRError(f"{bad} latents contain NaN/inf (a broken VAE or cache?)")
    return out


def pca_reduce(features: np.ndarray, n_components: int, seed: int = 0, fit_samples: int = 50_000,
               fit_indices: np.ndarray | None = None, chunk: int = CHUNK) -> np.ndarray:
    """Project ``(N, D)`` features on ``n_components`` principal components fitted on (a subset of) the rows.

    ``fit_indices`` restricts which rows the projection is fitted on (e.g. the kept samples). The transform is
    applied in chunks; the result is float32 ``(N, n_components)``.
    """
    from sklearn.decomposition import PCA

    n, d = features.shape
    rows = np.arange(n) if fit_indices is None else np.asarray(fit_indices)
    n_components = int(min(n_components, d, len(rows)))
    if n_components < 1:
        raise DiffCXRError("pca_components must be >= 1 and there must be samples to fit it on")
    rng = np.random.default_rng(seed)
    if len(rows) > fit_samples:
        rows = np.sort(rng.choice(rows, fit_samples, replace=False))
    pca = PCA(n_components=n_components, svd_solver="randomized" if n_components < min(len(rows), d) // 2 else "auto",
              random_state=seed)
    pca.fit(features[rows])
    out = np.empty((n, n_components), dtype=np.float32)
    for start in range(0, n, chunk):
        out[start:start + chunk] = pca.transform(features[start:start + chunk])
    return out
