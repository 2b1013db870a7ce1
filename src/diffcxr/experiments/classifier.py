"""A small CXR classifier over the 14 CheXpert findings: the mAUC yardstick and the ``cxr`` feature network.

The training engineer's ``diffcxr train classifier`` (``src/diffcxr/training/classifier.py``) is the main
trainer; this module is the self-contained fallback used by ``diffcxr downstream`` and the evaluation
benchmarks: one readable function, :func:`train_classifier`, on any dataset whose items are dicts with
``pixel_values`` (1×S×S in [-1, 1]) and ``labels`` (14 floats, 1/0/-1/NaN).

Label policy in training (:func:`diffcxr.metrics.auroc.map_labels`): uncertain → ``uncertain`` (default
positive, "U-Ones"), not mentioned → ``missing`` (default negative); labels mapped to "exclude" are masked out
of the BCE loss.

Saved as ``DIR/config.json`` + ``DIR/model.safetensors`` (no pickle).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from diffcxr.errors import DiffCXRError
from diffcxr.findings import CHEXPERT_FINDINGS

logger = logging.getLogger(__name__)

__all__ = ["SmallCXRClassifier", "ClassifierTrainConfig", "train_classifier", "predict_scores",
           "save_classifier", "load_classifier"]

CLASS_NAME = "SmallCXRClassifier"


class SmallCXRClassifier(nn.Module):
    """Conv stages (3×3 conv stride 2 → BN → ReLU → 3×3 conv → BN → ReLU) → global average pool → linear.

    ``features(x)`` is the pooled penultimate vector ``(B, channels[-1])``; ``forward(x)`` the logits ``(B, F)``.
    Input: ``(B, 1, S, S)`` in ``[-1, 1]``, any ``S`` ≥ ``2**len(channels)``.
    """

    def __init__(self, channels=(32, 64, 128, 256), num_findings: int = len(CHEXPERT_FINDINGS),
                 image_size: int = 64, findings=CHEXPERT_FINDINGS) -> None:
        super().__init__()
        self.config = {"channels": list(channels), "num_findings": int(num_findings), "image_size": int(image_size),
                       "findings": list(findings), "_class_name": CLASS_NAME}
        layers, c_in = [], 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_findings)
        self.feature_dim = c_in

    @property
    def image_size(self) -> int:
        return self.config["image_size"]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class ClassifierTrainConfig:
    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 128, 256)
    epochs: int = 10
    max_steps: int = 0  # 0 = no cap; else stop after this many optimizer steps
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    uncertain: str = "positive"
    missing: str = "negative"
    augment: bool = True  # random shifts of up to 1/16 of the side (no flips: left/right matters in CXR)
    seed: int = 0
    threads: int = 0  # torch threads (0 = leave as is)
    extra: dict = field(default_factory=dict)


def _targets(labels: torch.Tensor, cfg: ClassifierTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    from diffcxr.metrics.auroc import map_labels

    mapped = torch.from_numpy(map_labels(labels.numpy(), cfg.uncertain, cfg.missing)).float()
    mask = ~torch.isnan(mapped)
    return torch.nan_to_num(mapped, 0.0), mask.float()


def _shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    s = x.shape[-1]
    m = max(1, s // 16)
    padded = nn.functional.pad(x, (m, m, m, m), mode="replicate")
    out = torch.empty_like(x)
    offsets = torch.randint(0, 2 * m + 1, (x.shape[0], 2), generator=generator)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy:dy + s, dx:dx + s]
    return out


def train_classifier(train_set, cfg: ClassifierTrainConfig | None = None, *, progress: bool = False,
                     log=None) -> SmallCXRClassifier:
    """Train :class:`SmallCXRClassifier` on ``train_set`` (items: ``pixel_values``, ``labels``) with masked BCE.

    AdamW, cosine learning rate over the run, seeded shuffling/initialisation (deterministic on CPU).
    """
    cfg = cfg or ClassifierTrainConfig()
    if len(train_set) == 0:
        raise DiffCXRError("the classifier training set is empty")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = SmallCXRClassifier(cfg.channels, image_size=cfg.image_size)
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                                         drop_last=len(train_set) > cfg.batch_size, collate_fn=_collate)
    steps = cfg.epochs * len(loader)
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, steps) / max(steps, 1))))
    model.train()
    step, t0 = 0, time.perf_counter()
    while step < steps:
        for batch in loader:
            x = batch["pixel_values"].float()
            if cfg.augment:
                x = _shift(x, gen)
            target, mask = _targets(batch["labels"], cfg)
            logits = model(x)
            loss = (nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none") * mask).sum()
            loss = loss / mask.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if log and (step % 50 == 0 or step == steps):
                log(f"classifier step {step}/{steps} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f}s)")
            if step >= steps:
                break
    model.eval()
    model.train_config = asdict(cfg)
    return model


def _collate(items: list[dict]) -> dict:
    return {"pixel_values": torch.stack([it["pixel_values"] for it in items]),
            "labels": torch.stack([torch.as_tensor(it["labels"]).float() for it in items])}


@torch.no_grad()
def predict_scores(model: nn.Module, dataset, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid scores ``(N, F)`` and the dataset's labels ``(N, F)`` (in dataset order)."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate)
    scores, labels = [], []
    for batch in loader:
        scores.append(torch.sigmoid(model(batch["pixel_values"].float())).numpy())
        labels.append(batch["labels"].numpy())
    return np.concatenate(scores), np.concatenate(labels)


def save_classifier(model: SmallCXRClassifier, directory) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = dict(model.config)
    if getattr(model, "train_config", None):
        config["train_config"] = model.train_config
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "model.safetensors"))
    return directory


def load_classifier(directory) -> nn.Module:
    """Load a classifier folder: :class:`SmallCXRClassifier` (ours) or ``CXRClassifier`` (``diffcxr train classifier``;
    its stage folder ``OUT/classifier`` or the model folder ``OUT/classifier/classifier``)."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not directory.is_dir():
        raise DiffCXRError(f"classifier folder {directory} not found")
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if config.get("_class_name") == CLASS_NAME:
        from safetensors.torch import load_file

        model = SmallCXRClassifier(config["channels"], config["num_findings"], config["image_size"],
                                   config.get("findings", CHEXPERT_FINDINGS))
        weights = directory / "model.safetensors"
        if not weights.is_file():
            raise DiffCXRError(f"{weights} not found")
        model.load_state_dict(load_file(str(weights)))
        return model.eval()
    if not config and (directory / "classifier" / "config.json").is_file():  # a `diffcxr train classifier` stage folder
        directory = directory / "classifier"
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    if config.get("_class_name") == "CXRClassifier":  # the training engineer's diffusers-style model
        from diffcxr.training.classifier import CXRClassifier

        return CXRClassifier.from_pretrained(directory).eval()
    raise DiffCXRError(f"{directory} is not a classifier folder this version can read (expected config.json "
                       f"with _class_name {CLASS_NAME!r} and model.safetensors)")
