"""benchmarks/paired_adherence.py: two pipelines on the same reports and noise, a paired mAUC difference."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "tiny_pipeline"


def _benchmark():
    spec = importlib.util.spec_from_file_location("paired_adherence", ROOT / "benchmarks" / "paired_adherence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_one_pipeline_against_itself_differs_by_exactly_zero(tmp_path, monkeypatch, capsys):
    from diffcxr.data.phantom import make_phantom_dataset
    from diffcxr.models.cxr_classifier import CXRClassifier, save_classifier

    make_phantom_dataset(12, 32, tmp_path / "ph", seed=3, progress=False)
    torch.manual_seed(0)
    save_classifier(CXRClassifier(channels=(4, 8), image_size=32).eval(), tmp_path / "clf")
    args = ["paired_adherence.py", "--model", f"a={FIXTURE}", "--model", f"b={FIXTURE}", "--classifier",
            str(tmp_path / "clf"), "--data", f"phantom:{tmp_path / 'ph'}", "--n-reports", "8", "--steps", "2",
            "--bootstrap", "20", "--out", str(tmp_path / "out")]
    bench = _benchmark()
    monkeypatch.setattr(sys, "argv", args)
    bench.main()
    result = json.loads((tmp_path / "out" / "paired.json").read_text())
    a, b = result["results"]["a"], result["results"]["b"]
    assert a["mauc"] == b["mauc"] and a["n_reports"] == 8  # the same images: noise seeded per report
    assert result["difference"]["delta"] == 0
    assert result["difference"]["interval"]["low"] == result["difference"]["interval"]["high"] == 0
    assert "a - b (paired): +0.000 [+0.000, +0.000]" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", args[:3] + args[5:])  # one --model
    with pytest.raises(SystemExit, match="exactly two"):
        bench.main()
