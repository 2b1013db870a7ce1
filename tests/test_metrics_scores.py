"""AUROC/mAUC, MS-SSIM diversity, memorisation and the feature extractors."""

import sys

import numpy as np
import pytest
import torch

from diffcxr.errors import DiffCXRError
from diffcxr.findings import CHEXPERT_FINDINGS
from diffcxr.metrics import (binary_auroc, intra_prompt_msssim, map_labels, memorization, pairwise_msssim,
                             per_finding_auroc, scales_for_size)
from diffcxr.metrics.extractors import FeatureExtractor, load_extractor, random_extractor


def test_binary_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # ties on purpose
    assert binary_auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_per_finding_auroc_policies_and_skips():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    n, f = 60, len(CHEXPERT_FINDINGS)
    labels = rng.choice([1.0, 0.0, -1.0, np.nan], size=(n, f))
    labels[:, 3] = 0.0  # Edema: only negatives -> skipped
    labels[:, 5] = np.nan  # Fracture: never mentioned -> all negative under missing="negative" -> skipped
    scores = rng.random((n, f))
    res = per_finding_auroc(scores, labels)
    assert res.skipped == {"Edema": "only negatives", "Fracture": "only negatives"}
    keep = (labels[:, 0] == 1) | (labels[:, 0] == 0) | np.isnan(labels[:, 0])  # uncertain excluded
    y = np.nan_to_num(labels[keep, 0], nan=0.0)
    assert res.per_finding["Atelectasis"] == pytest.approx(roc_auc_score(y, scores[keep, 0]))
    assert res.mauc == pytest.approx(np.mean(list(res.per_finding.values())))
    assert len(res.per_finding) == f - 2 and "mAUC" in res.table()
    only = per_finding_auroc(scores, labels, only=["Atelectasis", "Edema"])
    assert list(only.per_finding) == ["Atelectasis"] and list(only.skipped) == ["Edema"]


def test_label_mapping():
    v = np.array([1.0, 0.0, -1.0, np.nan])
    np.testing.assert_array_equal(map_labels(v), [1, 0, np.nan, 0])
    np.testing.assert_array_equal(map_labels(v, "positive", "exclude"), [1, 0, 1, np.nan])
    with pytest.raises(DiffCXRError):
        map_labels(v, "maybe")


def test_auroc_rejects_bad_shapes_and_nan_scores():
    with pytest.raises(DiffCXRError):
        per_finding_auroc(np.zeros((3, 2)), np.zeros((3, 2)))
    s = np.zeros((3, 14))
    s[0, 0] = np.nan
    with pytest.raises(DiffCXRError, match="NaN"):
        per_finding_auroc(s, np.zeros((3, 14)))


def test_msssim_identical_is_one_and_noise_lower():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 64, 64, generator=g)
    same = pairwise_msssim(base.repeat(3, 1, 1, 1))
    assert same == (pytest.approx(1.0, abs=1e-5), 3)
    noisy = pairwise_msssim(torch.rand(4, 1, 64, 64, generator=g))[0]
    assert noisy < 0.5
    out = intra_prompt_msssim([base.repeat(2, 1, 1, 1), torch.rand(2, 1, 64, 64, generator=g)])
    assert out["n_reports"] == 2 and out["scales"] == 3 and abs(sum(out["betas"]) - 1) < 1e-9


def test_msssim_scales():
    assert scales_for_size(256) == 5 and scales_for_size(128) == 4
    assert scales_for_size(64) == 3
    with pytest.raises(DiffCXRError):
        scales_for_size(8)


def test_memorization_finds_planted_copy():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(500, 32, generator=g)
    gen = torch.randn(20, 32, generator=g)
    gen[7] = train[123]  # a planted copy: cosine 1
    res = memorization(gen, train, threshold=0.95, top_k=3)
    assert res.closest[0][:2] == (7, 123) and res.closest[0][2] == pytest.approx(1.0, abs=1e-5)
    assert res.share_above == pytest.approx(1 / 20)
    d = res.to_dict([f"g{i}" for i in range(20)], [f"t{i}" for i in range(500)])
    assert d["closest"][0]["generated"] == "g7" and d["closest"][0]["train"] == "t123"
    positive = torch.rand(50, 8, generator=g) + 1  # all-positive features: raw cosines are all high
    assert memorization(positive[:5] + 0.01, positive[5:], center=False).share_above > 0.9
    assert memorization(positive[:5] * 0 + positive[5:].mean(0) + 0.3 * torch.randn(5, 8, generator=g),
                        positive[5:]).share_above < 0.5


def test_random_extractor_deterministic_and_resizes():
    x = torch.rand(3, 1, 96, 96) * 2 - 1
    a, b = random_extractor(seed=1), random_extractor(seed=1)
    fa = a(x)
    assert fa.shape == (3, 64) and torch.equal(fa, b(x))
    assert a.describe()["resize"].startswith("64x64")
    with pytest.raises(DiffCXRError, match="grayscale"):
        a(torch.rand(2, 3, 64, 64))


def test_module_extractor_uses_features_method():
    from diffcxr.models.cxr_classifier import CXRClassifier

    model = CXRClassifier(channels=(4, 8), image_size=32)
    ext = load_extractor("cxr", classifier=model)
    assert ext(torch.zeros(2, 1, 64, 64)).shape == (2, 8) and ext.input_size == 32
    plain = FeatureExtractor(torch.nn.Flatten(), "flat", 8)
    assert plain(torch.zeros(2, 1, 16, 16)).shape == (2, 64)


def test_optional_backends_missing_give_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    monkeypatch.setitem(sys.modules, "torchxrayvision", None)
    with pytest.raises(DiffCXRError, match="torch-fidelity"):
        load_extractor("inception")
    with pytest.raises(DiffCXRError, match="torchxrayvision"):
        load_extractor("xrv")
    with pytest.raises(DiffCXRError, match="--classifier"):
        load_extractor("cxr")
    with pytest.raises(DiffCXRError, match="unknown feature extractor"):
        load_extractor("clip")


def test_group_bootstrap_resamples_whole_reports():
    from diffcxr.metrics import group_bootstrap

    groups = ["a", "a", "b", "b", "c", "c", "c"]
    for idx in group_bootstrap(groups, 20, seed=1):
        drawn = [groups[i] for i in idx]
        for g in set(drawn):  # a drawn report brings all of its images, as many times as it was drawn
            assert drawn.count(g) % groups.count(g) == 0
    a = [list(i) for i in group_bootstrap(groups, 5, seed=3)]
    assert a == [list(i) for i in group_bootstrap(groups, 5, seed=3)]  # seeded


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    from diffcxr.metrics import bootstrap_interval

    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 500):
        x = rng.normal(1.0, 1.0, n)
        ci = bootstrap_interval(lambda idx: float(x[idx].mean()), list(range(n)), n_boot=300, seed=0)
        assert ci["low"] < x.mean() < ci["high"] and ci["n_valid"] == 300 and ci["level"] == 0.95
        widths.append(ci["high"] - ci["low"])
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(n)
    # undefined replicates are dropped, not averaged in
    ci = bootstrap_interval(lambda idx: float("nan") if 0 in idx else 1.0, list(range(5)), n_boot=50, seed=0)
    assert ci["n_valid"] < 50 and ci["low"] == ci["high"] == 1.0
