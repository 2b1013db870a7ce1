"""The downstream study: does "few real + synthetic" training data reach the mAUC of all real data?

For each fraction ``f`` of the real training split (nested subsets from one seeded permutation, so 1 % ⊂ 10 %
⊂ 100 %), train the CXR classifier (:func:`diffcxr.training.classifier.fit_classifier`, as the training stage does) on

- the real subset only, and
- the real subset plus ``N`` synthetic images (generated from training reports outside the smallest subset),

with the **same number of optimizer steps** for every run (small subsets are revisited more often), then
compute the per-finding AUROC and mAUC on the real test split (uncertain excluded, not mentioned = negative,
:mod:`diffcxr.metrics.auroc`). Labels of synthetic images are those of their conditioning report (sidecar).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from diffcxr.errors import DiffCXRError

__all__ = ["DownstreamConfig", "classifier_run", "nested_subsets", "synthetic_records", "run_downstream", "format_table"]


@dataclass
class DownstreamConfig:
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    size: int = 64
    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    channels: tuple[int, ...] = (16, 32, 64, 128)
    seed: int = 0
    uncertain: str = "exclude"  # evaluation policy
    missing: str = "negative"


def nested_subsets(n: int, fractions, seed: int = 0) -> dict[float, np.ndarray]:
    """Index sets of size ``max(1, round(f·n))`` that are prefixes of one seeded permutation (nested)."""
    order = np.random.default_rng(seed).permutation(n)
    out = {}
    for f in fractions:
        if not 0 < f <= 1:
            raise DiffCXRError(f"fractions must be in (0, 1], got {f}")
        out[f] = np.sort(order[: max(1, int(round(f * n)))])
    return out


def synthetic_records(folder, limit: int | None = None):
    """Generated PNGs + sidecars → :class:`~diffcxr.data.Record` list (labels of the conditioning report)."""
    from diffcxr.data.records import Record
    from diffcxr.evaluation.evaluate import read_generated

    items = read_generated(folder, limit, need_labels=True)
    records = [Record(id=g.id, image_path=g.path, report=g.report or "", labels=g.labels, split="synthetic",
                      labels_source=g.labels_source) for g in items if g.labels_source != "none"]
    if not records:
        raise DiffCXRError(f"no generated image in {folder} has a sidecar with labels or a report")
    return records


def format_table(result: dict) -> str:
    with_synth = any(r.get("mauc_with_synthetic") is not None for r in result["rows"])
    head = "| real fraction | real images | mAUC real only |"
    sep = "|---:|---:|---:|"
    if with_synth:
        head += " synthetic | mAUC real + synthetic |"
        sep += "---:|---:|"
    lines = [head, sep]
    for r in result["rows"]:
        line = f"| {r['fraction']:.0%} | {r['n_real']} | {r['mauc_real']:.3f} |"
        if with_synth:
            line += f" {r['n_synthetic']} | {r['mauc_with_synthetic']:.3f} |"
        lines.append(line)
    if result.get("synthetic_only") is not None:
        lines.append(f"\nsynthetic only ({result['n_synthetic']} images): mAUC {result['synthetic_only']:.3f}")
    return "\n".join(lines)


def classifier_run(cfg: DownstreamConfig):
    """The run config of every classifier of the study: ``cfg.steps`` AdamW steps (weight decay 1e-4) at
    ``cfg.lr`` with a cosine schedule, no EMA, fp32, U-ones / not mentioned = negative in training."""
    from diffcxr.training.config import load_run_config

    return load_run_config({"name": "downstream", "model": "tiny", "seed": cfg.seed, "mixed_precision": "no",
                            "classifier": {"max_steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                                           "channels": list(cfg.channels), "weight_decay": 1e-4,
                                           "lr_schedule": "cosine", "ema_decay": 0.0, "checkpoint_every": 0,
                                           "keep_last": 1, "uncertain": "positive", "missing": "negative"}})


def run_downstream(train_records, test_records, cfg: DownstreamConfig, synthetic=None, *, out_dir=None,
                   synthetic_only: bool = True, log=print) -> dict:
    """Run the study; returns ``{"config", "rows": [...], "per_finding": {...}}`` (also written to ``out_dir``)."""
    import tempfile

    from diffcxr.metrics.auroc import per_finding_auroc
    from diffcxr.models.cxr_classifier import predict_scores
    from diffcxr.training.classifier import fit_classifier
    from diffcxr.training.data import ImageSet

    if not train_records or not test_records:
        raise DiffCXRError(f"need real training and test images, got {len(train_records)} train and "
                           f"{len(test_records)} test")
    t0 = time.perf_counter()
    log(f"loading {len(train_records)} train + {len(test_records)} test real images at {cfg.size}px")
    train_set, test_set = (ImageSet(r, cfg.size, in_memory=True, skip_unreadable=False)
                           for r in (train_records, test_records))
    synth_set = ImageSet(synthetic, cfg.size, in_memory=True, skip_unreadable=False) if synthetic else None
    subsets = nested_subsets(len(train_set), cfg.fractions, cfg.seed)
    run = classifier_run(cfg)
    scratch = tempfile.TemporaryDirectory(prefix="diffcxr-downstream-")

    def fit_and_score(dataset, name):
        t = time.perf_counter()
        folder = Path(out_dir) / "classifiers" / name if out_dir is not None else Path(scratch.name) / name
        model = fit_classifier(run, dataset, folder, image_size=cfg.size, progress=False)
        scores, labels = predict_scores(model, test_set)
        res = per_finding_auroc(scores, labels, uncertain=cfg.uncertain, missing=cfg.missing)
        log(f"  {name}: {len(dataset)} images, mAUC {res.mauc:.3f} ({time.perf_counter() - t:.0f}s)")
        return res

    rows, per_finding = [], {}
    for f in cfg.fractions:
        real = torch.utils.data.Subset(train_set, subsets[f].tolist())
        name = f"real{f:g}"
        res = fit_and_score(real, name)
        row = {"fraction": f, "n_real": len(real), "mauc_real": res.mauc, "n_synthetic": 0, "mauc_with_synthetic": None}
        per_finding[name] = res.to_dict()
        if synth_set is not None:
            name_s = f"real{f:g}+synthetic"
            res_s = fit_and_score(torch.utils.data.ConcatDataset([real, synth_set]), name_s)
            row.update(n_synthetic=len(synth_set), mauc_with_synthetic=res_s.mauc)
            per_finding[name_s] = res_s.to_dict()
        rows.append(row)
    result = {"config": asdict(cfg), "n_train_real": len(train_set), "n_test": len(test_set),
              "n_synthetic": len(synth_set) if synth_set is not None else 0, "rows": rows,
              "synthetic_only": None, "per_finding": per_finding, "seconds": None}
    if synth_set is not None and synthetic_only:
        res = fit_and_score(synth_set, "synthetic_only")
        result["synthetic_only"] = res.mauc
        per_finding["synthetic_only"] = res.to_dict()
    result["seconds"] = round(time.perf_counter() - t0, 1)
    scratch.cleanup()
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "downstream.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        (out / "downstream.md").write_text(
            "# Downstream: classifier mAUC on the real test split\n\n"
            f"{result['n_train_real']} real training images, {result['n_test']} real test images, "
            f"{cfg.steps} steps per run at {cfg.size}px (seed {cfg.seed}); uncertain labels {cfg.uncertain}, "
            f"not mentioned = {cfg.missing}.\n\n" + format_table(result) + "\n", encoding="utf-8")
    return result
