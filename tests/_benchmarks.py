"""Shared helpers of the benchmark-script tests: load a script from benchmarks/ as a module, and a tiny yardstick
(phantoms plus an untrained classifier) for scripts that generate and score (imported by test files)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (its ``main()`` reads ``sys.argv``)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_yardstick(folder: Path, n: int, seed: int = 3) -> tuple[Path, Path]:
    """``n`` 32x32 phantoms in ``folder/ph`` and a seeded untrained classifier in ``folder/clf``: what a benchmark
    needs to generate from reports and score the images (it has to score, not to be good)."""
    import torch

    from diffcxr.data.phantom import make_phantom_dataset
    from diffcxr.models.cxr_classifier import CXRClassifier, save_classifier

    make_phantom_dataset(n, 32, folder / "ph", seed=seed, progress=False)
    torch.manual_seed(0)
    save_classifier(CXRClassifier(channels=(4, 8), image_size=32).eval(), folder / "clf")
    return folder / "ph", folder / "clf"
