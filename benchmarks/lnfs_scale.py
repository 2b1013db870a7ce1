"""LNFS at scale: 100,000 synthetic latents of 4×32×32 (the paper's 256×256 KL-f8 latent) on this CPU.

Prints wall time per stage and the peak resident memory (``resource.getrusage``), and checks that planted
outliers are still found. Target (issue 7): < 10 min on 2 cores, peak memory < 4 GB.

    nice .venv/bin/python benchmarks/lnfs_scale.py                 # 100k, the default config
    nice .venv/bin/python benchmarks/lnfs_scale.py --n 20000       # quicker

Synthetic data: 8 Gaussian "modes" (smooth random 4×32×32 templates, like view/anatomy modes) plus per-sample
noise; 2 % of the samples are planted outliers (a template with a large off-manifold perturbation). Latents are
stored float16 (as the latent cache does): 100k × 4096 × 2 B = 0.82 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np


def rss_gb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def synthetic_latents(n: int, seed: int = 0, outlier_fraction: float = 0.02, chunk: int = 10_000):
    rng = np.random.default_rng(seed)
    shape = (4, 32, 32)
    # smooth templates: low-frequency random fields
    coarse = rng.normal(0, 1, (8, 4, 4, 4))
    templates = coarse.repeat(8, axis=2).repeat(8, axis=3).astype(np.float32)
    latents = np.empty((n, *shape), dtype=np.float16)
    truth = rng.random(n) < outlier_fraction
    modes = rng.integers(0, 8, n)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = templates[modes[start:stop]] + rng.normal(0, 0.5, (stop - start, *shape)).astype(np.float32)
        bad = truth[start:stop]
        if bad.any():  # off-manifold: a random smooth perturbation of the same energy as a template
            blob = rng.normal(0, 1, (int(bad.sum()), 4, 4, 4)).repeat(8, axis=2).repeat(8, axis=3)
            block[bad] += 0.8 * blob.astype(np.float32)
        latents[start:stop] = block
    return latents, truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="filter config overrides key=value")
    args = parser.parse_args()

    from sklearn.metrics import roc_auc_score

    from diffcxr.filtering import latent_features, latent_noise_filter, load_config, pca_reduce

    config = load_config(None, args.overrides)
    print(f"threads: torch/BLAS on {os.cpu_count()} visible cores; config: {json.dumps({k: v for k, v in config.to_dict().items() if k in ('n_clusters', 'remove_fraction', 'rounds', 'feature', 'pca_components', 'fit_samples', 'kmeans_batch_size', 'n_init', 'max_iter', 'min_cluster_fraction')})}")
    t0 = time.perf_counter()
    latents, truth = synthetic_latents(args.n, args.seed)
    t1 = time.perf_counter()
    print(f"latents {latents.shape} {latents.dtype}: {latents.nbytes / 1e9:.2f} GB, made in {t1 - t0:.1f} s; peak RSS {rss_gb():.2f} GB")
    features = latent_features(latents, config.feature, config.pool_size)
    del latents  # the driver also drops the latents once the features exist
    if config.pca_components:
        features = pca_reduce(features, config.pca_components, config.seed, config.fit_samples)
    t2 = time.perf_counter()
    print(f"features {features.shape} float32: {features.nbytes / 1e9:.2f} GB in {t2 - t1:.1f} s; peak RSS {rss_gb():.2f} GB")
    result = latent_noise_filter(
        features, config.n_clusters, config.remove_fraction, config.rounds, config.seed,
        normalize=config.normalize, min_cluster_fraction=config.min_cluster_fraction, fit_samples=config.fit_samples,
        kmeans_batch_size=config.kmeans_batch_size, n_init=config.n_init, max_iter=config.max_iter,
    )
    t3 = time.perf_counter()
    removed = ~result.kept
    print(f"filter: {config.rounds} rounds + final fit in {t3 - t2:.1f} s (per fit: {', '.join(f'{s:.1f}' for s in result.seconds)} s)")
    print(f"removed {int(removed.sum())} ({removed.mean():.1%}); planted outliers {int(truth.sum())}: "
          f"AUROC {roc_auc_score(truth, result.final_score):.4f}, precision of removed {truth[removed].mean():.3f}, "
          f"recall {removed[truth].mean():.3f}")
    total = t3 - t0
    peak = rss_gb()
    print(f"TOTAL {total:.1f} s ({total / 60:.2f} min) — target < 10 min: {'OK' if total < 600 else 'MISSED'}; "
          f"peak RSS {peak:.2f} GB — target < 4 GB: {'OK' if peak < 4 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
