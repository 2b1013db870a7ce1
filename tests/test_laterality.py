"""Laterality adherence: side words swapped, the side judge, the paired flip rate, and the benchmark end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _benchmarks import load_benchmark, tiny_yardstick
from diffcxr.errors import DiffCXRError
from diffcxr.evaluation.laterality import (balanced_sides, finding_side, mirrored_halves, side_adherence,
                                           side_flips, side_logits, swap_sides)
from diffcxr.findings import CHEXPERT_FINDINGS

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "tiny_pipeline"


def test_swap_sides_swaps_whole_words_and_keeps_case():
    report = "Left-sided effusion. RIGHT apical pneumothorax; the right lung is clear. Leftover rightward text."
    assert swap_sides(report) == ("Right-sided effusion. LEFT apical pneumothorax; the left lung is clear. "
                                  "Leftover rightward text.")
    assert swap_sides(swap_sides(report)) == report
    assert balanced_sides("Left effusion. Right pneumothorax.") and not balanced_sides("Left effusion.")
    assert not balanced_sides("Bilateral effusions.") and not balanced_sides("left, left and right")


def test_finding_side_reads_phantom_metadata():
    meta = {"laterality": "pleural_effusion:left;edema:bilateral;pneumothorax:right"}
    assert finding_side(meta, "Pleural Effusion") == "left" and finding_side(meta, "Pneumothorax") == "right"
    assert finding_side(meta, "Edema") is None and finding_side(meta, "Atelectasis") is None
    assert finding_side({"laterality": "atelectasis:left;atelectasis:right"}, "Atelectasis") is None
    assert finding_side({}, "Atelectasis") is None and finding_side({"laterality": float("nan")}, "Edema") is None


class _Brightness(nn.Module):
    """A presence "classifier" whose logit for every finding is the image's mean brightness × 10."""

    def forward(self, x):
        return x.mean(dim=(1, 2, 3))[:, None].repeat(1, len(CHEXPERT_FINDINGS)) * 10


def test_side_judge_reads_the_patients_left_on_the_images_right():
    images = -torch.ones(2, 1, 8, 8)
    images[0, :, 2:6, 5:7] = 1  # image's right half: the patient's left
    images[1, :, 2:6, 1:3] = 1  # image's left half: the patient's right
    left, right = mirrored_halves(images)
    assert torch.equal(left[0], torch.flip(left[0], dims=[-1])) and left[0].max() == 1 and right[0].max() == -1
    logits = side_logits(_Brightness(), images, "Pleural Effusion", batch_size=1)
    assert logits.shape == (2,) and logits[0] > 0 > logits[1]
    assert logits[0] == pytest.approx(-logits[1])
    with pytest.raises(DiffCXRError, match="unknown finding"):
        side_logits(_Brightness(), images, "Effusion")
    with pytest.raises(DiffCXRError, match="even width"):
        mirrored_halves(torch.zeros(1, 1, 8, 7))


def test_side_adherence_counts_a_flip_only_when_both_images_follow_the_word():
    is_left = np.array([True, True, False, False])
    original = np.array([2.0, 1.0, -1.0, 0.5])   # right, right, right, wrong
    swapped = np.array([-1.0, 0.5, 1.0, -0.5])   # right, wrong, right, wrong
    out = side_adherence(original, swapped, is_left, bootstrap=50)
    assert out["n"] == 4 and out["accuracy_original"] == 0.75 and out["accuracy_swapped"] == 0.5
    assert out["flip_rate"] == 0.5  # reports 0 and 2
    assert side_flips(original, swapped, is_left).tolist() == [True, False, True, False]
    assert out["logit_shift"] == pytest.approx(np.mean([3.0, 0.5, 2.0, -1.0]))
    assert out["intervals"]["flip_rate"]["low"] <= 0.5 <= out["intervals"]["flip_rate"]["high"]
    ignores = side_adherence(original, original, is_left, bootstrap=0)  # the same image twice: never a flip
    assert ignores["flip_rate"] == 0 and ignores["logit_shift"] == 0 and "intervals" not in ignores
    with pytest.raises(DiffCXRError, match="as many"):
        side_adherence(original, swapped[:3], is_left)


