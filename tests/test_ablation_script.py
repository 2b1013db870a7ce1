"""benchmarks/ablation_adherence.sh end to end on the tiny config: every arm and seed trained, swept and tabled,
and a rerun that keeps the finished work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _training_fixtures import phantom_dir, tiny_run  # noqa: F401 - fixtures

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation_adherence.sh"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bash") is None, reason="the ablation script needs bash")]


def _env(yardstick: Path, **extra: str) -> dict[str, str]:
    """The script's smoke-run settings (its header): tiny config, 2-step stages, a few reports."""
    steps = " ".join(f"{s}.max_steps=2" for s in ("vae", "vlm", "base", "adapter", "classifier"))
    return {**os.environ, "CONFIG": "tiny", "N": "60", "N_EVAL": "12", "N_LAT": "40", "SEEDS": "1 2",
            "YARDSTICK": str(yardstick), "PYTHON": sys.executable, "DIFFCXR": f"{sys.executable} -m diffcxr",
            "TRAIN_OVERRIDES": f"mixed_precision=no {steps}", "SWEEP_ARGS": "--n-reports 12 --steps 2 --bootstrap 0",
            "LATERALITY_ARGS": "--n-reports 6 --steps 2 --bootstrap 0", "OMP_NUM_THREADS": "1", **extra}


def _run(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def yardstick(tmp_path_factory, phantom_dir) -> Path:  # noqa: F811
    """A 2-step classifier on 32x32 phantoms: it only has to score, not to be good."""
    from diffcxr.training import train_stage

    out = tmp_path_factory.mktemp("yardstick")
    train_stage("classifier", tiny_run("classifier.max_steps=2"), f"phantom:{phantom_dir}", out, progress=False)
    return out / "classifier"  # the stage's folder, as `diffcxr evaluate --classifier` takes it


def test_ablation_script_tables_every_arm_and_a_rerun_keeps_the_work(tmp_path, yardstick):
    out = tmp_path / "abl"
    env = _env(yardstick, ARMS="default meanpool")
    first = _run(out, env)
    assert first.returncode == 0, first.stderr[-3000:]
    table = (out / "table.md").read_text(encoding="utf-8")
    for heading in ("### default", "### meanpool", "#### default against meanpool", "## Laterality by arm",
                    "#### default − meanpool, seed 1, paired run for run",
                    "#### default − meanpool, seed 2, paired run for run"):
        assert heading in table, heading
    paired = table.split("#### default − meanpool, seed 2, paired run for run")[1].split("##")[0]
    assert "| dpm++2m | 2 | 4 | 2 |" in paired and "| dpm++2m | 2 | 4 | 0 |" in paired  # both adapter scales
    for arm in ("default", "meanpool"):
        for seed in (1, 2):
            assert (out / f"{arm}-s{seed}" / "pipeline" / "model_index.json").is_file()
            assert (out / f"sweep-{arm}-s{seed}" / "sweep.json").is_file()
    assert (out / "laterality-s2" / "laterality.json").is_file()
    # the arms differ where they should: mean pooling's report encoder has no squeeze weights to save
    configs = {arm: (out / f"{arm}-s1" / "pipeline" / "report_encoder" / "config.json").read_text() for arm in
               ("default", "meanpool")}
    assert '"mean_pool"' in configs["meanpool"] and '"mean_pool"' not in configs["default"]

    trained = _stage_weights(out)
    again = _run(out, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _stage_weights(out) == trained  # no stage retrained, the re-exported pipelines hold the same bytes
    assert (out / "table.md").read_text(encoding="utf-8") == table


def _stage_weights(out: Path) -> dict[Path, object]:
    """Every weight file: a training stage's by its modification time (untouched on a rerun), a pipeline's (which
    `train all --resume` exports again from the finished stages) by its bytes."""
    return {p: p.read_bytes() if "pipeline" in p.relative_to(out).parts else p.stat().st_mtime_ns
            for p in out.rglob("*.safetensors")}


def test_ablation_script_rejects_an_unknown_arm_before_training(tmp_path, yardstick):
    res = _run(tmp_path / "abl", _env(yardstick, ARMS="default meanpol"))
    assert res.returncode != 0
    assert "unknown arm 'meanpol'" in res.stderr
    assert not (tmp_path / "abl").exists()  # failed before making phantoms
