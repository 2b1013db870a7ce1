"""``diffcxr evaluate`` in-process on tiny folders: a phantom 'real' set and PNGs with JSON sidecars."""

import json

import numpy as np
import pytest

from diffcxr.cli.main import main
from diffcxr.findings import CHEXPERT_FINDINGS


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from diffcxr.data import read_records, save_png
    from diffcxr.data.phantom import make_phantom_dataset
    from diffcxr.models.cxr_classifier import save_classifier
    from diffcxr.models.cxr_classifier import CXRClassifier

    root = tmp_path_factory.mktemp("evaluate")
    make_phantom_dataset(24, 32, root / "real", seed=0, progress=False)
    records = read_records(f"phantom:{root / 'real'}")
    gen = root / "gen"
    gen.mkdir()
    rng = np.random.default_rng(0)
    for i, record in enumerate(records[:6]):  # 6 reports x 2 samples: noisy copies of real phantoms
        from diffcxr.data import load_image

        base = (load_image(record.image_path, 32)[0].numpy() + 1) / 2
        for k in range(2):
            img = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
            save_png(img, gen / f"r{i}_{k:02d}.png", value_range=(0.0, 1.0))
            labels = {name: (None if np.isnan(v) else float(v)) for name, v in zip(CHEXPERT_FINDINGS, record.labels)}
            side = {"report": record.report, "id": record.id, "index": k, "seed": k, "labels": labels}
            if i == 5:  # no labels in the sidecar: the labeler derives them from the report
                side.pop("labels")
            (gen / f"r{i}_{k:02d}.json").write_text(json.dumps(side))
    clf = save_classifier(CXRClassifier(channels=(4, 8), image_size=32), root / "clf")
    return root, gen, clf