def test_condition_side_sensitivity_is_zero_without_side_words_and_positive_with_them():
    from diffcxr.evaluation.laterality import condition_side_sensitivity
    from diffcxr.models.report_encoder import ReportEncoder

    encoder = ReportEncoder.tiny(seed=0).eval()
    without = ["Small pleural effusion.", "Mild cardiomegaly.", "No acute findings."]
    assert condition_side_sensitivity(encoder, without) == 0
    with_sides = ["Small left pleural effusion.", "Right apical pneumothorax.", "No acute findings."]
    assert 0 < condition_side_sensitivity(encoder, with_sides, batch_size=2) < 10
    with pytest.raises(DiffCXRError, match="at least 2"):
        condition_side_sensitivity(encoder, with_sides[:1])


@pytest.mark.slow
def test_laterality_benchmark_end_to_end(tmp_path, monkeypatch, capsys):
    from PIL import Image

    phantoms, classifier = tiny_yardstick(tmp_path, 20)
    args = ["laterality_adherence.py", "--model", f"a={FIXTURE}", "--model", f"b={FIXTURE}", "--baseline", "b",
            "--classifier", str(classifier), "--data", f"phantom:{phantoms}", "--n-reports", "4",
            "--steps", "2", "--bootstrap", "20", "--out", str(tmp_path / "out")]
    bench = load_benchmark("laterality_adherence")
    monkeypatch.setattr(sys, "argv", args)
    bench.main()
    result = json.loads((tmp_path / "out" / "laterality.json").read_text())
    assert 0 < result["n_reports"] <= 4 and "pooled" in result["findings"]
    pooled = result["findings"]["pooled"]
    assert pooled["n"] >= result["n_reports"] and 0 <= pooled["real_accuracy"] <= 1
    a, b = (result["models"][m]["findings"]["pooled"] for m in ("a", "b"))
    assert a["flip_rate"] == b["flip_rate"]  # one pipeline twice: the same images, seeded per report
    assert a["vs_baseline"]["flip_rate_difference"] == 0 and "vs_baseline" not in b
    printed = capsys.readouterr().out
    assert "| pooled |" in printed and "when the sides are swapped" in printed
    sensitivity = [result["models"][m]["condition_side_sensitivity"] for m in ("a", "b")]
    assert sensitivity[0] == sensitivity[1] >= 0
    size = json.loads((FIXTURE / "vae" / "config.json").read_text())["sample_size"]  # the pipeline's image side
    with Image.open(tmp_path / "out" / "example.png") as example:  # 2 models × (as written, swapped), 4 seeds, ×2
        example_size = example.size
    assert example_size == (4 * size * 2, 2 * 2 * size * 2) and result["example"]["swapped"].count("right") == 2
    for bad, expected in ((["--model", "nameless"], "NAME=PIPELINE"), (["--baseline", "c"], "not one of")):
        monkeypatch.setattr(sys, "argv", args + bad)
        with pytest.raises(SystemExit, match=expected):
            bench.main()


def _run(flips: dict[str, float], data: str = "phantom:lat", baseline: str = "b") -> dict:
    """A laterality.json of one training seed: pooled flip rates per model, paired against ``baseline``."""
    models = {}
    for name, flip in flips.items():
        entry = {"n": 10, "accuracy_original": 0.5 + flip / 2, "accuracy_swapped": 0.5, "flip_rate": flip,
                 "logit_shift": flip, "intervals": {"flip_rate": {"low": flip - 0.1, "high": flip + 0.1}}}
        if name != baseline:
            entry["vs_baseline"] = {"baseline": baseline, "flip_rate_difference": flip - flips[baseline],
                                    "interval": {"low": flip - flips[baseline] - 0.1, "high": flip - flips[baseline]}}
        models[name] = {"condition_side_sensitivity": flip / 3, "findings": {"pooled": entry}}
    return {"data": data, "classifier": "clf", "n_reports": 10,
            "findings": {"pooled": {"n": 10, "n_balanced": 0, "real_accuracy": 0.9}}, "models": models}


