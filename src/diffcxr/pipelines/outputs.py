"""Writing generated images with the JSON sidecar that makes each one reproducible (``diffcxr generate``, the app)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diffcxr import __version__
from diffcxr.atomic import atomic_path, atomic_write_text
from diffcxr.data.image_io import save_dicom, save_png

__all__ = ["IMAGE_FORMATS", "save_generated"]

IMAGE_FORMATS = ("png", "dcm")


def save_generated(image: np.ndarray, out_dir: str | Path, name: str, *, report: str, report_id: str, index: int,
                   seed: int, labels: dict, label_overrides: dict | None, knowledge_prompt: str,
                   report_sections: list[str], model_dir: str | Path, settings: dict,
                   formats: Sequence[str] = ("png",), bits: int = 8) -> list[Path]:
    """Write one generated image (``H×W`` in ``[0, 1]``) as ``{name}.png`` and/or ``{name}.dcm`` (marked synthetic)
    plus ``{name}.json``: the report, derived labels, overrides, knowledge prompt, its own seed (``--n 1 --seed
    SEED`` regenerates it), model and settings. Returns the paths written, images first, sidecar last."""
    out_dir, model_dir = Path(out_dir), Path(model_dir)
    unknown = [f for f in formats if f not in IMAGE_FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be some of {IMAGE_FORMATS}, got {list(formats)}")
    paths = []
    for fmt in formats:  # each file appears whole or not at all (a killed run leaves no half image)
        path = out_dir / f"{name}.{fmt}"
        with atomic_path(path) as partial:
            if fmt == "png":
                save_png(image, partial, bits=bits, value_range=(0.0, 1.0))
            else:
                save_dicom(image, partial, value_range=(0.0, 1.0), report=report, seed=seed, model_name=model_dir.name)
        paths.append(path)
    sidecar = {
        "file": paths[0].name, "report": report, "id": report_id, "index": index, "seed": seed,
        "labels": labels, "label_overrides": label_overrides, "knowledge_prompt": knowledge_prompt,
        "report_sections": report_sections, "model": str(model_dir.resolve()), "settings": settings,
        "diffcxr_version": __version__,
    }
    if len(paths) > 1:
        sidecar["files"] = [p.name for p in paths]
    side = atomic_write_text(out_dir / f"{name}.json", json.dumps(sidecar, indent=2))  # last: marks the image done
    return [*paths, side]
