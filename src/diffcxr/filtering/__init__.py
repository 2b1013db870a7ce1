"""Latent Noise Filtering Strategy (LNFS): find and remove noisy training samples in VAE latent space.

Pure pieces (numpy / scikit-learn, no torch)::

    from diffcxr.filtering import latent_features, latent_noise_filter, load_manifest
    features = latent_features(latents, "flatten")            # (N, C, h, w) -> (N, D)
    result = latent_noise_filter(features, n_clusters=8, remove_fraction_per_round=0.02, rounds=3, seed=0)
    result.kept, result.removed_in_round, result.final_score, result.ranking()
    kept_ids = load_manifest("runs/filter/manifest.csv")      # training: keep record.id in kept_ids

The driver (:func:`run_filter`, used by ``diffcxr filter``) encodes a dataset with a frozen VAE (cached),
filters and writes ``manifest.csv``, ``summary.json``, ``removed.txt`` and figures.
"""

from diffcxr.filtering.config import FilterConfig, load_config
from diffcxr.filtering.features import latent_features, pca_reduce
from diffcxr.filtering.latent_noise_filter import FilterResult, latent_noise_filter
from diffcxr.filtering.manifest import load_manifest, read_manifest, write_manifest


def run_filter(*args, **kwargs):
    """See :func:`diffcxr.filtering.driver.run_filter` (imported lazily: it pulls in torch/diffusers)."""
    from diffcxr.filtering.driver import run_filter as _run_filter

    return _run_filter(*args, **kwargs)


__all__ = [
    "FilterConfig",
    "FilterResult",
    "latent_features",
    "latent_noise_filter",
    "load_config",
    "load_manifest",
    "pca_reduce",
    "read_manifest",
    "run_filter",
    "write_manifest",
]