def test_evaluate_all_metrics(tiny, capsys):
    root, gen, clf = tiny
    out = root / "out"
    code = main(["evaluate", "--real", f"phantom:{root / 'real'}", "--generated", str(gen), "--split", "all",
                 "--extractor", "random", "--classifier", str(clf), "--kid-subsets", "5", "--out", str(out),
                 "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    p = metrics["protocol"]
    assert p["n_real"] == 24 and p["n_generated"] == 12 and p["size"] == 32 and p["split"] == "all"
    assert p["extractor"]["name"].startswith("random") and p["extractor"]["dim"] == 64
    assert metrics["fid"] >= 0 and "mean" in metrics["kid"]
    assert metrics["msssim"]["n_reports"] == 6 and 0 < metrics["msssim"]["msssim"] <= 1
    assert set(metrics["mauc"]["labels_from"]) == {"sidecar", "labeler"}
    assert "real" in metrics["mauc"]
    assert metrics["memorization"]["n_generated"] == 12
    cal = metrics["memorization"]["calibrated"]
    assert cal["percentile"] == 99 and cal["n_real_heldout"] == 24 and cal["share_real_heldout"] <= 0.05
    assert 0 <= cal["share_generated"] <= 1
    q = metrics["prdc"]
    assert (q["k"], q["n_real"], q["n_fake"]) == (5, 24, 12) and 0 <= q["precision"] <= 1 and 0 <= q["coverage"] <= 1
    report = (out / "report.md").read_text()
    assert "FID" in report and "Per-finding AUROC" in report and "precision / recall / density / coverage" in report
    assert any((out / "grids").glob("*.png"))
    # 95 % bootstrap intervals over reports (default 200 replicates) around each point estimate
    assert p["bootstrap"] == {"replicates": 200, "level": 0.95, "unit": "report"}
    for ci in (metrics["fid_interval"], metrics["kid"]["interval"], metrics["mauc"]["interval"]):
        assert ci["n_groups"] == 6 and ci["n_boot"] == 200 and np.isfinite(ci["low"]) and ci["low"] <= ci["high"]
    assert metrics["fid_interval"]["low"] <= metrics["fid"] <= metrics["fid_interval"]["high"]
    assert metrics["kid"]["interval"]["low"] <= metrics["kid"]["mean"] <= metrics["kid"]["interval"]["high"]
    assert metrics["fid_interval"]["method"].startswith("percentile, median re-centred")
    assert metrics["fid_interval"]["high"] > metrics["fid_interval"]["low"]
    assert "bootstrap over reports" in report and f"[{metrics['fid_interval']['low']:.4g}" in report
    assert "fid=" in capsys.readouterr().out


def test_evaluate_subset_of_metrics_and_n(tiny):
    root, gen, _ = tiny
    out = root / "out2"
    assert main(["evaluate", "--real", f"phantom:{root / 'real'}", "--generated", str(gen), "--split", "all",
                 "--metrics", "fid", "--extractor", "random", "--n", "8", "--size", "32", "--bootstrap", "0",
                 "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"protocol", "fid"} and metrics["protocol"]["n_real"] == 8
    assert metrics["protocol"]["bootstrap"] is None


@pytest.mark.parametrize("extra, message", [
    (["--metrics", "fid,bogus"], "unknown metric"),
    (["--metrics", "mauc", "--extractor", "random"], "--classifier"),
    (["--metrics", "fid"], "--classifier"),  # default cxr extractor without a classifier
    (["--metrics", "fid", "--extractor", "random", "--split", "nosuch"], "split"),
])
def test_bad_input_is_one_clear_line(tiny, capsys, extra, message):
    root, gen, _ = tiny
    code = main(["evaluate", "--real", f"phantom:{root / 'real'}", "--generated", str(gen), "--out",
                 str(root / "bad"), "--quiet", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("diffcxr: error:") and message in err[0]


def test_missing_generated_folder(tiny, capsys):
    root, _, _ = tiny
    assert main(["evaluate", "--real", f"phantom:{root / 'real'}", "--generated", str(root / "nope"),
                 "--out", str(root / "bad"), "--extractor", "random", "--metrics", "fid"]) == 1
    assert "not found" in capsys.readouterr().err


def test_evaluate_with_model_generates_then_scores(tiny, tmp_path):
    """--model/--reports: generate with the saved tiny pipeline fixture (diffcxr generate's sidecars), then evaluate."""
    from pathlib import Path

    root, _, clf = tiny
    model = Path(__file__).parent / "fixtures" / "tiny_pipeline"
    out = tmp_path / "eval"
    code = main(["evaluate", "--real", f"phantom:{root / 'real'}", "--model", str(model), "--reports",
                 f"phantom:{root / 'real'}", "--split", "all", "--n-reports", "2", "--samples-per-report", "2",
                 "--steps", "2", "--metrics", "fid,msssim,mauc", "--extractor", "random", "--classifier", str(clf),
                 "--out", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["n_generated"] == 4 and metrics["msssim"]["n_reports"] == 2
    assert metrics["mauc"]["labels_from"] == ["sidecar"]
    sidecars = sorted((out / "generated").glob("*.json"))
    assert len(sidecars) == 4
    # a second run into the same --out would score the first run's images too: refused in one line
    assert main(["evaluate", "--real", f"phantom:{root / 'real'}", "--model", str(model), "--reports",
                 f"phantom:{root / 'real'}", "--split", "all", "--n-reports", "2", "--steps", "2", "--metrics", "fid",
                 "--extractor", "random", "--out", str(out), "--quiet"]) == 1
    assert len(sorted((out / "generated").glob("*.json"))) == 4

    # the "no disease knowledge" ablation is one flag away and recorded in every sidecar
    code = main(["evaluate", "--real", f"phantom:{root / 'real'}", "--model", str(model), "--reports",
                 f"phantom:{root / 'real'}", "--split", "all", "--n-reports", "1", "--samples-per-report", "2",
                 "--steps", "2", "--metrics", "fid", "--extractor", "random", "--adapter-scale", "0",
                 "--guidance", "1.5", "--out", str(tmp_path / "ablation"), "--quiet"])
    assert code == 0
    side = json.loads(sorted((tmp_path / "ablation" / "generated").glob("*.json"))[0].read_text())
    settings = side["settings"]
    assert settings["adapter_conditioning_scale"] == 0 and settings["guidance_scale"] == 1.5


def test_prdc_with_too_few_images_is_a_listed_skip(tiny):
    root, gen, clf = tiny
    out = root / "few"
    assert main(["evaluate", "--real", f"phantom:{root / 'real'}", "--generated", str(gen), "--split", "all",
                 "--metrics", "prdc", "--extractor", "random", "--n", "4", "--out", str(out), "--quiet"]) == 0
    q = json.loads((out / "metrics.json").read_text())["prdc"]
    assert "needs more than 5" in q["skipped"] and "precision" not in q
    assert "skipped: needs more than 5" in (out / "report.md").read_text()


def test_per_finding_metrics_score_findings_with_enough_images_and_list_the_rest(tiny):
    root, gen, clf = tiny
    out = root / "pf"
    assert main(["evaluate", "--real", f"phantom:{root / 'real'}", "--generated", str(gen), "--split", "all",
                 "--metrics", "per_finding", "--extractor", "random", "--per-finding-min", "3", "--bootstrap", "0",
                 "--out", str(out), "--quiet"]) == 0
    pf = json.loads((out / "metrics.json").read_text())["per_finding"]
    assert pf["min_images"] == 3 and set(pf["findings"]) | set(pf["skipped"]) == set(CHEXPERT_FINDINGS)
    for name, m in pf["findings"].items():
        assert m["n_real"] >= 6 and m["n_generated"] >= 6 and m["fid"] >= 0 and 0 <= m["prdc"]["coverage"] <= 1
    for reason in pf["skipped"].values():
        assert "need 6 each" in reason
    assert "Per-finding FID / KID / PRDC" in (out / "report.md").read_text()


def test_per_finding_metrics_match_the_metrics_on_the_subsets():
    import numpy as np
    import torch

    from diffcxr.metrics import fid_from_features, per_finding_metrics, prdc

    rng = np.random.default_rng(0)
    real, fake = torch.tensor(rng.normal(size=(80, 5))).float(), torch.tensor(rng.normal(size=(60, 5)) + 0.3).float()
    real_y, fake_y = np.full((80, 14), np.nan), np.full((60, 14), np.nan)
    real_y[:40, 1], fake_y[10:40, 1] = 1, 1  # Cardiomegaly
    real_y[:3, 9] = 1  # Pleural Effusion: too few
    out = per_finding_metrics(real, real_y, fake, fake_y, min_images=10, kid_subsets=5)
    m = out["findings"]["Cardiomegaly"]
    assert (m["n_real"], m["n_generated"]) == (40, 30)
    assert m["fid"] == pytest.approx(fid_from_features(real[:40], fake[10:40]))
    assert m["prdc"]["coverage"] == pytest.approx(prdc(real[:40], fake[10:40]).coverage)
    assert "Pleural Effusion" in out["skipped"] and list(out["findings"]) == ["Cardiomegaly"]


def test_two_processes_give_the_numbers_of_one(tiny, tmp_path):
    """Feature extraction shared by 2 accelerate (gloo) processes: FID, KID, PRDC, mAUC, MS-SSIM and memorisation
    equal the one-process run's (the statistics are merged, reservoirs and features gathered in image order)."""
    import subprocess
    import sys

    import torch
    from _launch import ENV, two_processes

    if torch.cuda.is_available():
        pytest.skip("this test is the CPU/gloo variant")
    root, gen, clf = tiny
    args = ["-m", "diffcxr", "evaluate", "--real", f"phantom:{root / 'real'}", "--generated", str(gen), "--split",
            "all", "--extractor", "random", "--classifier", str(clf), "--kid-subsets", "5", "--bootstrap", "20",
            "--quiet"]
    results = []
    for name, launcher in (("one", [sys.executable]), ("two", two_processes())):
        proc = subprocess.run([*launcher, *args, "--out", str(tmp_path / name)], env=ENV, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        results.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    one, two = results
    assert two["protocol"].pop("processes") == 2 and one["protocol"].pop("processes") == 1

    def numbers(tree, prefix=""):
        if isinstance(tree, dict):
            return {k: v for key, value in tree.items() for k, v in numbers(value, f"{prefix}{key}.").items()}
        if isinstance(tree, list):
            return {k: v for i, value in enumerate(tree) for k, v in numbers(value, f"{prefix}{i}.").items()}
        return {prefix: tree}

    flat_one, flat_two = numbers(one), numbers(two)
    assert flat_one.keys() == flat_two.keys()
    for key, value in flat_one.items():
        if isinstance(value, float):
            assert flat_two[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
        else:
            assert flat_two[key] == value, key


def test_alignment_scores_generated_real_and_shuffled_pairs(tiny, tmp_path, capsys):
    """The alignment metric with a VLM stage's report encoder and image tower (here the tiny fixture's encoder and
    a fresh tower): the three means on the cosine scale, an interval over reports, and clear errors."""
    import shutil
    from pathlib import Path

    from diffcxr.models.report_encoder import ImageTower

    root, gen, clf = tiny
    vlm = tmp_path / "run" / "vlm"
    shutil.copytree(Path(__file__).parent / "fixtures" / "tiny_pipeline" / "report_encoder", vlm / "report_encoder")
    ImageTower(in_channels=1, channels=(4, 8), embed_dim=16).save_pretrained(vlm / "image_tower")
    argv = ["evaluate", "--real", f"phantom:{root / 'real'}", "--generated", str(gen), "--split", "all",
            "--metrics", "alignment", "--bootstrap", "20", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "no")]) == 1
    assert "--alignment-model" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "bad"), "--alignment-model", str(tmp_path)]) == 1
    assert "holds no VLM stage" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "out"), "--alignment-model", str(tmp_path / "run")]) == 0
    a = json.loads((tmp_path / "out" / "metrics.json").read_text())["alignment"]
    assert a["n_generated"] == 12 and a["n_real"] == 24
    for key in ("generated", "real", "shuffled_real"):
        assert -1 <= a[key] <= 1
    assert a["interval"]["low"] <= a["generated"] <= a["interval"]["high"]
    assert "alignment" in (tmp_path / "out" / "report.md").read_text()


def test_pair_cosines_and_shuffled_pairs():
    import torch

    from diffcxr.metrics.alignment import pair_cosines, shuffled_pairs

    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    assert np.allclose(pair_cosines(a, a), 1.0) and np.allclose(pair_cosines(a, -a), -1.0)
    for n in (2, 3, 50):
        order = shuffled_pairs(n, seed=n)
        assert sorted(order) == list(range(n)) and (order != np.arange(n)).all()


def test_memorisation_searches_what_the_model_trained_on(tiny, tmp_path, capsys):
    """--train-data auto reads the pipeline's training_data.json (from the sidecars' 'model'): the union of its
    components' data, splits and manifests, each image once."""
    import shutil

    from diffcxr.data import read_records
    from diffcxr.evaluation.training_data import training_records

    root, gen, clf = tiny
    real = f"phantom:{root / 'real'}"
    model = tmp_path / "pipeline"
    model.mkdir()
    component = {"trained": True, "data": real, "manifest": None, "train_splits": ["train"], "frontal_only": False}
    (model / "training_data.json").write_text(json.dumps({"components": {
        "vae": {**component, "train_splits": ["train", "val"]}, "denoiser": component, "knowledge_adapter": component,
        "report_encoder": {**component, "data": "phantom:/elsewhere"}}}))  # the text side is not searched
    records, sources = training_records(model)
    expected = {r.id for r in read_records(real) if r.split in ("train", "val")}
    assert {r.id for r in records} == expected and len(records) == len(expected)
    assert [s["splits"] for s in sources] == [["train", "val"], ["train"]] and all(s["recorded"] for s in sources)

    labelled = tmp_path / "gen"
    shutil.copytree(gen, labelled)
    argv = ["evaluate", "--real", real, "--generated", str(labelled), "--split", "all", "--metrics", "memorization",
            "--extractor", "random", "--train-data", "auto", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "none")]) == 1
    assert "--train-data auto needs the model" in capsys.readouterr().err
    for side in labelled.glob("*.json"):
        side.write_text(json.dumps({**json.loads(side.read_text()), "model": str(model)}))
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["memorization"]["n_train"] == len(expected)
    assert metrics["protocol"]["train_data"] == sources
