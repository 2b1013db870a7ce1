"""FID (streaming Gaussian statistics, Fréchet distance) and KID (polynomial MMD, reservoir sampling)."""

import numpy as np
import pytest
import torch

from diffcxr.errors import DiffCXRError
from diffcxr.metrics import (ReservoirSampler, StreamingGaussianStats, fid_from_features, frechet_distance,
                             kernel_inception_distance)


def _rand_spd(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_identical_stats_give_zero():
    s = _rand_spd(6, 0)
    mu = np.arange(6.0)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)


def test_closed_form_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_closed_form_scaled_covariance():
    # S2 = c² S1  =>  Tr((S1 S2)^½) = c Tr(S1)  =>  FID = (1 - c)² Tr(S1)
    s1, c = _rand_spd(5, 1), 3.0
    assert frechet_distance(np.zeros(5), s1, np.zeros(5), c * c * s1) == pytest.approx((1 - c) ** 2 * np.trace(s1), rel=1e-8)


def test_matches_torchmetrics_general_case():
    from torchmetrics.image.fid import _compute_fid

    s1, s2 = _rand_spd(8, 2), _rand_spd(8, 3)
    mu1, mu2 = np.random.default_rng(4).normal(size=8), np.zeros(8)
    ref = float(_compute_fid(torch.tensor(mu1), torch.tensor(s1), torch.tensor(mu2), torch.tensor(s2)))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)


def test_streaming_equals_batch_and_merge():
    x = torch.randn(257, 7, generator=torch.Generator().manual_seed(0)) * 3 + 1
    stream = StreamingGaussianStats()
    for chunk in x.split(50):
        stream.update(chunk)
    np.testing.assert_allclose(stream.mean, x.double().mean(0).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stream.cov, np.cov(x.double().numpy(), rowvar=False), rtol=1e-10, atol=1e-10)
    a, b = StreamingGaussianStats().update(x[:100]), StreamingGaussianStats().update(x[100:])
    merged = a.merge(b)
    assert merged.n == 257
    np.testing.assert_allclose(merged.cov, stream.cov, rtol=1e-12, atol=1e-12)
    restored = StreamingGaussianStats.from_state_dict(stream.state_dict())
    np.testing.assert_allclose(restored.mean, stream.mean)


def test_fid_separates_distributions():
    g = torch.Generator().manual_seed(1)
    a, b, c = torch.randn(2000, 4, generator=g), torch.randn(2000, 4, generator=g), torch.randn(2000, 4, generator=g) + 2
    assert fid_from_features(a, b) < 0.05 < 10 < fid_from_features(a, c)


def test_bad_features_are_clear_errors():
    s = StreamingGaussianStats()
    with pytest.raises(DiffCXRError, match="NaN"):
        s.update(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(DiffCXRError, match="at least 2"):
        StreamingGaussianStats().update(torch.ones(1, 2)).cov
    with pytest.raises(DiffCXRError, match="dimension"):
        StreamingGaussianStats().update(torch.ones(3, 2)).update(torch.ones(3, 4))


def test_kid_same_vs_shifted():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(300, 16, generator=g), torch.randn(300, 16, generator=g)
    same, _, size = kernel_inception_distance(a, b, subsets=20, subset_size=100)
    shifted, _, _ = kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=100)
    assert size == 100
    assert abs(same) < 0.02 and shifted > 0.5


def test_kid_matches_torchmetrics_estimator():
    from torchmetrics.image.kid import poly_mmd

    from diffcxr.metrics import polynomial_mmd2

    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(50, 8, generator=g), torch.randn(50, 8, generator=g) + 0.3
    ref = float(poly_mmd(a.double(), b.double()))
    assert polynomial_mmd2(a, b, dtype=torch.float64) == pytest.approx(ref, rel=1e-9)
    assert polynomial_mmd2(a, b) == pytest.approx(ref, rel=1e-3)


def test_reservoir_bounded_and_uniform():
    r = ReservoirSampler(capacity=100, seed=0)
    for start in range(0, 10_000, 37):
        r.update(torch.arange(start, min(start + 37, 10_000)).float().unsqueeze(1))
    assert r.seen == 10_000 and r.features.shape == (100, 1)
    assert 3000 < float(r.features.mean()) < 7000  # a uniform sample, not the first 100


def test_mmd_of_a_bootstrap_sample_ignores_pairs_of_one_source():
    """Repeats in a bootstrap sample would inflate the within-fake kernel sum; with ``fake_ids`` they don't."""
    from diffcxr.metrics import polynomial_mmd2

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g)
    idx = torch.cat([torch.arange(20), torch.arange(20)])  # every sample twice
    naive = polynomial_mmd2(real, fake[idx], dtype=torch.float64)
    fixed = polynomial_mmd2(real, fake[idx], dtype=torch.float64, fake_ids=idx)
    same_dist = polynomial_mmd2(real[:20], fake[:20], dtype=torch.float64)
    assert naive > fixed and abs(fixed - same_dist) < abs(naive - same_dist)
    # without repeats, the ids change nothing
    assert polynomial_mmd2(real, fake, dtype=torch.float64, fake_ids=torch.arange(40)) == pytest.approx(
        polynomial_mmd2(real, fake, dtype=torch.float64))


def test_reservoir_merge_keeps_every_row_while_it_fits_and_stays_uniform_beyond():
    rows = torch.arange(60).float().unsqueeze(1)
    whole = ReservoirSampler(100, seed=0).update(rows)
    parts = ReservoirSampler(100, seed=0).update(rows[:25]).merge(ReservoirSampler(100, seed=1).update(rows[25:]))
    assert torch.equal(parts.features, whole.features) and parts.seen == 60  # sharded = one pass, exactly
    assert ReservoirSampler(100).merge(whole).seen == 60  # an empty part takes the other's rows
    # beyond the capacity: each part enters in proportion to its length (1,000 vs 3,000 rows, 400 kept)
    shares = []
    for seed in range(50):
        a = ReservoirSampler(400, seed=seed).update(torch.zeros(1000, 1))
        b = ReservoirSampler(400, seed=seed + 100).update(torch.ones(3000, 1))
        merged = a.merge(b)
        assert merged.features.shape == (400, 1) and merged.seen == 4000
        shares.append(float(merged.features.mean()))
    assert abs(np.mean(shares) - 0.75) < 0.01
