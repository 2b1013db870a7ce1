"""CXR classifier stage: a small CNN over the 14 CheXpert findings, trained on real images.

Evaluation uses it to score generated images (mAUC against the conditioning report's labels) and as an offline
feature extractor (``features()``: the pooled penultimate activations) for FID-style statistics, since no
pretrained CXR/Inception weights can be downloaded here. BCE under the project's one label policy
(:func:`diffcxr.findings.map_labels`) with CheXpert's usual settings: not mentioned (NaN) counts as negative
(``missing: exclude`` masks it out instead: then a finding reports never negate, such as support devices, has
only positive targets and is not learned), uncertain (-1) as positive (``uncertain: positive``, "U-ones").
Light augmentation: random shifts of up to 1/16 of the image and small
brightness/contrast changes, drawn from the step's seeded generator. Saves ``<out>/classifier/classifier``
(``CXRClassifier.from_pretrained``) and hold-out AUROCs in ``metrics.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffcxr.findings import CHEXPERT_FINDINGS, map_labels
from diffcxr.models.cxr_classifier import CXRClassifier, load_classifier
from diffcxr.training.session import Session, stage_complete
from diffcxr.training.config import RunConfig
from diffcxr.training.data import ImageSet, select_records

__all__ = ["train_classifier", "fit_classifier", "masked_bce", "policy_targets", "augment", "evaluate_auroc"]


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the (sample, finding) pairs whose target is not NaN; ``targets`` are 1/0/NaN, i.e. labels
    after the label policy (:func:`diffcxr.findings.map_labels`)."""
    mask = ~torch.isnan(targets)
    loss = F.binary_cross_entropy_with_logits(logits.float(), torch.nan_to_num(targets.float(), nan=0.0),
                                              reduction="none")
    return (loss * mask).sum() / mask.sum().clamp(min=1)


