"""The filter's ``manifest.csv``: one row per sample, and :func:`load_manifest` → the kept ids for training.

Columns: ``id, path, view, cluster, score_round1 … score_roundR, score_final, rank, removed_in_round, kept``
(``cluster`` = cluster in the final fit; ``rank`` 1 = most anomalous; ``removed_in_round`` 0 = kept;
``kept`` 1/0).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diffcxr.errors import DatasetError

REQUIRED_COLUMNS = ("id", "kept")


def write_manifest(path: str | Path, ids: Sequence[str], result, paths: Sequence[str] | None = None,
                   views: Sequence[str] | None = None) -> Path:
    """Write ``manifest.csv`` for a :class:`~diffcxr.filtering.FilterResult` over samples ``ids``."""
    path = Path(path)
    n = len(ids)
    if len(result.kept) != n:
        raise ValueError(f"{n} ids but the filter result has {len(result.kept)} samples")
    rank = np.empty(n, dtype=np.int64)
    rank[result.ranking()] = np.arange(1, n + 1)
    header = ["id", "path", "view", "cluster"] + [f"score_round{r + 1}" for r in range(result.rounds)]
    header += ["score_final", "rank", "removed_in_round", "kept"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for i in range(n):
            writer.writerow(
                [ids[i], paths[i] if paths is not None else "", views[i] if views is not None else "", int(result.cluster[i])]
                + [f"{float(result.scores[r, i]):.5g}" for r in range(result.rounds + 1)]
                + [int(rank[i]), int(result.removed_in_round[i]), int(bool(result.kept[i]))]
            )
    return path


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """All rows of a manifest as dicts (validated: needs ``id`` and ``kept`` columns, unique ids)."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise DatasetError(f"filter manifest not found: {path} (write one with `diffcxr filter ... --out DIR`)")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path} is not a filter manifest: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        if row["kept"].strip() not in ("0", "1"):
            raise DatasetError(f"{path}:{line}: kept must be 0 or 1, got {row['kept']!r}")
        if row["id"] in seen:
            raise DatasetError(f"{path}:{line}: duplicate id {row['id']!r}")
        seen.add(row["id"])
    return rows


def load_manifest(path: str | Path) -> set[str]:
    """The ids a filter manifest keeps (``kept == 1``): restrict training with ``record.id in kept``.

    ``path`` is ``manifest.csv`` or the folder holding it.
    """
    return {row["id"] for row in read_manifest(path) if row["kept"].strip() == "1"}
