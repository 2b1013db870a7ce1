"""Stage 1: the base text-to-image U-ViT on cached latents and report tokens (the authors' training recipe).

ε-prediction MSE; ``DDPMScheduler`` with scaled-linear β 0.00085–0.012 over 1000 steps; AdamW lr 2e-4,
weight decay 0.03, betas (0.9, 0.9); linear warm-up then constant; EMA; with probability ``cond_drop_prob``
(0.1) the report AND knowledge conditions are replaced by the empty-prompt embedding (classifier-free
guidance). Latents and report embeddings are precomputed once (:mod:`diffcxr.training.cache`). Saves the EMA
weights to ``<out>/base/uvit`` and a sample grid for hold-out reports.

``base.train_squeeze`` (off by default) also trains the report encoder's squeeze with the diffusion loss: the
cache then holds the frozen text tower's token states, the squeeze runs inside the training step (on the
report and on the empty prompt, so dropped rows get the squeeze's own empty condition), and its EMA weights are
saved with the text tower as ``<out>/base/report_encoder``, which the adapter stage and the exported pipeline
then use. Inference cost is unchanged: the squeeze runs once per report either way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from diffcxr.errors import DiffCXRError
from diffcxr.training.session import Session, stage_complete
from diffcxr.training.config import RunConfig

__all__ = ["train_base", "BaseObjective", "drop_conditions", "write_sample_grid"]


def drop_conditions(drop: torch.Tensor, empty: torch.Tensor, *conditions: torch.Tensor) -> list[torch.Tensor]:
    """Replace the rows where ``drop`` is True by the empty-prompt embedding, in every condition together."""
    mask = drop.view(-1, 1, 1)
    return [torch.where(mask, empty.to(c.dtype).expand_as(c), c) for c in conditions]


class BaseObjective(nn.Module):
    """Stage 1's ε prediction: condition dropout, then the U-ViT. With a ``squeeze`` (``base.train_squeeze``) the
    report and empty-prompt conditions are computed from cached token states inside the step, so the diffusion
    loss trains the squeeze too.

    ``report`` (B, 77, d) condition tokens, or (B, 1 + L, d) token states with ``report_mask`` (B, L) when there
    is a squeeze; ``empty`` likewise (1, 77, d) or (1, 1 + L, d) with ``empty_mask``; ``drop`` (B,) bool.
    Returns ε̂ (B, C, h, w)."""

    def __init__(self, uvit: nn.Module, squeeze: nn.Module | None = None):
        super().__init__()
        self.uvit = uvit
        self.squeeze = squeeze

    def forward(self, noisy, timesteps, report, drop, empty, report_mask=None, empty_mask=None) -> torch.Tensor:
        if self.squeeze is not None:
            report = self.squeeze(report, report_mask)[:, 1:]
            empty = self.squeeze(empty, empty_mask)[:, 1:]
        (report,) = drop_conditions(drop, empty, report)
        return self.uvit(noisy, timesteps, report).sample


def train_base(run: RunConfig, data_spec: str, out_root, *, manifest: str | None = None, resume: bool = False,
               mixed_precision: str | None = None, progress: bool = True, step_callback=None) -> Path:
    from diffcxr.models.configs import uvit_kwargs
    from diffcxr.models.diffusion import epsilon_loss, noise_latents, training_scheduler
    from diffcxr.models.uvit import UViT
    from diffcxr.training.cache import load_frozen_components, prepare_latent_cache

    out = Path(out_root) / "base"
    mcfg, cfg = run.model_config(), run.base
    if resume and stage_complete(out, cfg.max_steps):
        print(f"[base] already complete in {out}", flush=True)
        return out
    tune_squeeze = cfg.train_squeeze
    if tune_squeeze and mcfg["report_encoder"]["token_reduction"] != "squeeze":
        raise DiffCXRError("base.train_squeeze=true needs the learned squeeze, but this model's report encoder "
                           f"mean-pools (report_encoder.token_reduction: {mcfg['report_encoder']['token_reduction']})")

    # -- set-up ----------------------------------------------------------------------------------------------------
    session = Session(run, "base", out, resume=resume, mixed_precision=mixed_precision, progress=progress,
                      step_callback=step_callback)
    acc = session.accelerator
    _check_same_squeeze_setting(session, tune_squeeze)
    train_records, holdout_records = session.stage_records(data_spec, manifest)
    # the VLM stage's encoder: frozen, or (train_squeeze) its squeeze trains here and the tuned encoder is exported
    components = load_frozen_components(run, out_root, session.device, tuned_encoder=False)
    cache = prepare_latent_cache(run, session, train_records, out_root, progress=progress, components=components,
                                 token_states=tune_squeeze)
    empty = cache.empty.to(session.device)
    empty_mask = cache.empty_mask.to(session.device) if tune_squeeze else None
    noise_schedule = training_scheduler(cfg)
    torch.manual_seed(run.seed)
    uvit = UViT(**uvit_kwargs(mcfg))
    encoder = components[1]
    squeeze = encoder.squeeze.requires_grad_(True) if tune_squeeze else None
    groups = [{"params": list(uvit.parameters())}]
    if tune_squeeze:
        groups.append({"params": list(squeeze.parameters()), "lr": cfg.squeeze_lr or cfg.lr})
    optimizer = session.optimizer(groups)
    scheduler = session.lr_scheduler(optimizer)
    model, optimizer = acc.prepare(BaseObjective(uvit, squeeze), optimizer)
    core = acc.unwrap_model(model)
    ema = session.ema(model)  # over the U-ViT's parameters, then the squeeze's
    state = session.restore({"uvit": core.uvit, **({"squeeze": core.squeeze} if tune_squeeze else {})},
                            optimizer, scheduler, ema)
    batches = session.batches(len(cache), state)

    # -- the loop --------------------------------------------------------------------------------------------------
    session.start_progress(state)
    while state.step < cfg.max_steps:
        model.train()
        for micro in range(cfg.grad_accum):
            indices = next(batches)
            latents, report, _ = (t.to(session.device) for t in cache.get(indices))
            report_mask = cache.report_mask(indices).to(session.device) if tune_squeeze else None
            g = session.generator(state, micro)
            noisy, noise, timesteps = noise_latents(noise_schedule, latents, g)
            drop = (torch.rand(latents.shape[0], generator=g) < cfg.cond_drop_prob).to(session.device)
            loss = epsilon_loss(model(noisy, timesteps, report, drop, empty, report_mask, empty_mask), noise,
                                timesteps=timesteps, scheduler=noise_schedule, snr_gamma=cfg.snr_gamma)
            session.check_finite(loss, state)
            session.backward(loss, model, micro)
        grad_norm = session.optimizer_step(model, optimizer, scheduler, ema, state)
        session.log(state, grad_norm)
        if run.sample.every and state.step % run.sample.every == 0 and state.step < cfg.max_steps and session.is_main:
            with session.ema_weights(model):
                write_sample_grid(run, out_root, core.uvit, holdout_records,
                                  out / "samples" / f"step-{state.step:08d}.png", components=components)
        session.after_step(state)
    session.finish(state)

    # -- export (EMA weights) --------------------------------------------------------------------------------------
    if session.is_main:
        with session.ema_weights(model):
            core.uvit.save_pretrained(out / "uvit", safe_serialization=True)
            if tune_squeeze:  # the squeeze is encoder.squeeze: the tuned encoder is the VLM one with these weights
                encoder.save_pretrained(out / "report_encoder")
            elif (out / "report_encoder").exists():  # a tuned encoder of an earlier run here: not this model's
                shutil.rmtree(out / "report_encoder")
            write_sample_grid(run, out_root, core.uvit, holdout_records, out / "samples" / "final.png",
                              components=components)
        print(f"[base] saved {out / 'uvit'}" + (f" and the tuned {out / 'report_encoder'}" if tune_squeeze else ""),
              flush=True)
    session.mark_complete()
    return out


def _check_same_squeeze_setting(session: Session, tune_squeeze: bool) -> None:
    """``--resume`` keeps ``base.train_squeeze``: a checkpoint with the squeeze resumes only with it, and back."""
    from diffcxr.training.checkpoint import checkpoint_meta

    latest = session.checkpointer.latest() if session.resume else None
    if latest is None:
        return
    had_squeeze = "squeeze" in checkpoint_meta(latest).get("models", [])
    if had_squeeze != tune_squeeze:
        raise DiffCXRError(f"--resume: {latest} was trained with base.train_squeeze={str(had_squeeze).lower()}; "
                           f"resume it with the same setting (this command has {str(tune_squeeze).lower()})")


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
    knowledge = (pipe.encode_text(knowledge_prompts(records, sides=adapter.config.knowledge_sides))
                 if adapter is not None else None)
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
