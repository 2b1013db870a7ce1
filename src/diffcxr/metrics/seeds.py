"""Summaries over training seeds: mean ± sample SD, as numbers and as a table cell.

A number from one training seed is an anecdote; tables give the mean and the sample standard deviation (n − 1)
over seeds, and every seed's own value beside them.

>>> mean_sd([0.84, 0.86])
(0.85, 0.014142135623730963)
>>> mean_sd_text([0.84, 0.86]), mean_sd_text([0.84])
('0.850 ± 0.014', '0.840')
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["mean_sd", "mean_sd_text"]


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
