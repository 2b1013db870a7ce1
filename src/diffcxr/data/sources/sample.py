"""``sample`` source: a built-in sample of digital chest phantoms, generated on first use and cached.

``sample:16`` = 16 phantoms (256×256, seed 0) with their reports and labels. It needs no data download, so
``diffcxr data show`` works on a fresh install. Cached under ``$DIFFCXR_CACHE`` (default
``~/.cache/diffcxr``).
"""

from __future__ import annotations

import os
from pathlib import Path

from diffcxr.data.records import Record
from diffcxr.data.sources.csv_manifest import read_csv_manifest
from diffcxr.errors import DatasetError


def cache_dir() -> Path:
    return Path(os.environ.get("DIFFCXR_CACHE", Path.home() / ".cache" / "diffcxr"))


def read_sample(path: Path, size: str = "256", seed: str = "0") -> list[Record]:
    """Generate (once) and read ``N`` phantoms; ``path`` is the count, e.g. ``sample:16?size=128&seed=1``."""
    try:
        count, side, seed_value = int(str(path)), int(size), int(seed)
    except ValueError:
        raise DatasetError(f"sample spec needs integers: sample:N[?size=S&seed=K], got sample:{path}") from None
    if not 1 <= count <= 10_000:
        raise DatasetError(f"sample size must be between 1 and 10000, got {count}")
    from diffcxr.data.phantom import make_phantom_dataset

    folder = cache_dir() / f"sample-n{count}-s{side}-seed{seed_value}"
    if not (folder / "metadata.csv").is_file():
        make_phantom_dataset(count, side, folder, noise_fraction=0.0, seed=seed_value, progress=False)
    return read_csv_manifest(folder / "metadata.csv")