def policy_targets(labels: torch.Tensor, uncertain: str, missing: str) -> torch.Tensor:
    """Labels ``(B, 14)`` (1/0/-1/NaN) → float targets 1/0/NaN under the label policy, on the labels' device."""
    return torch.from_numpy(map_labels(labels.cpu().numpy(), uncertain, missing)).float().to(labels.device)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Seeded random shifts (≤ 1/16 of the side, edge-replicated; no flips: left/right matters) and ±5 %
    gain/bias jitter of ``(B, C, H, W)`` images in [-1, 1]."""
    b, _, h, w = x.shape
    m = max(1, h // 16)
    pad = F.pad(x, (m, m, m, m), mode="replicate")
    dx = torch.randint(0, 2 * m + 1, (b,), generator=g).tolist()
    dy = torch.randint(0, 2 * m + 1, (b,), generator=g).tolist()
    out = torch.stack([pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    gain = 1 + 0.1 * (torch.rand(b, 1, 1, 1, generator=g) - 0.5)
    bias = 0.1 * (torch.rand(b, 1, 1, 1, generator=g) - 0.5)
    return (out * gain.to(x.device) + bias.to(x.device)).clamp(-1, 1)


def train_classifier(run: RunConfig, data_spec: str, out_root, *, manifest: str | None = None, resume: bool = False,
                     mixed_precision: str | None = None, progress: bool = True, step_callback=None) -> Path:
    """The ``classifier`` stage: the records of ``data_spec`` (and ``manifest``) → :func:`fit_classifier`."""
    out = Path(out_root) / "classifier"
    if resume and stage_complete(out, run.classifier.max_steps):
        print(f"[classifier] already complete in {out}", flush=True)
        return out
    train_records, holdout_records = select_records(data_spec, run.data, manifest)
    size = run.model_config()["image_size"]
    fit_classifier(run, ImageSet(train_records, size, skip_unreadable=run.data.skip_unreadable), out,
                   holdout=ImageSet(holdout_records, size), image_size=size, resume=resume,
                   mixed_precision=mixed_precision, progress=progress, step_callback=step_callback,
                   run_info={"data": data_spec, "manifest": manifest, "train_records": len(train_records)})
    return out


def fit_classifier(run: RunConfig, train_set, out_dir, *, image_size: int, holdout=None, run_info: dict | None = None,
                   resume: bool = False, mixed_precision: str | None = None, progress: bool = True,
                   step_callback=None) -> CXRClassifier | None:
    """Train a :class:`CXRClassifier` with ``run.classifier``'s settings on ``train_set`` — any dataset of
    ``{"pixel_values": (1, S, S) in [-1, 1], "labels": (14,) 1/0/-1/NaN}`` items (an :class:`ImageSet`, a
    ``Subset`` or ``ConcatDataset`` of them) — in a resumable :class:`Session` writing to ``out_dir``.

    Saves ``out_dir/classifier`` (EMA weights when ``ema_decay`` > 0) and, with ``holdout``, its per-finding
    AUROC in ``out_dir/metrics.json``. Returns the saved classifier in eval mode (on the main process; None on
    the others). The one trainer behind ``diffcxr train classifier``, the downstream study and the benchmarks.
    """
    out, cfg = Path(out_dir), run.classifier

    # -- set-up ----------------------------------------------------------------------------------------------------
    session = Session(run, "classifier", out, resume=resume, mixed_precision=mixed_precision, progress=progress,
                      step_callback=step_callback)
    acc = session.accelerator
    if run_info is not None:
        session.save_run_info(run_info)
    torch.manual_seed(run.seed)
    model = CXRClassifier(channels=tuple(cfg.channels), image_size=image_size, label_names=tuple(CHEXPERT_FINDINGS))
    optimizer = session.optimizer(model.parameters())
    scheduler = session.lr_scheduler(optimizer)
    prepared, optimizer = acc.prepare(model, optimizer)
    ema = session.ema(prepared)
    state = session.restore({"classifier": prepared}, optimizer, scheduler, ema)
    batches = session.batches(len(train_set), state)

    # -- the loop --------------------------------------------------------------------------------------------------
    session.start_progress(state)
    while state.step < cfg.max_steps:
        prepared.train()
        for micro in range(cfg.grad_accum):
            items = [train_set[i] for i in next(batches)]
            pixels = torch.stack([it["pixel_values"] for it in items]).to(session.device)
            labels = torch.stack([torch.as_tensor(it["labels"]).float() for it in items]).to(session.device)
            if cfg.augment:
                pixels = augment(pixels, session.generator(state, micro))
            loss = masked_bce(prepared(pixels), policy_targets(labels, cfg.uncertain, cfg.missing))
            session.check_finite(loss, state)
            session.backward(loss, prepared, micro)
        grad_norm = session.optimizer_step(prepared, optimizer, scheduler, ema, state)
        session.log(state, grad_norm)
        session.after_step(state)
    session.finish(state)

    # -- export ----------------------------------------------------------------------------------------------------
    metrics, trained = {}, None
    if session.is_main:
        with session.ema_weights(prepared):
            model.eval()
            model.save_pretrained(out / "classifier", safe_serialization=True)
            if holdout is not None:
                metrics = evaluate_auroc(model, holdout, cfg.uncertain, cfg.missing)
        if holdout is not None:
            (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
            print(f"[classifier] hold-out mAUC {metrics.get('mauc', float('nan')):.3f} over "
                  f"{len(metrics.get('auroc', {}))} findings; saved {out / 'classifier'}", flush=True)
        trained = load_classifier(out / "classifier")
    session.mark_complete({"mauc": metrics.get("mauc")})
    return trained


@torch.no_grad()
def evaluate_auroc(model: CXRClassifier, images: ImageSet, uncertain: str = "positive", missing: str = "negative",
                   batch_size: int = 64) -> dict:
    """Per-finding AUROC on labelled hold-out images (findings with both classes present) and their mean,
    labels read with the training label policy."""
    from diffcxr.metrics import per_finding_auroc
    from diffcxr.models.cxr_classifier import classifier_scores

    if len(images) == 0:
        return {}
    batches = [list(range(s, min(s + batch_size, len(images)))) for s in range(0, len(images), batch_size)]
    scores = np.concatenate([classifier_scores(model, images.batch(idx).to(model.device)) for idx in batches])
    labels = torch.cat([images.labels(idx) for idx in batches]).numpy()
    result = per_finding_auroc(scores, labels, model.config.label_names or CHEXPERT_FINDINGS, uncertain=uncertain,
                               missing=missing)
    return {"auroc": result.per_finding, "mauc": result.mauc, "n": int(len(images))}
