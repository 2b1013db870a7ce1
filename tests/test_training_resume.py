"""Resume equality: a base-stage run SIGKILLed right after its step-2 checkpoint and continued with --resume ends
with exactly the weights, optimizer state and losses of an uninterrupted run (with gradient accumulation, EMA
and condition dropout in play)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from _training_fixtures import (  # noqa: F401 - fixtures
    assert_same_tensors,
    copy_frozen,
    frozen_parts,
    logged_losses,
    phantom_dir,
    tiny_run,
)

from diffcxr.training import train_stage

OVERRIDES = ("sample.num_reports=0", "base.max_steps=3", "base.checkpoint_every=2", "base.grad_accum=2",
             "base.ema_decay=0.9", "base.cond_drop_prob=0.5")


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

    weights = "base/uvit/diffusion_pytorch_model.safetensors"
    assert_same_tensors(full / weights, part / weights)
    for name in ("model", "optimizer", "ema"):
        checkpoint = f"base/checkpoints/checkpoint-00000003/{name}.safetensors"
        assert_same_tensors(full / checkpoint, part / checkpoint)
    assert logged_losses(full / "base") == logged_losses(part / "base")
    assert [s for s, _ in logged_losses(part / "base")] == ["1", "2", "3"]
