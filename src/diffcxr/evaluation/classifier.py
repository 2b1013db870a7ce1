"""In-memory training of the CXR classifier for ``diffcxr downstream`` and the evaluation benchmarks.

``diffcxr train classifier`` (:mod:`diffcxr.training.classifier`) trains the same
:class:`~diffcxr.models.cxr_classifier.CXRClassifier` from a dataset spec with checkpoints and accelerate; this
module is the compact variant the downstream study runs many times: one function, :func:`train_classifier`, on
any dataset whose items are dicts with ``pixel_values`` (1×S×S in [-1, 1]) and ``labels`` (14 floats, 1/0/-1/NaN).

Label policy in training (:func:`diffcxr.findings.map_labels`): uncertain → ``uncertain`` (default
positive, "U-Ones"), not mentioned → ``missing`` (default negative); labels mapped to "exclude" are masked out
of the BCE loss. Same loss (:func:`~diffcxr.training.classifier.masked_bce`) and augmentation
(:func:`~diffcxr.training.classifier.augment`) as the training stage.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from diffcxr.errors import DiffCXRError
from diffcxr.findings import CHEXPERT_FINDINGS
from diffcxr.models.cxr_classifier import CXRClassifier
from diffcxr.training.classifier import augment, masked_bce, policy_targets

__all__ = ["ClassifierTrainConfig", "train_classifier", "predict_scores"]


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
    augment: bool = True
    seed: int = 0
    threads: int = 0  # torch threads (0 = leave as is)
    device: str = "cpu"  # where to train ("cuda" on a GPU); the returned model stays there


def train_classifier(train_set, cfg: ClassifierTrainConfig | None = None, *, log=None) -> CXRClassifier:
    """Train a :class:`CXRClassifier` on ``train_set`` with masked BCE; returns it in eval mode.

    AdamW, cosine learning rate over the run, seeded shuffling/initialisation/augmentation (deterministic on CPU).
    """
    cfg = cfg or ClassifierTrainConfig()
    if len(train_set) == 0:
        raise DiffCXRError("the classifier training set is empty")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = CXRClassifier(channels=tuple(cfg.channels), image_size=cfg.image_size, label_names=CHEXPERT_FINDINGS)
    model.to(cfg.device)
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
            x = batch["pixel_values"].float().to(cfg.device)
            if cfg.augment:
                x = augment(x, gen)
            loss = masked_bce(model(x), policy_targets(batch["labels"], cfg.uncertain, cfg.missing).to(cfg.device))
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
def predict_scores(model: torch.nn.Module, dataset, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid scores ``(N, F)`` and the dataset's labels ``(N, F)`` (in dataset order), on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate)
    scores, labels = [], []
    for batch in loader:
        scores.append(torch.sigmoid(model(batch["pixel_values"].float().to(device))).cpu().numpy())
        labels.append(batch["labels"].numpy())
    return np.concatenate(scores), np.concatenate(labels)
