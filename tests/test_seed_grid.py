"""benchmarks/seed_grid.py: the same reports and noise through several pipelines, one row each, captioned."""

from __future__ import annotations

import sys

import pytest
from _benchmarks import ROOT, load_benchmark, tiny_yardstick

FIXTURE = ROOT / "tests" / "fixtures" / "tiny_pipeline"


def test_report_caption_names_present_findings_with_their_side():
    caption = load_benchmark("seed_grid").report_caption
    assert caption("Large left pleural effusion. Moderate cardiomegaly. No pneumothorax.") == [
        "cardiomegaly", "L: effusion"]
    assert caption("Right pneumothorax.") == ["R: pneumothorax"]
    assert caption("No acute cardiopulmonary abnormality. No effusion.") == ["normal"]


@pytest.mark.slow
def test_grid_has_one_row_per_model_the_real_row_and_captions(tmp_path, monkeypatch, capsys):
    from PIL import Image

    phantoms, _ = tiny_yardstick(tmp_path, 6)
    out = tmp_path / "grid.png"
    monkeypatch.setattr(sys, "argv", ["seed_grid.py", "--model", f"a={FIXTURE}", "--model", f"b={FIXTURE}",
                                      "--data", f"phantom:{phantoms}", "--n-reports", "4", "--shown", "3",
                                      "--steps", "2", "--size", "40", "--out", str(out)])
    load_benchmark("seed_grid").main()
    width, height = Image.open(out).size
    assert width == 3 * 40 and height > 3 * (40 + 14)  # 2 models + the real row, then the captions below
    assert "| a |" in capsys.readouterr().out
