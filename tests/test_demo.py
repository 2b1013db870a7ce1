"""``diffcxr demo`` end to end on the tiny config (seconds), and the report-adherence measurement it prints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffcxr.cli.main import main

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_pipeline"


@pytest.mark.slow
def test_demo_trains_generates_and_prints_its_adherence(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-c", "tiny", "--n", "40", "--size", "32", "--reports", "2", "--images-per-report", "1",
                 "--steps", "2", "--eval-reports", "12", "--set", "mixed_precision=no", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / "demo_grid.png").is_file() and (out / "model" / "pipeline" / "model_index.json").is_file()
    adherence = json.loads((out / "adherence.json").read_text())
    assert set(adherence) >= {"model", "no_adapter", "guidance_1", "real"}
    assert adherence["model"]["n_reports"] == 12 and adherence["model"]["settings"]["guidance_scale"] == 2.0
    assert adherence["no_adapter"]["settings"]["adapter_scale"] == 0.0
    assert adherence["guidance_1"]["settings"]["guidance_scale"] == 1.0
    assert adherence["real"]["n_images"] == 12
    assert set(adherence["gain"]) == {"over_no_adapter", "over_guidance_1"}
    assert adherence["gain"]["over_no_adapter"]["delta"] == pytest.approx(
        adherence["model"]["mauc"] - adherence["no_adapter"]["mauc"])
    assert "adherence on 12 fresh phantom reports" in printed and "real phantoms of the same reports" in printed
    assert "the knowledge adapter adds (paired" in printed and "guidance adds (paired" in printed
    timings = json.loads((out / "timings.json").read_text())  # the machine's speed next to the demo's times
    assert timings["total_s"] > 0 and timings["matmul_gflops_start"] > 0 and timings["matmul_gflops_end"] > 0
    assert "this machine's fp32 matmul" in printed
    # the evaluation reports are fresh phantoms, not the training ones
    import hashlib

    def digests(folder):
        return {hashlib.sha1(p.read_bytes()).hexdigest() for p in (folder / "images").glob("*.png")}

    assert json.loads((out / "phantoms-eval" / "phantom.json").read_text())["seed"] == 1
    assert not digests(out / "phantoms") & digests(out / "phantoms-eval")


def test_generated_adherence_is_seeded_and_independent_of_batching(tmp_path):
    import torch

    from diffcxr.data.phantom import make_phantom_dataset
    from diffcxr.data.sources import read_records
    from diffcxr.evaluation.adherence import generated_adherence, real_adherence
    from diffcxr.models.cxr_classifier import CXRClassifier
    from diffcxr.pipelines import DiffCXRPipeline

    make_phantom_dataset(10, 32, tmp_path / "ph", seed=3, progress=False)
    records = read_records(f"phantom:{tmp_path / 'ph'}")
    torch.manual_seed(0)
    clf = CXRClassifier(channels=(4, 8), image_size=32).eval()
    pipe = DiffCXRPipeline.from_pretrained(FIXTURE)
    kw = dict(images_per_report=2, num_inference_steps=2, seed=5, bootstrap=20)
    a = generated_adherence(pipe, records, clf, reports_per_batch=3, **kw)
    b = generated_adherence(pipe, records, clf, reports_per_batch=10, **kw)
    assert a["n_reports"] == 10 and a["images_per_report"] == 2
    assert a["per_finding"] == b["per_finding"] and (np.isnan(a["mauc"]) or a["mauc"] == b["mauc"])
    other = generated_adherence(pipe, records, clf, reports_per_batch=10, **{**kw, "seed": 6})
    assert other["per_finding"] != a["per_finding"]
    real = real_adherence(records, clf, 32, bootstrap=20)
    assert real["n_images"] == 10 and set(real["per_finding"]) <= set(a["per_finding"]) | set(a["skipped"]) | set(real["per_finding"])


def test_one_generated_set_scored_by_several_classifiers_matches_scoring_each(tmp_path):
    import torch

    from diffcxr.data.phantom import make_phantom_dataset
    from diffcxr.data.sources import read_records
    from diffcxr.evaluation.adherence import (generate_for_records, generated_adherence, real_adherence,
                                              score_adherence)
    from diffcxr.metrics.extractors import cxr_extractor
    from diffcxr.models.cxr_classifier import CXRClassifier
    from diffcxr.pipelines import DiffCXRPipeline

    make_phantom_dataset(6, 32, tmp_path / "ph", seed=4, progress=False)
    records = read_records(f"phantom:{tmp_path / 'ph'}")
    pipe = DiffCXRPipeline.from_pretrained(FIXTURE)
    size = pipe.image_size
    kw = dict(images_per_report=2, num_inference_steps=2, seed=7)
    images, labels, groups = generate_for_records(pipe, records, reports_per_batch=4, **kw)
    assert images.shape == (12, 1, size, size) and labels.shape == (12, 14) and groups == [i // 2 for i in range(12)]
    assert -1 <= images.min() and images.max() <= 1
    judges = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        judges.append(CXRClassifier(channels=(4, 8), image_size=size).eval())
    results = []
    for clf in judges:
        extractor = cxr_extractor(clf)
        real_stats = real_adherence(records, clf, size, bootstrap=0, extractor=extractor)["stats"]
        results.append(score_adherence(images, labels, groups, clf, bootstrap=10, seed=7, extractor=extractor,
                                       real_stats=real_stats))
    full = generated_adherence(pipe, records, judges[1], bootstrap=10, extractor=extractor, real_stats=real_stats,
                               **kw)
    assert results[1]["per_finding"] == full["per_finding"] and results[1]["interval"] == full["interval"]
    assert results[1]["fid"] == pytest.approx(full["fid"], rel=1e-6)
    assert results[0]["per_finding"] != results[1]["per_finding"]  # the judges differ, the images do not


def test_adherence_gain_is_the_paired_difference_of_two_sets_scores():
    import torch

    from diffcxr.errors import DiffCXRError
    from diffcxr.evaluation.adherence import GeneratedSet, adherence_gain, score_adherence
    from diffcxr.models.cxr_classifier import CXRClassifier

    torch.manual_seed(0)
    clf = CXRClassifier(channels=(4, 8), image_size=16).eval()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (40, 14)).astype(np.float32)
    groups = list(range(40))

    def images(seed):
        return torch.rand(40, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1

    a, b = GeneratedSet(images(1), labels, groups), GeneratedSet(images(2), labels, groups)
    same = adherence_gain(a, a, clf, bootstrap=20)
    assert same["delta"] == 0 and same["interval"]["low"] == same["interval"]["high"] == 0
    gain = adherence_gain(a, b, clf, bootstrap=50, seed=3)
    mauc_a, mauc_b = (score_adherence(*s, clf, bootstrap=0)["mauc"] for s in (a, b))
    assert gain["delta"] == pytest.approx(mauc_a - mauc_b) and gain["delta"] != 0
    assert gain["interval"]["low"] <= gain["delta"] <= gain["interval"]["high"]
    assert gain["interval"]["n_groups"] == 40
    with pytest.raises(DiffCXRError, match="same reports"):
        adherence_gain(a, GeneratedSet(images(2)[:20], labels[:20], groups[:20]), clf)


def test_showcase_prefers_a_normal_report_and_clear_single_findings():
    from diffcxr.cli.demo import showcase_records
    from diffcxr.data.records import Record
    from diffcxr.findings import CHEXPERT_FINDINGS

    def record(rid, positives, findings=""):
        labels = np.zeros(len(CHEXPERT_FINDINGS), np.float32)
        for name in positives:
            labels[CHEXPERT_FINDINGS.index(name)] = 1
        return Record(id=rid, image_path=None, report=rid, labels=labels, meta={"image_findings": findings})

    records = [record("mixed", ["Pleural Effusion", "Cardiomegaly", "Edema"]),
               record("mild-effusion", ["Pleural Effusion"], "pleural_effusion|left|mild|"),
               record("large-effusion", ["Pleural Effusion", "Support Devices"], "pleural_effusion|left|severe|"),
               record("normal", ["No Finding"]), record("heart", ["Cardiomegaly"], "cardiomegaly||moderate|")]
    chosen = [r.id for r in showcase_records(records, n=4)]
    assert chosen == ["normal", "large-effusion", "heart"]  # no pneumothorax record: that row is left out


@pytest.mark.slow
def test_resuming_a_demo_trained_with_other_model_settings_says_which_set_resumes_it(tmp_path, capsys):
    """A demo interrupted before a default changed (here the knowledge prompt) is one error line naming the
    ``--set`` that resumes it as it was trained; with it the demo finishes."""
    out = tmp_path / "demo"
    args = ["demo", "-c", "tiny", "--n", "24", "--size", "32", "--reports", "1", "--images-per-report", "1",
            "--steps", "1", "--eval-reports", "0", "--out", str(out), "--set", "mixed_precision=no"]
    for stage in ("vae", "vlm", "base", "adapter", "classifier"):
        args += ["--set", f"{stage}.max_steps=1"]
    assert main([*args, "--set", "model.adapter.knowledge_sides=true"]) == 0
    (out / "model" / "adapter" / "COMPLETE.json").unlink()  # as if stopped inside the adapter stage
    capsys.readouterr()
    assert main([*args, "--resume"]) != 0
    err = capsys.readouterr().err
    assert "resume it as it was trained with --set model.adapter.knowledge_sides=true" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--resume", "--set", "model.adapter.knowledge_sides=true"]) == 0
    assert (out / "model" / "adapter" / "COMPLETE.json").is_file()
