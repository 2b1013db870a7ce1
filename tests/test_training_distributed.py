"""A 2-process CPU run of the base stage (gloo backend) writes the same artifact layout as a single-process run,
and each optimizer step sees both processes' micro-batches.

Launcher note (accelerate 1.15): ``accelerate launch --num_processes 2 --cpu`` starts ONE process unless an MPI
hostfile is given; on a machine without CUDA, ``accelerate launch --multi_gpu --num_processes 2`` (torchrun
underneath) gives 2 MULTI_CPU/gloo processes, which is what this test uses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _training_fixtures import copy_frozen, frozen_parts, phantom_dir, tiny_run  # noqa: F401 - fixtures

from diffcxr.training import train_stage


def _layout(stage_dir: Path) -> set[str]:
    return {str(p.relative_to(stage_dir)) for p in stage_dir.rglob("*") if "tensorboard" not in p.parts}


@pytest.mark.slow
def test_two_process_base_run(tmp_path, frozen_parts, phantom_dir):  # noqa: F811
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test is the CPU/gloo variant")
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.exists():
        accelerate = shutil.which("accelerate")
    if not accelerate:
        pytest.skip("accelerate launcher not found")
    data = f"phantom:{phantom_dir}"
    single = copy_frozen(frozen_parts, tmp_path / "single")
    train_stage("base", tiny_run(), data, single, progress=False)

    multi = copy_frozen(frozen_parts, tmp_path / "multi")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "diffcxr", "train", "base", "-c", "tiny", "--data", data,
           "--output-dir", str(multi), "--no-progress", "mixed_precision=no"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert _layout(single / "base") == _layout(multi / "base")
    cfg = tiny_run().base
    state = json.loads((multi / "base" / "checkpoints" / "checkpoint-00000002" / "state.json").read_text())["state"]
    assert state["samples_seen"] == 2 * cfg.batch_size * cfg.grad_accum * 2  # 2 steps x 2 processes
    single_state = json.loads((single / "base" / "checkpoints" / "checkpoint-00000002" / "state.json").read_text())
    assert single_state["state"]["samples_seen"] == 2 * cfg.batch_size * cfg.grad_accum