def test_laterality_seed_table_gives_mean_sd_over_seeds_and_the_paired_difference():
    bench = load_benchmark("laterality_adherence")
    text = bench.seed_table({"s1": _run({"a": 0.3, "b": 0.1}), "s2": _run({"a": 0.5, "b": 0.1})})
    assert "2 training seeds (s1, s2)" in text
    assert "| pooled | 10 | 0.900 | a | 0.400 ± 0.141 | 0.300 [0.200, 0.400] / 0.500 [0.400, 0.600] |" in text
    assert "| pooled | 10 | 0.900 | b | 0.100 ± 0.000 |" in text
    assert "paired against b" in text and "| pooled | a | +0.300 ± 0.141 | +0.200 [+0.100, +0.200] / +0.400" in text
    assert "| pooled | b |" not in text.split("paired against")[1]  # the baseline is not paired with itself
    half = 12.706204736174698 * np.std([0.2, 0.4], ddof=1) / np.sqrt(2)  # t(0.975, df=1)
    assert f"| +{0.3 / np.std([0.2, 0.4], ddof=1):.1f} SD [{0.3 - half:+.3f}, {0.3 + half:+.3f}] |" in text
    one = bench.seed_table({"s1": _run({"a": 0.3, "b": 0.1})})
    assert "| a | 0.300 | 0.300 [0.200, 0.400] |" in one  # one seed: its value, no SD
    assert one.splitlines()[-1].endswith("| - |")  # nor a t-interval
    with pytest.raises(SystemExit, match="differ in data"):
        bench.seed_table({"s1": _run({"a": 0.3, "b": 0.1}), "s2": _run({"a": 0.3, "b": 0.1}, data="phantom:x")})
    with pytest.raises(SystemExit, match="no model name"):
        bench.seed_table({"s1": _run({"a": 0.3, "b": 0.1}), "s2": _run({"c": 0.3, "d": 0.1}, baseline="d")})


def test_mean_sd_over_seeds():
    from diffcxr.metrics import mean_sd, mean_sd_text

    assert mean_sd([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5)) and mean_sd([None, 2.0])[0] == 2.0
    assert np.isnan(mean_sd([2.0])[1]) and all(np.isnan(mean_sd([])))
    assert mean_sd_text([1.0, 3.0], digits=1) == "2.0 ± 1.4" and mean_sd_text([0.25], sign=True) == "+0.250"


def test_encoder_laterality_benchmark(tmp_path, monkeypatch, capsys):
    from diffcxr.data.phantom import make_phantom_dataset
    from diffcxr.models.report_encoder import ImageTower, ReportEncoder

    make_phantom_dataset(30, 32, tmp_path / "ph", seed=3, progress=False)
    encoder = ReportEncoder.tiny(seed=0).eval()
    encoder.save_pretrained(tmp_path / "vlm" / "report_encoder")
    ImageTower(channels=(8, 16), embed_dim=encoder.hidden_size).save_pretrained(tmp_path / "vlm" / "image_tower")
    bench = load_benchmark("encoder_laterality")
    args = ["encoder_laterality.py", "--vlm", f"a={tmp_path / 'vlm'}", "--data", f"phantom:{tmp_path / 'ph'}",
            "--size", "32", "--bootstrap", "20"]
    monkeypatch.setattr(sys, "argv", args)
    bench.main()
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| a |")]
    assert len(row) == 1
    cells = row[0].split("|")
    sensitivity, knowledge, retrieval = float(cells[2]), float(cells[3]), float(cells[4].split()[0])
    assert sensitivity > 0 and knowledge > 0 and 0 <= retrieval <= 1  # the tiny encoder's tokens see the side words
    monkeypatch.setattr(sys, "argv", args[:2] + [f"a={tmp_path}"] + args[3:])
    with pytest.raises(SystemExit, match="no report_encoder"):
        bench.main()


def test_paired_difference_over_seeds():
    from diffcxr.metrics import paired_difference

    d = paired_difference([0.90, 0.86, 0.88], [0.86, 0.84, 0.83])
    diffs = np.array([0.04, 0.02, 0.05])
    assert d.mean == pytest.approx(diffs.mean()) and d.sd == pytest.approx(diffs.std(ddof=1)) and d.n == 3
    assert d.in_sd == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    half = 4.302652729911275 * diffs.std(ddof=1) / np.sqrt(3)
    assert d.interval == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    wider = paired_difference([0.90, 0.86, 0.88], [0.86, 0.84, 0.83], level=0.99).interval
    assert wider[0] < d.interval[0] and wider[1] > d.interval[1]
    flat = paired_difference([1.0, 2.0], [0.5, 1.5])  # no spread: no ratio, no interval
    assert flat.mean == 0.5 and flat.sd == 0.0 and np.isnan(flat.in_sd) and all(np.isnan(flat.interval))
    one = paired_difference([0.9], [0.8])
    assert one.mean == pytest.approx(0.1) and np.isnan(one.sd) and all(np.isnan(one.interval))
    with pytest.raises(ValueError, match="equally long"):
        paired_difference([0.9, 0.8], [0.8])
