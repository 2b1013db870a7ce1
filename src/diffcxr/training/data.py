"""Training/hold-out record selection (splits, frontal views, noise-filter manifest) and batch collation."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import torch

from diffcxr.errors import DiffCXRError

__all__ = ["load_manifest_ids", "select_records", "knowledge_prompts", "collate_images", "ImageSet"]


def load_manifest_ids(path: str | os.PathLike) -> set[str]:
    """Ids kept by a noise-filter manifest (``diffcxr.filtering.load_manifest``; plain ``id,kept`` CSV fallback)."""
    try:
        from diffcxr.filtering import load_manifest
    except ImportError:
        load_manifest = None
    if load_manifest is not None:
        return set(load_manifest(path))
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise DiffCXRError(f"manifest {path} not found")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and ("id" not in rows[0] or "kept" not in rows[0]):
        raise DiffCXRError(f"manifest {path} needs columns id and kept")
    return {r["id"] for r in rows if str(r["kept"]).strip() in ("1", "true", "True")}


def select_records(data_spec: str, data_cfg, manifest: str | None = None):
    """Read ``data_spec`` and return ``(train_records, holdout_records)``.

    Training keeps ``data.train_splits`` (and, with a manifest, only the ids it keeps); the hold-out records
    (``data.holdout_splits``) give the fixed reports of the sample grids and the demo. Records without an image
    or a report are dropped from training.
    """
    from diffcxr.data import read_records

    records = read_records(data_spec, frontal_only=data_cfg.frontal_only, require_images=True,
                           derive_labels=True)
    if not records:
        raise DiffCXRError(f"no records with images in {data_spec!r}" +
                           (" (frontal_only=true dropped lateral/unknown views)" if data_cfg.frontal_only else ""))
    records = [r for r in records if r.report and r.report.strip()]
    train = [r for r in records if r.split in data_cfg.train_splits]
    holdout = [r for r in records if r.split in data_cfg.holdout_splits]
    if manifest:
        kept = load_manifest_ids(manifest)
        before = len(train)
        train = [r for r in train if r.id in kept]
        if not train:
            raise DiffCXRError(f"the manifest {manifest} keeps none of the {before} training records of {data_spec!r} "
                               "(do the ids match?)")
    if data_cfg.limit:
        train = train[: data_cfg.limit]
    if not train:
        raise DiffCXRError(f"no training records in {data_spec!r} (splits {list(data_cfg.train_splits)})")
    if not holdout:  # e.g. a tiny dataset: use the last few training records for the grids
        holdout = train[-min(8, len(train)):]
    return train, holdout


def knowledge_prompts(records, sides: bool = False) -> list[str]:
    """The Diff-CXR knowledge prompt of each record from its labels (derived from the report when unannotated);
    ``sides``: the side-aware prompt, each finding's side read from the report (``adapter.knowledge_sides``)."""
    from diffcxr.findings import CHEXPERT_FINDINGS
    from diffcxr.knowledge import finding_sides, knowledge_prompt, label_report

    out = []
    for r in records:
        labels = {name: (None if math.isnan(v) else float(v)) for name, v in zip(CHEXPERT_FINDINGS, r.labels.tolist())}
        out.append(knowledge_prompt(labels, sides=finding_sides(label_report(r.report)) if sides and r.report else None))
    return out


class ImageSet(torch.utils.data.Dataset):
    """Pixels of records, decoded on demand (``CXRDataset``) or kept in memory once decoded (small sets).

    Index it for ``{"pixel_values": (1, S, S) in [-1, 1], "labels": (14,) 1/0/-1/NaN}`` (a torch ``Dataset``), or
    take whole batches with :meth:`batch` and :meth:`labels`.
    """

    def __init__(self, records, image_size: int, in_memory: bool | None = None, skip_unreadable: bool = True):
        from diffcxr.data import CXRDataset

        self.records = list(records)
        self.dataset = CXRDataset(self.records, image_size, skip_unreadable=skip_unreadable)
        if in_memory is None:
            in_memory = len(self.records) * image_size * image_size * 4 < 2 * 1024**3
        self._memory: dict[int, torch.Tensor] | None = {} if in_memory else None

    def __len__(self) -> int:
        return len(self.records)

    def pixels(self, index: int) -> torch.Tensor:
        if self._memory is not None and index in self._memory:
            return self._memory[index]
        x = self.dataset[index]["pixel_values"]
        if self._memory is not None:
            self._memory[index] = x
        return x

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.pixels(index), "labels": torch.from_numpy(self.records[index].labels.copy())}

    def batch(self, indices) -> torch.Tensor:
        return torch.stack([self.pixels(i) for i in indices])

    def labels(self, indices) -> torch.Tensor:
        return torch.stack([torch.from_numpy(self.records[i].labels.copy()) for i in indices])

    def reports(self, indices) -> list[str]:
        """What the report encoder reads of each record's report: its FINDINGS and IMPRESSION when it has
        section headers, else the whole text (:func:`diffcxr.data.reports.report_text`, as in generation)."""
        from diffcxr.data.reports import report_text

        return [report_text(self.records[i].report or "")[0] for i in indices]


def collate_images(image_set: ImageSet, indices) -> torch.Tensor:
    return image_set.batch(indices)
