"""Stage 1: the base text-to-image U-ViT on cached latents and report tokens (the authors' training recipe).

ε-prediction MSE; ``DDPMScheduler`` with scaled-linear β 0.00085–0.012 over 1000 steps; AdamW lr 2e-4,
weight decay 0.03, betas (0.9, 0.9); linear warm-up then constant; EMA; with probability ``cond_drop_prob``
(0.1) the report AND knowledge conditions are replaced by the empty-prompt embedding (classifier-free
guidance). Latents and report embeddings are precomputed once (:mod:`diffcxr.training.cache`). Saves the EMA
weights to ``<out>/base/uvit`` and a sample grid for hold-out reports.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffcxr.training.session import Session, stage_complete
from diffcxr.training.config import RunConfig

__all__ = ["train_base", "drop_conditions", "write_sample_grid"]


def drop_conditions(drop: torch.Tensor, empty: torch.Tensor, *conditions: torch.Tensor) -> list[torch.Tensor]:
    """Replace the rows where ``drop`` is True by the empty-prompt embedding, in every condition together."""
    mask = drop.view(-1, 1, 1)
    return [torch.where(mask, empty.to(c.dtype).expand_as(c), c) for c in conditions]


def train_base(run: RunConfig, data_spec: str, out_root, *, manifest: str | None = None, resume: bool = False,
               mixed_precision: str | None = None, progress: bool = True, step_callback=None) -> Path:
    from diffcxr.models.configs import uvit_kwargs
    from diffcxr.models.diffusion import epsilon_loss, noise_latents, training_scheduler
    from diffcxr.models.uvit import UViT
    from diffcxr.training.cache import prepare_latent_cache

    out = Path(out_root) / "base"
    mcfg, cfg = run.model_config(), run.base
    if resume and stage_complete(out, cfg.max_steps):
        print(f"[base] already complete in {out}", flush=True)
        return out

    # -- set-up ----------------------------------------------------------------------------------------------------
    session = Session(run, "base", out, resume=resume, mixed_precision=mixed_precision, progress=progress,
                      step_callback=step_callback)
    acc = session.accelerator
    train_records, holdout_records = session.stage_records(data_spec, manifest)
    cache = prepare_latent_cache(run, session, train_records, out_root, progress=progress)
    empty = cache.empty.to(session.device)
    noise_schedule = training_scheduler(cfg)
    torch.manual_seed(run.seed)
    uvit = UViT(**uvit_kwargs(mcfg))
    optimizer = session.optimizer(uvit.parameters())
    scheduler = session.lr_scheduler(optimizer)
    model, optimizer = acc.prepare(uvit, optimizer)
    ema = session.ema(model)
    state = session.restore({"uvit": model}, optimizer, scheduler, ema)
    batches = session.batches(len(cache), state)

    # -- the loop --------------------------------------------------------------------------------------------------
    session.start_progress(state)
    while state.step < cfg.max_steps:
        model.train()
        for micro in range(cfg.grad_accum):
            latents, report, _ = (t.to(session.device) for t in cache.get(next(batches)))
            g = session.generator(state, micro)
            noisy, noise, timesteps = noise_latents(noise_schedule, latents, g)
            drop = (torch.rand(latents.shape[0], generator=g) < cfg.cond_drop_prob).to(session.device)
            (report,) = drop_conditions(drop, empty, report)
            loss = epsilon_loss(model(noisy, timesteps, report).sample, noise, timesteps=timesteps,
                                scheduler=noise_schedule, snr_gamma=cfg.snr_gamma)
            session.check_finite(loss, state)
            session.backward(loss, model, micro)
        grad_norm = session.optimizer_step(model, optimizer, scheduler, ema, state)
        session.log(state, grad_norm)
        if run.sample.every and state.step % run.sample.every == 0 and state.step < cfg.max_steps and session.is_main:
            with session.ema_weights(model):
                write_sample_grid(run, out_root, acc.unwrap_model(model), holdout_records,
                                  out / "samples" / f"step-{state.step:08d}.png")
        session.after_step(state)
    session.finish(state)

    # -- export (EMA weights) --------------------------------------------------------------------------------------
    if session.is_main:
        unwrapped = acc.unwrap_model(model)
        with session.ema_weights(model):
            unwrapped.save_pretrained(out / "uvit", safe_serialization=True)
            write_sample_grid(run, out_root, unwrapped, holdout_records, out / "samples" / "final.png")
        print(f"[base] saved {out / 'uvit'}", flush=True)
    session.mark_complete()
    return out


def write_sample_grid(run, out_root, uvit, holdout_records, path: Path, adapter=None, components=None,
                      scheduler=None) -> None:
    """Generated images for the first ``sample.num_reports`` hold-out reports next to their real images.
    ``components`` / ``scheduler``: the frozen ``(vae, report_encoder)`` and solver to sample with (default:
    those of the run in ``out_root``)."""
    from diffcxr.models.diffusion import sampling_scheduler
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.cache import load_frozen_components
    from diffcxr.training.data import ImageSet, knowledge_prompts
    from diffcxr.training.grids import impression, save_grid

    records = holdout_records[: run.sample.num_reports]
    if not records:
        return
    was_training = uvit.training
    uvit.eval()
    vae, encoder = components or load_frozen_components(run, out_root, uvit.device)
    scheduler = scheduler or sampling_scheduler(run.adapter if adapter is not None else run.base, run.sample.solver)
    pipe = DiffCXRPipeline(vae=vae, denoiser=uvit, report_encoder=encoder, knowledge_adapter=adapter,
                           scheduler=scheduler)
    knowledge = pipe.encode_text(knowledge_prompts(records)) if adapter is not None else None
    fake = pipe([r.report for r in records], knowledge_embeds=knowledge, output_type="pt", progress=False,
                num_inference_steps=run.sample.num_inference_steps, guidance_scale=run.sample.guidance_scale,
                adapter_conditioning_scale=run.sample.adapter_scale, generator=torch.Generator().manual_seed(run.seed)).images * 2 - 1
    real = ImageSet(records, run.model_config()["image_size"]).batch(range(len(records)))
    images, captions = [], []
    for r, x, y in zip(records, real, fake):
        images += [x, y]
        captions += [f"REAL {r.id}. {impression(r.report)}", "GENERATED from the report at left"]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_grid(torch.stack(images), captions, path, tile=128, columns=4)
    uvit.train(was_training)
