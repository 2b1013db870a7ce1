"""Stage 2: the disease-knowledge adapter on the frozen base U-ViT.

The base (``<out>/base/uvit``) is loaded and frozen; ``DiseaseKnowledgeAdapter.from_uvit`` copies its input half
(zero-initialised residual projections, so training starts exactly at the base model). Only the adapter
trains, with the base recipe: ε-MSE, same β schedule, AdamW, warm-up then constant, EMA, and condition dropout
replacing the report AND the knowledge tokens together by the empty-prompt embedding. The knowledge tokens
encode the canonical prompt ("There is pleural effusion.", "There is right pleural effusion." with
``model.adapter.knowledge_sides``) made from the record's labels. Saves the EMA
weights to ``<out>/adapter/adapter``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from diffcxr.errors import DiffCXRError
from diffcxr.models.diffusion import epsilon_loss, noise_latents, training_scheduler
from diffcxr.training.base import drop_conditions, write_sample_grid
from diffcxr.training.session import Session, stage_complete
from diffcxr.training.config import RunConfig

__all__ = ["train_adapter", "AdapterObjective", "load_base"]


class AdapterObjective(nn.Module):
    """Frozen base + trainable adapter → ε prediction (one module, so DDP sees the adapter's parameters)."""

    def __init__(self, base, adapter):
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, noisy, timesteps, report, knowledge):
        from diffcxr.models.knowledge_adapter import predict_noise

        return predict_noise(self.base, noisy, timesteps, report, knowledge_adapter=self.adapter,
                             knowledge_hidden_states=knowledge)


def load_base(out_root):
    from diffcxr.models.uvit import UViT

    path = Path(out_root) / "base" / "uvit"
    if not (path / "config.json").is_file():
        raise DiffCXRError(f"no trained base U-ViT in {path}: run `diffcxr train base` (or `all`) with this "
                           "--output-dir first")
    return UViT.from_pretrained(path, use_safetensors=True)


def train_adapter(run: RunConfig, data_spec: str, out_root, *, manifest: str | None = None, resume: bool = False,
                  mixed_precision: str | None = None, progress: bool = True, step_callback=None) -> Path | None:
    from diffcxr.models.knowledge_adapter import DiseaseKnowledgeAdapter
    from diffcxr.training.cache import prepare_latent_cache

    out = Path(out_root) / "adapter"
    mcfg, cfg = run.model_config(), run.adapter
    if not mcfg["adapter"]["enabled"]:
        print("[adapter] disabled in the model config (adapter.enabled: false): nothing to train", flush=True)
        return None
    if resume and stage_complete(out, cfg.max_steps):
        print(f"[adapter] already complete in {out}", flush=True)
        return out

    # -- set-up ----------------------------------------------------------------------------------------------------
    session = Session(run, "adapter", out, resume=resume, mixed_precision=mixed_precision, progress=progress,
                      step_callback=step_callback)
    acc = session.accelerator
    train_records, holdout_records = session.stage_records(data_spec, manifest)
    cache = prepare_latent_cache(run, session, train_records, out_root, progress=progress)
    empty = cache.empty.to(session.device)
    noise_schedule = training_scheduler(cfg)
    base = load_base(out_root)
    base.requires_grad_(False)
    base.eval()
    torch.manual_seed(run.seed)
    adapter = DiseaseKnowledgeAdapter.from_uvit(base, knowledge_sides=mcfg["adapter"]["knowledge_sides"])
    objective = AdapterObjective(base, adapter)
    optimizer = session.optimizer(adapter.parameters())
    scheduler = session.lr_scheduler(optimizer)
    objective, optimizer = acc.prepare(objective, optimizer)
    ema = session.ema(adapter)
    state = session.restore({"adapter": adapter}, optimizer, scheduler, ema)
    batches = session.batches(len(cache), state)

    # -- the loop --------------------------------------------------------------------------------------------------
    session.start_progress(state)
    while state.step < cfg.max_steps:
        adapter.train()
        base.eval()
        for micro in range(cfg.grad_accum):
            latents, report, knowledge = (t.to(session.device) for t in cache.get(next(batches)))
            g = session.generator(state, micro)
            noisy, noise, timesteps = noise_latents(noise_schedule, latents, g)
            drop = (torch.rand(latents.shape[0], generator=g) < cfg.cond_drop_prob).to(session.device)
            report, knowledge = drop_conditions(drop, empty, report, knowledge)
            loss = epsilon_loss(objective(noisy, timesteps, report, knowledge), noise, timesteps=timesteps,
                                scheduler=noise_schedule, snr_gamma=cfg.snr_gamma)
            session.check_finite(loss, state)
            session.backward(loss, objective, micro)
        grad_norm = session.optimizer_step(objective, optimizer, scheduler, ema, state, params=adapter.parameters())
        session.log(state, grad_norm)
        if run.sample.every and state.step % run.sample.every == 0 and state.step < cfg.max_steps and session.is_main:
            with session.ema_weights(adapter):
                write_sample_grid(run, out_root, base, holdout_records, out / "samples" / f"step-{state.step:08d}.png",
                                  adapter=adapter.eval())
        session.after_step(state)
    session.finish(state)

    # -- export (EMA weights) --------------------------------------------------------------------------------------
    if session.is_main:
        with session.ema_weights(adapter):
            adapter.save_pretrained(out / "adapter", safe_serialization=True)
            write_sample_grid(run, out_root, base, holdout_records, out / "samples" / "final.png", adapter=adapter.eval())
        print(f"[adapter] saved {out / 'adapter'}", flush=True)
    session.mark_complete()
    return out
