"""AVA-TLS stage: the vision-aware report encoder (docs/report-adherence.md).

Report encoder (BERT-style text tower, 256-token left-truncated context) + ``TokenSqueeze`` (257 → 78 tokens)
+ a small image tower. Loss = symmetric CLIP InfoNCE (τ = ``temperature``, 0.07) between the squeezed global
report token (token 0) and the paired image's embedding, + ``local_loss_weight`` × the vision-aware local loss
on the 77 condition tokens (:class:`~diffcxr.models.local_alignment.LocalAlignment`: per-sample cross-attention
with the image tower's patch tokens, local InfoNCE + SimSiam), which is what trains the rows of the squeeze
that make the diffusion condition. ``local_loss_weight: 0`` with ``report_encoder.squeeze_init: random`` is the
squeeze as the authors released it (token 0 trained only). ``side_swap_negatives: true`` adds every batch report
that names a side, with "left" and "right" swapped, as a hard negative of both contrastive terms: the image
must rank its own report above its mirror-worded twin (laterality, docs/report-adherence.md).

Param groups: the text tower at ``lr`` when it is pretrained (1e-5 in the paper, cosine to ``min_lr``),
``head_lr`` for the parts trained from scratch (squeeze, image tower, local head, and a from-scratch text tower).
Saves ``<out>/vlm/report_encoder`` and ``<out>/vlm/image_tower``; afterwards the encoder + squeeze is frozen for
the diffusion stages.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from diffcxr.training.session import Session, stage_complete
from diffcxr.training.config import RunConfig
from diffcxr.training.data import ImageSet

__all__ = ["train_vlm", "VLMObjective", "build_report_encoder"]


class VLMObjective(nn.Module):
    """(tokens, images) → global InfoNCE (token 0 vs image embedding) + ``local_weight`` × local alignment."""

    def __init__(self, encoder, image_tower, temperature: float, local_alignment: nn.Module | None = None,
                 local_weight: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.image_tower = image_tower
        self.temperature = temperature
        self.local_alignment = local_alignment
        self.local_weight = local_weight if local_alignment is not None else 0.0

    def forward(self, tokens: dict, pixels: torch.Tensor, swapped_tokens: dict | None = None,
                swapped_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``swapped_tokens``: the same reports tokenized with left and right swapped, ``swapped_mask`` (B,) bool
        the reports the swap changed; those twins are hard negatives of both contrastive terms."""
        from diffcxr.models.report_encoder import clip_loss

        text = self.encoder(**tokens)
        twin = negatives = None
        if swapped_tokens is not None and swapped_mask is not None and bool(swapped_mask.any()):
            swapped_mask = swapped_mask.to(text.global_embeds.device).bool()
            twin = self.encoder(**swapped_tokens)
            negatives = twin.global_embeds[swapped_mask].float()
        if not self.local_weight:
            return clip_loss(text.global_embeds.float(), self.image_tower(pixels).float(), self.temperature, negatives)
        image, patches = self.image_tower(pixels, return_patch_tokens=True)
        loss = clip_loss(text.global_embeds.float(), image.float(), self.temperature, negatives)
        local = self.local_alignment(text.condition_embeds, patches,
                                     twin.condition_embeds if twin is not None else None, swapped_mask)
        return loss + self.local_weight * local.total


def build_report_encoder(mcfg: dict):
    """The (untrained-squeeze) report encoder named by a model config: tiny-bert, minilm or a hub id/folder."""
    from diffcxr.models.report_encoder import ReportEncoder

    return ReportEncoder.from_model_config(mcfg)


