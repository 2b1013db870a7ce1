"""Ctrl-C and SIGTERM during training: the stage finishes its step, writes a checkpoint there, stops with one line
and exit code 128 + signal, and ``--resume`` continues to exactly the weights of an uninterrupted run."""

from __future__ import annotations

import signal

import pytest
from _training_fixtures import (  # noqa: F401 - fixtures
    assert_same_tensors,
    copy_frozen,
    frozen_parts,
    logged_losses,
    phantom_dir,
    tiny_run,
)

from diffcxr.cli.main import main
from diffcxr.training import train_stage
from diffcxr.training.session import Session
from diffcxr.training.stop_request import TrainingInterrupted, arm, requested, stop_requests

# checkpoint_every=2: step 1 has no periodic checkpoint, so one there was written by the stop
OVERRIDES = ("sample.num_reports=0", "base.max_steps=3", "base.checkpoint_every=2", "base.ema_decay=0.9",
             "base.cond_drop_prob=0.5")


@pytest.fixture
def terminal_signals():
    """SIGINT and SIGTERM with Python's own handlers, as in a terminal (a background job ignores SIGINT)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_handler_stops_at_a_step_only_while_armed_and_is_restored(terminal_signals):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with stop_requests():
        with pytest.raises(KeyboardInterrupt):  # no step loop yet (set-up, caching): stop at once
            signal.raise_signal(signal.SIGINT)
        arm()
        signal.raise_signal(signal.SIGTERM)
        assert requested() == signal.SIGTERM
        signal.raise_signal(signal.SIGINT)  # another signal while stopping (a launcher's follow-up): ignored
        assert requested() == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # the same signal again: stop at once
            signal.raise_signal(signal.SIGTERM)
    assert {s: signal.getsignal(s) for s in before} == before
    assert requested() is None


def test_a_signal_the_process_ignores_stays_ignored(terminal_signals):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job's SIGINT (`cmd &`, nohup)
    with stop_requests():
        arm()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        signal.raise_signal(signal.SIGINT)
        assert requested() is None
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_ctrl_c_writes_a_checkpoint_at_that_step_and_resume_is_exact(tmp_path, frozen_parts, phantom_dir,  # noqa: F811
                                                                     terminal_signals):
    data = f"phantom:{phantom_dir}"
    run = tiny_run(*OVERRIDES)
    full = copy_frozen(frozen_parts, tmp_path / "full")
    train_stage("base", run, data, full, progress=False)

    part = copy_frozen(frozen_parts, tmp_path / "part")

    def ctrl_c(session, state):
        if state.step == 1:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match=r"base: stopped by SIGINT at step 1 of 3.*--resume") as info:
        train_stage("base", run, data, part, progress=False, step_callback=ctrl_c)
    assert info.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ckpt = part / "base" / "checkpoints"
    assert (ckpt / "latest").read_text().strip() == "checkpoint-00000001"
    assert not (part / "base" / "uvit").exists() and not (part / "base" / "COMPLETE.json").exists()

    train_stage("base", run, data, part, progress=False, resume=True)
    for name in ("uvit/diffusion_pytorch_model", "checkpoints/checkpoint-00000003/optimizer",
                 "checkpoints/checkpoint-00000003/ema"):
        assert_same_tensors(full / f"base/{name}.safetensors", part / f"base/{name}.safetensors")
    assert logged_losses(full / "base") == logged_losses(part / "base")
    assert [s for s, _ in logged_losses(part / "base")] == ["1", "2", "3"]


def test_sigterm_through_the_cli_is_one_line_exit_143_then_resume_finishes(tmp_path, frozen_parts, phantom_dir,  # noqa: F811
                                                                          monkeypatch, capsys, terminal_signals):
    out = copy_frozen(frozen_parts, tmp_path / "run")
    sigterm_handler = signal.getsignal(signal.SIGTERM)
    after_step = Session.after_step

    def terminated_at_step_2(self, state):  # what a batch scheduler sends before it kills the job
        if state.step == 2:
            signal.raise_signal(signal.SIGTERM)
        after_step(self, state)

    monkeypatch.setattr(Session, "after_step", terminated_at_step_2)
    args = ["train", "base", "-c", "tiny", "--data", f"phantom:{phantom_dir}", "--output-dir", str(out),
            "--no-progress", "mixed_precision=no", *OVERRIDES]
    assert main(args) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("diffcxr: interrupted: base: stopped by SIGTERM at step 2 of 3"), err
    assert "--resume" in err[-1] and "Traceback" not in "\n".join(err)
    assert signal.getsignal(signal.SIGTERM) == sigterm_handler
    assert (out / "base" / "checkpoints" / "latest").read_text().strip() == "checkpoint-00000002"

    monkeypatch.setattr(Session, "after_step", after_step)
    assert main([*args, "--resume"]) == 0
    assert (out / "base" / "COMPLETE.json").is_file()
    assert [s for s, _ in logged_losses(out / "base")] == ["1", "2", "3"]
