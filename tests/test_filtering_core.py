"""LNFS core: features, the gradual K-means filter, config and manifest (tiny synthetic data, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from diffcxr.errors import DiffCXRError
from diffcxr.filtering import (
    FilterConfig,
    latent_features,
    latent_noise_filter,
    load_config,
    load_manifest,
    pca_reduce,
    read_manifest,
    write_manifest,
)


def blobs(n=300, d=16, k=3, n_outliers=15, seed=0):
    """``k`` tight Gaussian clusters plus ``n_outliers`` far-away points (the first rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (k, d))
    x = centres[rng.integers(0, k, n)] + rng.normal(0, 1, (n, d))
    x[:n_outliers] = rng.normal(0, 1, (n_outliers, d)) * 10
    truth = np.zeros(n, bool)
    truth[:n_outliers] = True
    return x.astype(np.float32), truth


def test_planted_outliers_are_ranked_first():
    x, truth = blobs()
    result = latent_noise_filter(x, n_clusters=3, remove_fraction_per_round=0.02, rounds=3, seed=0)
    top = result.ranking()[: truth.sum()]
    assert truth[top].mean() >= 0.9
    # removed set = 3 rounds x 6 = 18 samples, containing (almost) all 15 outliers
    assert (~result.kept).sum() == 18
    assert truth[~result.kept].sum() >= 14
    # final score separates them too
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(truth, result.final_score) > 0.98


def test_gradual_rounds_remove_the_requested_fraction_each_round():
    x, _ = blobs(n=400)
    result = latent_noise_filter(x, n_clusters=4, remove_fraction_per_round=0.05, rounds=4, seed=1)
    counts = [int((result.removed_in_round == r).sum()) for r in range(1, 5)]
    assert counts == [20, 20, 20, 20]
    assert result.kept.sum() == 320
    assert result.scores.shape == (5, 400) and result.clusters.shape == (5, 400)
    assert len(result.thresholds) == 4 and len(result.cluster_sizes) == 5
    # each round's cut: every removed sample scored at least the threshold of its round
    for r in range(4):
        removed = result.removed_in_round == r + 1
        assert (result.scores[r][removed] >= result.thresholds[r]).all()
        still_in = result.removed_in_round == 0
        assert (result.scores[r][still_in] <= result.thresholds[r] + 1e-6).all()
    # clusters of each fit count only kept samples
    assert sum(result.cluster_sizes[-1]) == 320
    # ranking: removed rounds first, in order
    ranked_rounds = result.removed_in_round[result.ranking()]
    assert list(ranked_rounds[:80]) == sorted(ranked_rounds[:80])
    assert (ranked_rounds[80:] == 0).all()


def test_deterministic_with_seed():
    x, _ = blobs(seed=3)
    a = latent_noise_filter(x, 3, 0.03, 2, seed=7)
    b = latent_noise_filter(x, 3, 0.03, 2, seed=7)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.removed_in_round, b.removed_in_round)


@pytest.mark.parametrize("normalize", ["robust", "zscore", "ratio", "none"])
def test_normalisations_and_small_cluster_rule(normalize):
    x, truth = blobs(seed=2)
    result = latent_noise_filter(x, 4, 0.05, 1, seed=0, normalize=normalize, min_cluster_fraction=0.1)
    assert truth[result.ranking()[:10]].mean() >= 0.8


def test_fit_samples_subset_still_scores_everything():
    x, truth = blobs(n=600, seed=4)
    result = latent_noise_filter(x, 3, 0.02, 2, seed=0, fit_samples=200, kmeans_batch_size=64)
    assert np.isfinite(result.final_score).all() and len(result.final_score) == 600
    assert truth[result.ranking()[:15]].mean() >= 0.8


def test_bad_inputs_give_clear_errors():
    x, _ = blobs(n=20)
    with pytest.raises(DiffCXRError, match="too few for n_clusters=30"):
        latent_noise_filter(x, n_clusters=30)
    with pytest.raises(DiffCXRError, match="too few"):  # 3 x 30 % removed leaves 2 samples for 4 clusters
        latent_noise_filter(x, n_clusters=4, remove_fraction_per_round=0.3, rounds=3)
    with pytest.raises(DiffCXRError, match="100 %"):
        latent_noise_filter(x, 2, remove_fraction_per_round=0.5, rounds=2)
    with pytest.raises(DiffCXRError, match="empty"):
        latent_noise_filter(np.zeros((0, 4), np.float32))
    with pytest.raises(DiffCXRError, match="remove_fraction_per_round"):
        latent_noise_filter(x, 2, remove_fraction_per_round=1.0, rounds=1)
    with pytest.raises(DiffCXRError, match="empty"):
        latent_features(np.zeros((0, 4, 2, 2)))
    with pytest.raises(DiffCXRError, match="NaN"):
        latent_features(np.full((2, 1, 2, 2), np.nan))