def train_vlm(run: RunConfig, data_spec: str, out_root, *, manifest: str | None = None, resume: bool = False,
              mixed_precision: str | None = None, progress: bool = True, step_callback=None) -> Path:
    from diffcxr.evaluation.laterality import swap_sides
    from diffcxr.models.local_alignment import LocalAlignment
    from diffcxr.models.report_encoder import ImageTower

    out = Path(out_root) / "vlm"
    mcfg, cfg = run.model_config(), run.vlm
    if resume and stage_complete(out, cfg.max_steps):
        print(f"[vlm] already complete in {out}", flush=True)
        return out

    # -- set-up ----------------------------------------------------------------------------------------------------
    session = Session(run, "vlm", out, resume=resume, mixed_precision=mixed_precision, progress=progress,
                      step_callback=step_callback)
    acc = session.accelerator
    train_records, holdout_records = session.stage_records(data_spec, manifest)
    images = ImageSet(train_records, mcfg["image_size"], skip_unreadable=run.data.skip_unreadable)
    torch.manual_seed(run.seed)
    encoder = build_report_encoder(mcfg)
    tower = ImageTower(in_channels=1, channels=tuple(mcfg["image_tower"]["channels"]), embed_dim=encoder.hidden_size)
    pretrained_text = mcfg["report_encoder"]["text_encoder"] != "tiny-bert"
    if not cfg.train_text_encoder:
        encoder.text_encoder.requires_grad_(False)
    local = LocalAlignment(encoder.hidden_size, cfg.temperature) if cfg.local_loss_weight else None
    modules = {"encoder": encoder, "image_tower": tower, **({"local_alignment": local} if local else {})}
    heads = [p for name, m in modules.items() if name != "encoder" for p in m.parameters()]
    groups = [{"params": list(encoder.squeeze.parameters()) + heads, "lr": cfg.head_lr}]
    if cfg.train_text_encoder:
        groups.append({"params": list(encoder.text_encoder.parameters()),
                       "lr": cfg.lr if pretrained_text else cfg.head_lr})
    objective = VLMObjective(encoder, tower, cfg.temperature, local, cfg.local_loss_weight)
    optimizer = session.optimizer(groups)
    scheduler = session.lr_scheduler(optimizer)
    objective, optimizer = acc.prepare(objective, optimizer)
    ema = session.ema(objective)
    state = session.restore(modules, optimizer, scheduler, ema)
    batches = session.batches(len(images), state)

    # -- the loop --------------------------------------------------------------------------------------------------
    session.start_progress(state)
    while state.step < cfg.max_steps:
        objective.train()
        if not cfg.train_text_encoder:
            encoder.text_encoder.eval()
        for micro in range(cfg.grad_accum):
            indices = next(batches)
            reports = images.reports(indices)
            tokens = encoder.tokenize(reports)
            pixels = images.batch(indices).to(session.device)
            swapped_tokens = swapped_mask = None
            if cfg.side_swap_negatives:
                swapped = [swap_sides(r) for r in reports]
                swapped_mask = torch.tensor([a != b for a, b in zip(swapped, reports)])
                swapped_tokens = encoder.tokenize(swapped) if swapped_mask.any() else None
            loss = objective(tokens, pixels, swapped_tokens, swapped_mask)
            session.check_finite(loss, state)
            session.backward(loss, objective, micro)
        grad_norm = session.optimizer_step(objective, optimizer, scheduler, ema, state)
        session.log(state, grad_norm)
        session.after_step(state)
    session.finish(state)

    # -- export --------------------------------------------------------------------------------------------------
    info = {}
    if session.is_main:
        with session.ema_weights(objective):
            encoder.eval()
            tower.eval()
            encoder.save_pretrained(out / "report_encoder")
            tower.save_pretrained(out / "image_tower", safe_serialization=True)
            info = retrieval_accuracy(encoder, tower, ImageSet(holdout_records[:64], mcfg["image_size"]))
        (out / "metrics.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        print(f"[vlm] hold-out report→image top-1 {info.get('top1', float('nan')):.3f} "
              f"(chance {info.get('chance', float('nan')):.3f}); saved {out / 'report_encoder'}", flush=True)
    session.mark_complete(info)
    return out


@torch.no_grad()
def retrieval_accuracy(encoder, tower, images: ImageSet) -> dict:
    """Top-1 report→image retrieval among ``len(images)`` hold-out pairs (chance = 1/n)."""
    import torch.nn.functional as F

    n = len(images)
    if n < 2:
        return {}
    text = F.normalize(encoder.encode(images.reports(range(n))).global_embeds.float(), dim=-1)
    image = F.normalize(tower(images.batch(range(n)).to(tower.device)).float(), dim=-1)
    top1 = (text @ image.T).argmax(dim=1).cpu() == torch.arange(n)
    return {"top1": float(top1.float().mean()), "chance": 1.0 / n, "n": n}
