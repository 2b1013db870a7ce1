"""Summaries over training seeds: mean ± sample SD, as numbers and as a table cell.

A number from one training seed is an anecdote; tables give the mean and the sample standard deviation (n − 1)
over seeds, and every seed's own value beside them.

>>> mean_sd([0.84, 0.86])
(0.85, 0.014142135623730963)
>>> mean_sd_text([0.84, 0.86]), mean_sd_text([0.84])
('0.850 ± 0.014', '0.840')

Two arms trained with the same seeds (same data order, reports and noise) are compared run for run: the mean of
the per-seed differences, their SD, the mean in units of that SD, and a t-interval for the mean.

>>> d = paired_difference([0.886, 0.872, 0.874, 0.892], [0.842, 0.823, 0.861, 0.861])
>>> round(d.mean, 4), round(d.sd, 4), round(d.in_sd, 2), [round(x, 3) for x in d.interval]
(0.0343, 0.0161, 2.13, [0.009, 0.06])
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

__all__ = ["PairedDifference", "difference_over_seeds", "mean_sd", "mean_sd_text", "paired_difference"]


def mean_sd(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and sample SD of ``values`` (``None`` skipped); SD is nan for one value, both nan for none."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(arr):
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan


def mean_sd_text(values: Iterable[float | None], digits: int = 3, sign: bool = False) -> str:
    """"mean ± SD" with ``digits`` decimals (``sign``: a leading + on the mean); the value alone for one seed."""
    m, sd = mean_sd(values)
    mean = f"{m:+.{digits}f}" if sign else f"{m:.{digits}f}"
    return mean if math.isnan(sd) else f"{mean} ± {sd:.{digits}f}"


class PairedDifference(NamedTuple):
    """Per-seed differences (arm A − arm B) summarised: ``mean`` and sample ``sd`` of the differences, ``in_sd`` =
    mean ÷ sd, and ``interval`` the two-sided t-interval for the mean at ``level``; nan where undefined (one seed,
    or differences without spread)."""
    mean: float
    sd: float
    in_sd: float
    interval: tuple[float, float]
    n: int
    level: float


def paired_difference(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> PairedDifference:
    """Summarise ``a[i] − b[i]`` over seeds i (the two arms' values for the same seeds, in the same order)."""
    a, b = np.asarray(list(a), dtype=np.float64), np.asarray(list(b), dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired_difference needs two equally long, non-empty lists of values, got {a.shape} and "
                         f"{b.shape}")
    return difference_over_seeds((a - b).tolist(), level)


def difference_over_seeds(differences: Iterable[float], level: float = 0.95) -> PairedDifference:
    """Summarise per-seed differences already taken (arm A − arm B for each seed)."""
    from scipy.stats import t as student_t  # scipy comes with scikit-learn

    differences = list(differences)
    mean, sd = mean_sd(differences)
    n = len(differences)
    if n < 2 or not sd > 0:
        return PairedDifference(mean, sd, math.nan, (math.nan, math.nan), n, level)
    half = float(student_t.ppf(0.5 + level / 2, df=n - 1)) * sd / math.sqrt(n)
    return PairedDifference(mean, sd, mean / sd, (mean - half, mean + half), n, level)
