"""``FilterConfig``: every knob of the latent noise filter, validated, loadable from YAML + ``key=value``.

Unknown keys are errors that name the key (a typo must never silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path

from diffcxr.configs.schema import apply_overrides, build_dataclass, read_yaml_mapping
from diffcxr.errors import DiffCXRError

FEATURES = ("flatten", "pool", "l2", "pool_l2")
NORMALIZATIONS = ("robust", "zscore", "ratio", "none")


@dataclasses.dataclass
class FilterConfig:
    """Configuration of ``diffcxr filter`` (defaults chosen on planted-noise phantoms: see docs/filtering.md).

    Filter:
        n_clusters: K of K-means.
        remove_fraction: fraction of the *whole* dataset removed in each round (budget = rounds × fraction).
        rounds: number of fit → score → remove rounds (the clusters are re-fitted on the kept set each round).
        feature: ``flatten`` (the latent as one vector), ``pool`` (per-channel average pool to
            ``pool_size × pool_size``), ``l2`` (flattened, unit norm), ``pool_l2``.
        pool_size: grid of the ``pool`` features.
        pca_components: project features on this many principal components before clustering (0 = off).
        normalize: per-cluster score normalisation of the distance to the centre: ``robust`` ((d − median) / MAD),
            ``zscore`` ((d − mean) / std), ``ratio`` (d / median) or ``none``.
        min_cluster_fraction: clusters holding fewer than this fraction of the fitted samples are treated as
            clusters *of outliers*: their members are scored against the nearest large cluster (0 = off).
        fit_samples: K-means (and PCA) are fitted on at most this many kept samples (random subset); every
            sample is still scored. Bounds time and memory at MIMIC scale.
        kmeans_batch_size, n_init, max_iter: ``MiniBatchKMeans`` settings.
        seed: seeds K-means, PCA and the subsets.
    Data / encoding:
        image_size: pixels per side fed to the VAE (default: the VAE's ``sample_size``).
        batch_size: images per VAE forward pass.
        split, frontal_only: restrict the records read from ``--data``.
        cache: latent cache file (default ``OUT/latents.safetensors``).
    Report:
        figures: write the PNG figures; sheet_images: images per contact sheet.
    """

    n_clusters: int = 1
    remove_fraction: float = 0.02
    rounds: int = 3
    feature: str = "flatten"
    pool_size: int = 4
    pca_components: int = 0
    normalize: str = "robust"
    min_cluster_fraction: float = 0.1
    fit_samples: int = 20_000
    kmeans_batch_size: int = 2048
    n_init: int = 3
    max_iter: int = 50
    seed: int = 0
    image_size: typing.Optional[int] = None
    batch_size: int = 16
    split: typing.Optional[str] = None
    frontal_only: bool = False
    cache: typing.Optional[str] = None
    figures: bool = True
    sheet_images: int = 36

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------------------------------------------
    def validate(self) -> "FilterConfig":
        def positive(name: str) -> None:
            if getattr(self, name) < 1:
                raise DiffCXRError(f"filter config: {name} must be >= 1, got {getattr(self, name)}")

        for name in ("n_clusters", "rounds", "pool_size", "fit_samples", "kmeans_batch_size", "n_init", "max_iter",
                     "batch_size", "sheet_images"):
            positive(name)
        if self.pca_components < 0:
            raise DiffCXRError(f"filter config: pca_components must be >= 0 (0 = off), got {self.pca_components}")
        if not 0.0 <= self.remove_fraction < 1.0:
            raise DiffCXRError(f"filter config: remove_fraction must be in [0, 1), got {self.remove_fraction}")
        check_budget(self.remove_fraction, self.rounds)
        if self.feature not in FEATURES:
            raise DiffCXRError(f"filter config: feature must be one of {', '.join(FEATURES)}, got {self.feature!r}")
        if self.normalize not in NORMALIZATIONS:
            raise DiffCXRError(f"filter config: normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}")
        if not 0.0 <= self.min_cluster_fraction < 1.0:
            raise DiffCXRError(f"filter config: min_cluster_fraction must be in [0, 1), got {self.min_cluster_fraction}")
        if self.image_size is not None and self.image_size < 8:
            raise DiffCXRError(f"filter config: image_size must be >= 8, got {self.image_size}")
        if self.split is not None and self.split not in ("train", "val", "test"):
            raise DiffCXRError(f"filter config: split must be train, val or test, got {self.split!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], where: str = "filter config") -> "FilterConfig":
        """Build from a flat mapping: unknown keys and ill-typed values are errors naming the key."""
        return build_dataclass(cls, dict(mapping), "", where)

    def with_overrides(self, overrides: Iterable[str]) -> "FilterConfig":
        """Apply ``key=value`` strings (values parsed as YAML scalars, e.g. ``rounds=3``, ``cache=null``)."""
        values = apply_overrides(self.to_dict(), [o for o in overrides], where="filter config overrides")
        return type(self).from_mapping(values, where="filter config overrides")


def check_budget(remove_fraction: float, rounds: int) -> None:
    """Raise when ``rounds × remove_fraction`` would remove the whole dataset."""
    if remove_fraction * rounds >= 1.0 - 1e-9:
        raise DiffCXRError(
            f"removal budget rounds × remove_fraction = {rounds} × {remove_fraction:g} = {rounds * remove_fraction:.0%} "
            "would remove the whole dataset; it must stay below 100 % (e.g. rounds=3 remove_fraction=0.02)"
        )


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> FilterConfig:
    """Defaults ← YAML file (a flat mapping, or one nested under a ``filter:`` key) ← ``key=value`` overrides."""
    config = FilterConfig()
    if path is not None:
        data = read_yaml_mapping(path, "filter config")
        if set(data) == {"filter"}:
            data = data["filter"] or {}
        if not isinstance(data, dict):
            raise DiffCXRError(f"filter config {path}: 'filter' must be a mapping of key: value")
        config = FilterConfig.from_mapping(data, where=f"filter config {path}")
    return config.with_overrides(overrides)
