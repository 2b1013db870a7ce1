"""The Latent Noise Filtering Strategy (LNFS, Diff-CXR §1(a)) as a pure function over feature vectors.

Each round: fit K-means (scikit-learn ``MiniBatchKMeans``, seeded) on the samples still kept → every sample's
distance to its nearest centre, normalised by the spread of its cluster (so a loose cluster does not flag all
its members) → remove the ``remove_fraction · N`` most anomalous kept samples. The next round re-fits the
clusters on what is left: once gross outliers stop dragging the centres, subtler ones stand out ("gradual").
After the last round the clusters are fitted once more on the final kept set, and that fit gives the final
score of *every* sample (removed ones included), i.e. its distance to the clean data.

Memory/time are bounded for large N: K-means is fitted on at most ``fit_samples`` kept rows (a seeded random
subset), and distances are computed in chunks, so the only N-sized arrays are the features themselves and a
few ``(rounds + 1, N)`` score/cluster tables.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from diffcxr.errors import DiffCXRError
from diffcxr.filtering.config import NORMALIZATIONS, check_budget

logger = logging.getLogger(__name__)

CHUNK = 8192


@dataclasses.dataclass
class FilterResult:
    """What :func:`latent_noise_filter` found.

    Attributes:
        scores: ``(rounds + 1, N)`` float32 per-cluster-normalised distance of every sample to its centre in
            each round's fit; row ``rounds`` is the final fit (on the kept set). Higher = more anomalous.
        clusters: ``(rounds + 1, N)`` int32 cluster id of every sample in each fit.
        removed_in_round: ``(N,)`` int32, ``r`` (1-based) for samples removed in round ``r``, 0 for kept ones.
        kept: ``(N,)`` bool.
        thresholds: per round, the lowest score that was removed (the cut).
        cluster_sizes: per fit, kept samples per cluster.
        small_clusters: per fit, ids of clusters treated as outlier clusters (``min_cluster_fraction``).
        seconds: per fit, wall time.
    """

    scores: np.ndarray
    clusters: np.ndarray
    removed_in_round: np.ndarray
    kept: np.ndarray
    thresholds: list[float]
    cluster_sizes: list[list[int]]
    small_clusters: list[list[int]]
    seconds: list[float]
    n_clusters: int
    remove_fraction: float
    rounds: int
    seed: int

    @property
    def final_score(self) -> np.ndarray:
        """``(N,)`` score of every sample against the clusters of the final kept set."""
        return self.scores[-1]

    @property
    def cluster(self) -> np.ndarray:
        """``(N,)`` cluster id in the final fit."""
        return self.clusters[-1]

    def ranking(self) -> np.ndarray:
        """Sample indices, most anomalous first: by removal round (earlier = worse), then by final score."""
        rounds = np.where(self.removed_in_round > 0, self.removed_in_round, self.rounds + 1)
        return np.lexsort((np.arange(len(rounds)), -self.final_score, rounds))

    def rank_score(self) -> np.ndarray:
        """A score consistent with :meth:`ranking` (higher = more anomalous), e.g. for an AUROC."""
        out = np.empty(len(self.kept), dtype=np.float64)
        out[self.ranking()] = np.arange(len(self.kept), 0, -1)
        return out


def _distances_to_centres(features: np.ndarray, centres: np.ndarray, allowed: np.ndarray, chunk: int = CHUNK):
    """Nearest allowed centre and the Euclidean distance to it, for every row (chunked)."""
    n = len(features)
    c2 = (centres.astype(np.float64) ** 2).sum(axis=1)
    centres32 = centres.astype(np.float32)
    nearest = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=np.float32)
    for start in range(0, n, chunk):
        block = np.asarray(features[start:start + chunk], dtype=np.float32)
        x2 = np.einsum("ij,ij->i", block, block, dtype=np.float64)
        d2 = x2[:, None] + c2[None, :] - 2.0 * (block @ centres32.T).astype(np.float64)
        d2[:, ~allowed] = np.inf
        idx = d2.argmin(axis=1)
        nearest[start:start + len(block)] = idx
        dist[start:start + len(block)] = np.sqrt(np.maximum(d2[np.arange(len(block)), idx], 0.0))
    return nearest, dist


def _normalise(dist: np.ndarray, nearest: np.ndarray, reference: np.ndarray, n_clusters: int, how: str) -> np.ndarray:
    """Per-cluster normalisation of distances, with statistics from the ``reference`` (kept) rows only."""
    if how == "none":
        return dist.astype(np.float32)
    ref_d, ref_c = dist[reference], nearest[reference]
    global_centre = float(np.median(ref_d)) if how in ("robust", "ratio") else float(ref_d.mean())
    if how == "robust":
        global_scale = 1.4826 * float(np.median(np.abs(ref_d - global_centre)))
    elif how == "zscore":
        global_scale = float(ref_d.std())
    else:
        global_scale = global_centre
    global_scale = max(global_scale, 1e-12)
    centre = np.full(n_clusters, global_centre)
    scale = np.full(n_clusters, global_scale)
    for k in range(n_clusters):
        d = ref_d[ref_c == k]
        if len(d) < 3:  # too few members for a spread: use the global one
            continue
        if how == "robust":
            centre[k] = np.median(d)
            s = 1.4826 * np.median(np.abs(d - centre[k]))
        elif how == "zscore":
            centre[k] = d.mean()
            s = d.std()
        else:  # ratio
            centre[k] = 0.0
            s = np.median(d)
        scale[k] = s if s > 1e-12 * max(1.0, global_scale) else global_scale
    if how == "ratio":
        return (dist / scale[nearest]).astype(np.float32)
    return ((dist - centre[nearest]) / scale[nearest]).astype(np.float32)


def _fit(features, rows, n_clusters, seed, fit_samples, batch_size, n_init, max_iter):
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(seed)
    if len(rows) > fit_samples:
        rows = np.sort(rng.choice(rows, fit_samples, replace=False))
    kmeans = MiniBatchKMeans(
        n_clusters=n_clusters,
        batch_size=int(min(batch_size, len(rows))),
        n_init=n_init,
        max_iter=max_iter,
        random_state=seed,
        init_size=int(min(len(rows), max(3 * batch_size, 3 * n_clusters))),
    )
    kmeans.fit(np.asarray(features[rows], dtype=np.float32))
    return kmeans.cluster_centers_


def latent_noise_filter(
    features: np.ndarray,
    n_clusters: int = 8,
    remove_fraction_per_round: float = 0.02,
    rounds: int = 3,
    seed: int = 0,
    *,
    normalize: str = "robust",
    min_cluster_fraction: float = 0.0,
    fit_samples: int = 20_000,
    kmeans_batch_size: int = 2048,
    n_init: int = 3,
    max_iter: int = 50,
    progress: bool = False,
) -> FilterResult:
    """Gradual K-means outlier removal on ``(N, D)`` features (see module docstring).

    Args:
        features: one row per sample (e.g. :func:`diffcxr.filtering.latent_features`).
        n_clusters: K.
        remove_fraction_per_round: fraction of all ``N`` samples removed in each round (rounded to an integer
            count); the total budget ``rounds × fraction`` must stay below 1.
        rounds: fit → score → remove rounds; 1 = the one-shot filter.
        seed: seeds every K-means fit (round ``r`` uses ``seed + r``) and subset draw.
        normalize: ``robust`` | ``zscore`` | ``ratio`` | ``none`` per-cluster distance normalisation.
        min_cluster_fraction: clusters with fewer kept members than this fraction are outlier clusters: their
            members are scored against the nearest large cluster instead (0 = off).
        fit_samples, kmeans_batch_size, n_init, max_iter: K-means fit size and ``MiniBatchKMeans`` settings.

    Raises:
        DiffCXRError: empty input, fewer samples than clusters (also after removal), budget ≥ 100 %, NaNs.
    """
    features = np.asarray(features) if not isinstance(features, np.ndarray) else features
    if features.ndim != 2:
        raise DiffCXRError(f"features must be a (N, D) matrix, got shape {tuple(features.shape)}")
    n = len(features)
    if n == 0:
        raise DiffCXRError("no samples to filter (the dataset is empty)")
    if n_clusters < 1 or rounds < 1:
        raise DiffCXRError(f"n_clusters and rounds must be >= 1, got n_clusters={n_clusters}, rounds={rounds}")
    if not 0.0 <= remove_fraction_per_round < 1.0:
        raise DiffCXRError(f"remove_fraction_per_round must be in [0, 1), got {remove_fraction_per_round}")
    check_budget(remove_fraction_per_round, rounds)
    if normalize not in NORMALIZATIONS:
        raise DiffCXRError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    per_round = int(round(remove_fraction_per_round * n))
    if n - per_round * rounds < n_clusters:
        raise DiffCXRError(
            f"{n} samples are too few for n_clusters={n_clusters}"
            + (f" after removing {per_round * rounds} of them" if per_round else "")
            + f"; use fewer clusters (n_clusters <= {max(1, n - per_round * rounds)}) or more data"
        )
    if not np.isfinite(features[: min(n, 1024)]).all():
        raise DiffCXRError("features contain NaN/inf")

    kept = np.ones(n, dtype=bool)
    removed_in_round = np.zeros(n, dtype=np.int32)
    scores = np.empty((rounds + 1, n), dtype=np.float32)
    clusters = np.empty((rounds + 1, n), dtype=np.int32)
    thresholds, sizes, smalls, seconds = [], [], [], []
    iterator = range(rounds + 1)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="LNFS rounds", unit="fit")
    for r in iterator:  # r = 0..rounds-1 remove; r = rounds is the final fit
        t0 = time.perf_counter()
        rows = np.flatnonzero(kept)
        centres = _fit(features, rows, n_clusters, seed + r, fit_samples, kmeans_batch_size, n_init, max_iter)
        allowed = np.ones(n_clusters, dtype=bool)
        nearest, dist = _distances_to_centres(features, centres, allowed)
        size = np.bincount(nearest[rows], minlength=n_clusters)
        small = []
        if min_cluster_fraction > 0:
            allowed = size >= min_cluster_fraction * len(rows)
            if allowed.any() and not allowed.all():
                small = np.flatnonzero(~allowed).tolist()
                nearest, dist = _distances_to_centres(features, centres, allowed)
            else:
                allowed[:] = True
        score = _normalise(dist, nearest, rows, n_clusters, normalize)
        scores[r], clusters[r] = score, nearest
        sizes.append(np.bincount(nearest[rows], minlength=n_clusters).tolist())
        smalls.append(small)
        if r < rounds and per_round > 0:
            # most anomalous kept samples; ties broken by index for determinism
            order = rows[np.lexsort((rows, -score[rows]))][:per_round]
            kept[order] = False
            removed_in_round[order] = r + 1
            thresholds.append(float(score[order].min()))
        elif r < rounds:
            thresholds.append(float("inf"))
        seconds.append(time.perf_counter() - t0)
        logger.info("LNFS fit %d/%d: %d kept, %.1f s", r + 1, rounds + 1, int(kept.sum()), seconds[-1])
    return FilterResult(
        scores=scores, clusters=clusters, removed_in_round=removed_in_round, kept=kept, thresholds=thresholds,
        cluster_sizes=sizes, small_clusters=smalls, seconds=seconds, n_clusters=n_clusters,
        remove_fraction=float(remove_fraction_per_round), rounds=rounds, seed=seed,
    )
