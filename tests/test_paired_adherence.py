"""benchmarks/paired_adherence.py: two pipelines on the same reports and noise, a paired mAUC difference, each FID."""

from __future__ import annotations

import json
import sys

import pytest
from _benchmarks import ROOT, load_benchmark, tiny_yardstick

FIXTURE = ROOT / "tests" / "fixtures" / "tiny_pipeline"


@pytest.mark.slow
def test_one_pipeline_against_itself_differs_by_exactly_zero(tmp_path, monkeypatch, capsys):
    phantoms, classifier = tiny_yardstick(tmp_path, 12)
    args = ["paired_adherence.py", "--model", f"a={FIXTURE}", "--model", f"b={FIXTURE}", "--classifier",
            str(classifier), "--data", f"phantom:{phantoms}", "--n-reports", "8", "--steps", "2",
            "--bootstrap", "20", "--out", str(tmp_path / "out")]
    bench = load_benchmark("paired_adherence")
    monkeypatch.setattr(sys, "argv", args)
    bench.main()
    result = json.loads((tmp_path / "out" / "paired.json").read_text())
    a, b = result["results"]["a"], result["results"]["b"]
    assert a["mauc"] == b["mauc"] and a["n_reports"] == 8  # the same images: noise seeded per report
    assert a["fid"] == b["fid"] and a["fid"] >= 0  # FID on the yardstick's features, against the real images
    assert 0 <= result["real"]["mauc"] <= 1 and result["real"]["n_images"] == 8 and "stats" not in result["real"]
    assert result["difference"]["delta"] == 0
    assert result["difference"]["interval"]["low"] == result["difference"]["interval"]["high"] == 0
    assert "a - b (paired): +0.000 [+0.000, +0.000]" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", args[:3] + args[5:])  # one --model
    with pytest.raises(SystemExit, match="exactly two"):
        bench.main()


@pytest.mark.slow
def test_one_pipeline_at_two_adapter_scales_is_paired_per_model(tmp_path, monkeypatch):
    phantoms, classifier = tiny_yardstick(tmp_path, 12)
    base = ["paired_adherence.py", "--classifier", str(classifier), "--data", f"phantom:{phantoms}",
            "--n-reports", "8", "--steps", "2", "--bootstrap", "0"]
    bench = load_benchmark("paired_adherence")
    monkeypatch.setattr(sys, "argv", base + ["--guidance", "2", "--model", f"on={FIXTURE}", "--model", f"off={FIXTURE}",
                                             "--adapter-scale", "3,0", "--out", str(tmp_path / "out")])
    bench.main()
    result = json.loads((tmp_path / "out" / "paired.json").read_text())
    on, off = result["results"]["on"]["settings"], result["results"]["off"]["settings"]
    assert (on["adapter_scale"], off["adapter_scale"]) == (3.0, 0.0)
    assert on["guidance_scale"] == off["guidance_scale"] == 2.0  # one value: both models
    # a different adapter scale gives different images, so the two FIDs differ
    assert result["results"]["on"]["fid"] != result["results"]["off"]["fid"]
    # the sweep at the same settings scores the same images: its mAUC and FID are the paired run's, per scale
    sweep_args = ["adherence_sweep.py", "--model", str(FIXTURE), "--classifier", str(classifier), "--data",
                  f"phantom:{phantoms}", "--n-reports", "8", "--images-per-report", "1", "--steps", "2",
                  "--guidance", "2", "--adapter-scale", "3,0", "--bootstrap", "0", "--out", str(tmp_path / "sweep")]
    monkeypatch.setattr(sys, "argv", sweep_args)
    load_benchmark("adherence_sweep").main()
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert sweep["real"]["mauc"] == pytest.approx(result["real"]["mauc"], abs=1e-12)
    assert sorted(row["settings"]["adapter_scale"] for row in sweep["rows"]) == [0.0, 3.0]
    for row in sweep["rows"]:
        name = {3.0: "on", 0.0: "off"}[row["settings"]["adapter_scale"]]
        assert row["mauc"] == pytest.approx(result["results"][name]["mauc"], abs=1e-12)
        assert row["fid"] == pytest.approx(result["results"][name]["fid"], rel=1e-6)
    for extra, message in ((["--model", f"a={FIXTURE}", "--model", f"a={FIXTURE}"], "must differ"),
                           (["--model", f"a={FIXTURE}", "--model", f"b={FIXTURE}", "--adapter-scale", "1,2,3"],
                            "one value for both models or two"),
                           (["--model", f"a={FIXTURE}", "--model", f"b={FIXTURE}", "--guidance", "high"],
                            "one number or two")):
        monkeypatch.setattr(sys, "argv", base + extra + ["--out", str(tmp_path / "bad")])
        with pytest.raises(SystemExit, match=message):
            bench.main()


@pytest.mark.slow
def test_two_sweeps_pair_from_their_saved_scores_as_the_paired_benchmark_does(tmp_path, monkeypatch, capsys):
    import torch

    from diffcxr.pipelines import DiffCXRPipeline

    phantoms, classifier = tiny_yardstick(tmp_path, 12)
    other = DiffCXRPipeline.from_pretrained(FIXTURE)  # a second "arm": the fixture with its denoiser nudged
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in other.denoiser.parameters():
            p.add_(0.2 * p.std().nan_to_num() * torch.randn(p.shape, generator=generator))
    other.save_pretrained(tmp_path / "other")
    common = ["--classifier", str(classifier), "--data", f"phantom:{phantoms}", "--n-reports", "8", "--steps", "2",
              "--guidance", "2", "--bootstrap", "30"]
    monkeypatch.setattr(sys, "argv", ["paired_adherence.py", "--model", f"a={FIXTURE}", "--model",
                                      f"b={tmp_path / 'other'}", "--adapter-scale", "1", *common,
                                      "--out", str(tmp_path / "paired")])
    load_benchmark("paired_adherence").main()
    expected = json.loads((tmp_path / "paired" / "paired.json").read_text())["difference"]
    sweep = load_benchmark("adherence_sweep")
    for name, model, seed in (("a", FIXTURE, 0), ("b", tmp_path / "other", 0), ("b-seed1", tmp_path / "other", 1)):
        monkeypatch.setattr(sys, "argv", ["adherence_sweep.py", "--model", str(model), *common, "--adapter-scale",
                                          "1,0", "--images-per-report", "1", "--seed", str(seed),
                                          "--out", str(tmp_path / name)])
        sweep.main()
    capsys.readouterr()
    results = sweep.paired(str(tmp_path / "a" / "sweep.json"), str(tmp_path / "b" / "sweep.json"))
    at_scale_1 = next(r for key, r in results.items() if key[3] == 1.0)
    assert expected["delta"] != 0 and at_scale_1["delta"] == pytest.approx(expected["delta"], abs=1e-12)
    assert at_scale_1["interval"] == pytest.approx(expected["interval"], abs=1e-12)  # the same paired bootstrap
    assert len(results) == 2 and "| dpm++2m | 2 | 2 | 0 |" in capsys.readouterr().out  # both adapter scales
    with pytest.raises(SystemExit, match="not paired"):  # other noise
        sweep.paired(str(tmp_path / "a" / "sweep.json"), str(tmp_path / "b-seed1" / "sweep.json"))
    (tmp_path / "b" / "scores.npz").unlink()
    with pytest.raises(SystemExit, match="no scores.npz"):
        sweep.paired(str(tmp_path / "a" / "sweep.json"), str(tmp_path / "b" / "sweep.json"))
