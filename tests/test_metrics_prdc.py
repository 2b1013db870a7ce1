"""PRDC (precision, recall, density, coverage) against a direct small-N computation, and its behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from diffcxr.errors import DiffCXRError
from diffcxr.metrics import prdc


def _direct(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    """Naeem et al.'s definitions, written out with full distance matrices."""
    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    rr, ff, fr = dist(real, real), dist(fake, fake), dist(fake, real)
    real_radius = np.sort(rr, axis=1)[:, k]
    fake_radius = np.sort(ff, axis=1)[:, k]
    inside = fr <= real_radius[None, :]
    return {"precision": inside.any(axis=1).mean(),
            "recall": (fr.T <= fake_radius[None, :]).any(axis=1).mean(),
            "density": inside.sum() / (k * len(fake)),
            "coverage": (fr.min(axis=0) <= real_radius).mean()}


@pytest.mark.parametrize("shift", [0.0, 0.7, 3.0])
@pytest.mark.parametrize("chunk", [7, 1024])
def test_prdc_equals_the_direct_computation(shift, chunk):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(120, 6)).astype(np.float32)
    fake = (rng.normal(size=(90, 6)) * 1.3 + shift).astype(np.float32)
    got = prdc(real, fake, k=5, chunk=chunk)
    want = _direct(real, fake, 5)
    for key, value in want.items():
        assert getattr(got, key) == pytest.approx(value, abs=1e-6), key
    assert (got.n_real, got.n_fake, got.k) == (120, 90, 5)


def test_prdc_separates_matching_from_shifted_distributions():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(400, 8))
    same = prdc(real, rng.normal(size=(400, 8)))
    far = prdc(real, rng.normal(size=(400, 8)) + 4.0)
    collapsed = prdc(real, rng.normal(size=(400, 8)) * 0.05)  # mode collapse: faithful but not diverse
    assert same.precision > 0.8 and same.recall > 0.8 and 0.7 < same.density < 1.3 and same.coverage > 0.8
    assert far.precision < 0.05 and far.coverage < 0.05
    assert collapsed.precision > 0.9 and collapsed.recall < 0.2 and collapsed.coverage < 0.3


def test_prdc_bad_input():
    rng = np.random.default_rng(2)
    with pytest.raises(DiffCXRError, match="more than 5"):
        prdc(rng.normal(size=(5, 3)), rng.normal(size=(20, 3)))
    with pytest.raises(DiffCXRError, match="dimension"):
        prdc(rng.normal(size=(20, 3)), rng.normal(size=(20, 4)))
    with pytest.raises(DiffCXRError, match="NaN"):
        prdc(np.full((20, 3), np.nan), rng.normal(size=(20, 3)))
