"""Resume equality: a base-stage run SIGKILLed right after its step-2 checkpoint and continued with --resume ends
with exactly the weights, optimizer state and losses of an uninterrupted run (with gradient accumulation, EMA
and condition dropout in play)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from _training_fixtures import copy_frozen, frozen_parts, phantom_dir, tiny_run  # noqa: F401 - fixtures
from safetensors.torch import load_file

from diffcxr.training import train_stage
from diffcxr.training.run_log import read_log

OVERRIDES = ("sample.num_reports=0", "base.max_steps=3", "base.checkpoint_every=2", "base.grad_accum=2",
             "base.ema_decay=0.9", "base.cond_drop_prob=0.5")


def _same(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), f"{a.name}: {k}"


def _losses(stage_dir: Path) -> list[tuple[str, str]]:
    return [(r["step"], r["loss"]) for r in read_log(stage_dir / "log.csv")]


def test_sigkill_then_resume_is_exact(tmp_path, frozen_parts, phantom_dir):  # noqa: F811
    data = f"phantom:{phantom_dir}"
    run = tiny_run(*OVERRIDES)
    full = copy_frozen(frozen_parts, tmp_path / "full")
    train_stage("base", run, data, full, progress=False)

    part = copy_frozen(frozen_parts, tmp_path / "part")
    script = textwrap.dedent(f"""
        import os, signal
        from diffcxr.training import train_stage, load_run_config
        run = load_run_config("tiny", ["mixed_precision=no", *{list(OVERRIDES)!r}])
        def kill(session, state):
            if state.step == 2:  # right after the step-2 checkpoint
                os.kill(os.getpid(), signal.SIGKILL)
        train_stage("base", run, {data!r}, {str(part)!r}, progress=False, step_callback=kill)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (part / "base" / "checkpoints" / "latest").read_text().strip() == "checkpoint-00000002"
    assert not (part / "base" / "uvit").exists() and not (part / "base" / "COMPLETE.json").exists()

    train_stage("base", run, data, part, progress=False, resume=True)

    _same(full / "base/uvit/diffusion_pytorch_model.safetensors", part / "base/uvit/diffusion_pytorch_model.safetensors")
    for name in ("model", "optimizer", "ema"):
        _same(full / f"base/checkpoints/checkpoint-00000003/{name}.safetensors",
              part / f"base/checkpoints/checkpoint-00000003/{name}.safetensors")
    assert _losses(full / "base") == _losses(part / "base")
    assert [s for s, _ in _losses(part / "base")] == ["1", "2", "3"]
