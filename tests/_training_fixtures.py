"""Shared helpers of the training tests: a tiny phantom dataset and tiny run configs (imported by test files)."""

from __future__ import annotations

from pathlib import Path

import pytest


def tiny_run(*overrides: str):
    from diffcxr.training.config import load_run_config

    # fp32 in tests: bf16 availability differs between machines; the step counts stay tiny
    return load_run_config("tiny", ["mixed_precision=no", *overrides])


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """40 phantoms of 32x32 (a few seconds), shared by all training tests."""
    from diffcxr.data.phantom import make_phantom_dataset

    out = tmp_path_factory.mktemp("phantoms32")
    make_phantom_dataset(40, 32, out, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def frozen_parts(tmp_path_factory, phantom_dir) -> Path:
    """An output folder holding a (1-step) VAE and report encoder: what the diffusion stages need."""
    from diffcxr.training import train_stage

    out = tmp_path_factory.mktemp("frozen")
    run = tiny_run("vae.max_steps=1", "vlm.max_steps=1")
    for stage in ("vae", "vlm"):
        train_stage(stage, run, f"phantom:{phantom_dir}", out, progress=False)
    return out


def copy_frozen(src: Path, dst: Path) -> Path:
    import shutil

    for name in ("vae", "vlm"):
        shutil.copytree(src / name, dst / name)
    return dst


def assert_same_tensors(a: Path, b: Path) -> None:
    """Two safetensors files hold the same keys with bit-identical tensors."""
    import torch
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), f"{a.name}: {k}"


def logged_losses(stage_dir: Path) -> list[tuple[str, str]]:
    """(step, loss) of every row of a stage's log.csv."""
    from diffcxr.training.run_log import read_log

    return [(r["step"], r["loss"]) for r in read_log(stage_dir / "log.csv")]