def test_features_variants():
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(10, 4, 8, 8)).astype(np.float16)
    assert latent_features(latents).shape == (10, 256)
    pooled = latent_features(latents, "pool", pool_size=2)
    assert pooled.shape == (10, 16)
    np.testing.assert_allclose(pooled[0, 0], latents[0, 0, :4, :4].astype(np.float32).mean(), rtol=1e-3)
    unit = latent_features(latents, "l2", chunk=3)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    assert latent_features(latents, "pool_l2", pool_size=16).shape == (10, 256)  # pool larger than grid: capped
    reduced = pca_reduce(latent_features(latents), 3, seed=0)
    assert reduced.shape == (10, 3) and reduced.dtype == np.float32


def test_config_validation_and_overrides(tmp_path):
    config = load_config(None, ["n_clusters=4", "rounds=2", "remove_fraction=0.1", "feature=pool", "image_size=null"])
    assert (config.n_clusters, config.rounds, config.remove_fraction, config.feature) == (4, 2, 0.1, "pool")
    path = tmp_path / "f.yaml"
    path.write_text("filter:\n  n_clusters: 5\n  frontal_only: true\n")
    assert load_config(path, ["seed=3"]).n_clusters == 5
    with pytest.raises(DiffCXRError, match="unknown key 'n_cluster'"):
        load_config(None, ["n_cluster=3"])
    path.write_text("clusters: 5\n")
    with pytest.raises(DiffCXRError, match="'clusters'"):
        load_config(path)
    with pytest.raises(DiffCXRError, match="100 %"):
        FilterConfig(remove_fraction=0.25, rounds=4)
    with pytest.raises(DiffCXRError, match="remove_fraction must be in"):
        load_config(None, ["remove_fraction=1"])
    with pytest.raises(DiffCXRError, match="n_clusters must be an integer"):
        load_config(None, ["n_clusters=many"])
    with pytest.raises(DiffCXRError, match="feature must be one of"):
        load_config(None, ["feature=fancy"])
    with pytest.raises(DiffCXRError, match="not key=value"):
        load_config(None, ["rounds"])


def test_manifest_round_trip(tmp_path):
    x, _ = blobs(n=60, n_outliers=3)
    result = latent_noise_filter(x, 2, 0.05, 2, seed=0)
    ids = [f"img{i:03d}" for i in range(60)]
    path = write_manifest(tmp_path / "manifest.csv", ids, result, [f"/data/{i}.png" for i in ids], ["PA"] * 60)
    kept = load_manifest(path)
    assert kept == {ids[i] for i in np.flatnonzero(result.kept)}
    assert load_manifest(tmp_path) == kept  # the folder works too
    rows = read_manifest(path)
    assert list(rows[0]) == ["id", "path", "view", "cluster", "score_round1", "score_round2", "score_final", "rank",
                             "removed_in_round", "kept"]
    assert sorted(int(r["rank"]) for r in rows) == list(range(1, 61))
    assert sum(r["removed_in_round"] != "0" for r in rows) == 6
    bad = tmp_path / "bad.csv"
    bad.write_text("id,score\na,1\n")
    with pytest.raises(DiffCXRError, match="missing column"):
        load_manifest(bad)
    with pytest.raises(DiffCXRError, match="not found"):
        load_manifest(tmp_path / "nope.csv")


def test_filter_and_run_configs_share_one_coercion():
    """One loader: the filter config accepts and rejects values exactly as the run configs do."""
    from diffcxr.training.config import load_run_config

    assert load_config(None, ["frontal_only=yes"]).frontal_only is True
    assert load_run_config("tiny", ["data.frontal_only=yes"]).data.frontal_only is True
    for bad_filter, bad_run in [("frontal_only=maybe", "data.frontal_only=maybe"), ("seed=1.5", "seed=1.5")]:
        with pytest.raises(DiffCXRError) as filter_error:
            load_config(None, [bad_filter])
        with pytest.raises(DiffCXRError) as run_error:
            load_run_config("tiny", [bad_run])
        assert str(filter_error.value).split("must be")[1] == str(run_error.value).split("must be")[1]
