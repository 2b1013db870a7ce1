"""The project as a ``pip install diffcxr`` user gets it: a wheel, installed without ``-e`` into a fresh venv,
runs from a folder outside the checkout (the configs ship inside the package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DIFFCXR_"))}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of the sources (nothing is written into the checkout)."""
    src = tmp_path_factory.mktemp("sdist")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist),
          str(src)], cwd=src)
    (whl,) = dist.glob("diffcxr-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with only the wheel installed (no ``-e``); its dependencies come from this test run's
    environment through a path entry, so nothing is downloaded."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
         cwd=venv)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=venv).stdout.strip())
    # a plain path line: the parent's editable-install hook (a .pth inside it) is not processed, so the checkout's
    # src/ never becomes importable in this venv
    (site / "zz_parent_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_wheel_ships_the_configs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for kind, name in [("model", "paper"), ("model", "cpu-mini"), ("train", "demo"), ("train", "tiny")]:
        assert f"diffcxr/configs/{kind}/{name}.yaml" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "configs/")) for n in names)


@pytest.mark.slow
def test_wheel_install_runs_flops_and_a_tiny_training(installed, tmp_path):
    bin_dir = installed / "bin"
    where = _run([str(bin_dir / "python"), "-c", "import diffcxr; print(diffcxr.__file__)"], cwd=tmp_path).stdout
    assert str(installed) in where and str(ROOT) not in where, where

    flops = _run([str(bin_dir / "diffcxr"), "flops", "--config", "paper"], cwd=tmp_path).stdout
    assert "29.6" in flops, flops

    _run([str(bin_dir / "diffcxr"), "phantom", "--n", "12", "--size", "32", "--seed", "0", "--out", "ph"],
         cwd=tmp_path)
    _run([str(bin_dir / "diffcxr"), "train", "all", "-c", "tiny", "--data", "phantom:ph", "--output-dir", "run",
          "--no-progress"], cwd=tmp_path)
    assert (tmp_path / "run" / "pipeline" / "model_index.json").is_file()
    parts = {p.name for p in (tmp_path / "run" / "pipeline").iterdir() if p.is_dir()}
    assert {"denoiser", "knowledge_adapter", "report_encoder", "scheduler", "vae"} <= parts, parts
