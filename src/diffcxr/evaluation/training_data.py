"""The images a saved pipeline was trained on, from its ``training_data.json`` (for memorisation checks)."""

from __future__ import annotations

import json
from pathlib import Path

from diffcxr.errors import DiffCXRError

__all__ = ["GENERATOR_COMPONENTS", "training_records"]

GENERATOR_COMPONENTS = ("vae", "denoiser", "knowledge_adapter")  # what can copy a training image into an output


def training_records(pipeline_dir: str | Path) -> tuple[list, list[dict]]:
    """``(records, sources)``: every image the pipeline's VAE, denoiser and knowledge adapter trained on (the union
    over their data specs, manifests and splits, each id once) and the sources read.

    Pipelines exported before the splits were recorded use the training default (``train`` and ``val``, frontal
    views), which the returned sources say."""
    from diffcxr.training.config import DataConfig
    from diffcxr.training.data import select_records

    path = Path(pipeline_dir) / "training_data.json"
    if not path.is_file():
        raise DiffCXRError(f"{pipeline_dir} has no training_data.json: say where it trained with --train-data SPEC")
    components = json.loads(path.read_text(encoding="utf-8")).get("components", {})
    records, seen, sources = [], set(), []
    for name in GENERATOR_COMPONENTS:
        info = components.get(name) or {}
        if not info.get("trained") or not info.get("data"):
            continue
        defaults = DataConfig()
        splits = tuple(info.get("train_splits") or defaults.train_splits)
        frontal = defaults.frontal_only if info.get("frontal_only") is None else bool(info["frontal_only"])
        source = {"data": info["data"], "manifest": info.get("manifest"), "splits": list(splits),
                  "frontal_only": frontal, "recorded": info.get("train_splits") is not None}
        if source in sources:
            continue
        sources.append(source)
        config = DataConfig(frontal_only=frontal, train_splits=splits, limit=int(info.get("limit") or 0))
        train, _ = select_records(info["data"], config, info.get("manifest"))
        for record in train:
            if record.id not in seen:
                seen.add(record.id)
                records.append(record)
    if not records:
        raise DiffCXRError(f"{path} names no trained component with a data spec; give --train-data SPEC")
    return records, sources
