"""Bootstrap confidence intervals that resample *reports* (groups of images), as pure functions.

Images generated from one report are not independent samples, so the resampling unit is the report: each
replicate draws as many reports as there are, with replacement, and keeps all images of every drawn report.

>>> import numpy as np
>>> values = np.arange(10.0)
>>> ci = bootstrap_interval(lambda idx: float(values[idx].mean()), groups=list(range(10)), n_boot=200, seed=0)
>>> ci["low"] < 4.5 < ci["high"]
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence

import numpy as np

from diffcxr.errors import DiffCXRError

__all__ = ["group_bootstrap", "bootstrap_interval"]


def group_bootstrap(groups: Sequence[Hashable], n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield ``n_boot`` index arrays into ``groups``' items: whole groups drawn with replacement (seeded)."""
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    blocks = [np.asarray(v, dtype=np.int64) for v in members.values()]
    if not blocks:
        raise DiffCXRError("bootstrap needs at least one item")
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield np.concatenate([blocks[k] for k in rng.integers(0, len(blocks), len(blocks))])


def bootstrap_interval(statistic: Callable[[np.ndarray], float], groups: Sequence[Hashable], n_boot: int = 200,
                       level: float = 0.95, seed: int = 0, estimate: float | None = None,
                       floor: float | None = None) -> dict:
    """Percentile interval of ``statistic(indices)`` over group-bootstrap replicates.

    With ``estimate`` (the statistic on the full set) the interval is re-centred so that the replicates' median
    falls on it: FID and KID of a resample with repeats are biased upwards (fewer distinct images), and an
    interval that does not contain its own estimate would mislead. ``floor`` clips ``low`` (0 for FID).

    Returns ``{"low", "high", "sd", "level", "n_boot", "n_valid", "n_groups", "unit", "method"}``; replicates
    where the statistic is undefined (NaN, e.g. an AUROC with one class) are dropped and counted out of
    ``n_valid``.
    """
    if not 0 < level < 1:
        raise DiffCXRError(f"level must be in (0, 1), got {level}")
    if n_boot < 2:
        raise DiffCXRError(f"n_boot must be at least 2, got {n_boot}")
    values = np.asarray([statistic(idx) for idx in group_bootstrap(groups, n_boot, seed)], dtype=np.float64)
    values = values[np.isfinite(values)]
    tail = (1 - level) / 2 * 100
    low, high = (np.percentile(values, [tail, 100 - tail]) if len(values) else (math.nan, math.nan))
    method = "percentile"
    if estimate is not None and len(values) and math.isfinite(estimate):
        shift = estimate - float(np.median(values))
        low, high, method = low + shift, high + shift, "percentile, median re-centred on the estimate"
    if floor is not None:
        low = max(low, floor)
    return {"low": float(low), "high": float(high), "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "level": level, "n_boot": n_boot, "n_valid": int(len(values)), "n_groups": len(set(groups)),
            "unit": "report", "method": method}
