"""Guidance distillation (Meng et al., "On distillation of guided diffusion models", CVPR 2023, stage one):
one forward per solver step instead of classifier-free guidance's two.

The teacher is an exported pipeline (``diffcxr train all``): its base U-ViT and knowledge adapter, both frozen.
The student is a copy of the teacher's U-ViT with a guidance-weight embedding added to its time token
(``UViT(guidance_embedding=True)``; the embedding's last layer starts at zero, so the fresh student *is* the
teacher's conditional branch). Each step draws noisy latents, timesteps and a guidance weight
``w ~ U[guidance_min, guidance_max]`` per sample, and trains the student (with the teacher's frozen adapter, so
the knowledge path is unchanged) to predict the teacher's guided noise::

    target = ε_u + w · (ε_c − ε_u)         (teacher: base + adapter, unconditional = the empty prompt for both)
    loss   = ‖ student(x_t, t, report, w) + adapter residuals − target ‖²

The exported pipeline (``<out>/pipeline``) is the teacher's with the student as its denoiser; it samples with any
solver and any ``w`` in the distilled range at one forward per step (``DiffCXRPipeline.guidance_distilled``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from diffcxr.errors import DiffCXRError
from diffcxr.training.config import RunConfig
from diffcxr.training.session import Session, stage_complete

__all__ = ["train_distill", "GuidedStudent", "load_teacher", "student_from_teacher", "guided_target"]


class GuidedStudent(nn.Module):
    """Trainable guidance-conditioned U-ViT + the teacher's frozen knowledge adapter → guided ε (one module, so
    DDP sees the student's parameters)."""

    def __init__(self, student, adapter=None):
        super().__init__()
        self.student = student
        self.adapter = adapter

    def forward(self, noisy, timesteps, report, knowledge, guidance):
        from diffcxr.models.knowledge_adapter import predict_noise

        return predict_noise(self.student, noisy, timesteps, report, self.adapter,
                             knowledge if self.adapter is not None else None, guidance=guidance)


def load_teacher(path):
    """The teacher pipeline (float32, frozen). A pipeline that is already guidance-distilled is refused."""
    from diffcxr.pipelines import DiffCXRPipeline

    folder = Path(path)
    if not (folder / "model_index.json").is_file():
        raise DiffCXRError(f"--teacher {path}: not a saved pipeline (no model_index.json); give the pipeline folder "
                           "of a finished run, e.g. runs/cpu-mini/pipeline")
    import diffusers.utils.logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # loading takes a second; its bar would precede any error line
    try:
        teacher = DiffCXRPipeline.from_pretrained(folder)
    finally:
        diffusers_logging.enable_progress_bar()
    if teacher.guidance_distilled:
        raise DiffCXRError(f"--teacher {path} is already guidance-distilled; distil from the guided pipeline it "
                           "came from")
    for module in (teacher.vae, teacher.report_encoder, teacher.denoiser, teacher.knowledge_adapter):
        if module is not None:
            module.requires_grad_(False)
            module.eval()
    return teacher


def student_from_teacher(denoiser):
    """A ``UViT`` like ``denoiser`` plus a zero-initialised guidance embedding, holding the teacher's weights."""
    from diffcxr.models.uvit import UViT

    kwargs = {k: v for k, v in denoiser.config.items() if not k.startswith("_")}
    student = UViT(**{**kwargs, "guidance_embedding": True})
    missing, unexpected = student.load_state_dict(denoiser.state_dict(), strict=False)
    if unexpected or any(not k.startswith("guidance_embed.") for k in missing):
        raise DiffCXRError(f"teacher and student U-ViT do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return student.float()


@torch.no_grad()
def guided_target(denoiser, adapter, noisy, timesteps, report, knowledge, empty, guidance) -> torch.Tensor:
    """The teacher's classifier-free-guided ε ``ε_u + w·(ε_c − ε_u)`` for a batch: ``noisy`` (B, C, h, w),
    ``timesteps`` (B,), ``report`` / ``knowledge`` (B, 77, d), ``empty`` the empty-prompt tokens (1, 77, d),
    ``guidance`` (B,) weights. One doubled forward, like the pipeline's."""
    from diffcxr.models.knowledge_adapter import predict_noise

    uncond = empty.to(report.dtype).expand_as(report)
    eps = predict_noise(denoiser, torch.cat([noisy, noisy]), torch.cat([timesteps, timesteps]),
                        torch.cat([uncond, report]), adapter,
                        torch.cat([uncond, knowledge]) if adapter is not None else None).float()
    eps_u, eps_c = eps.chunk(2)
    return eps_u + guidance.view(-1, 1, 1, 1) * (eps_c - eps_u)


def train_distill(run: RunConfig, data_spec: str, out_root, *, teacher: str | None = None,
                  manifest: str | None = None, resume: bool = False, mixed_precision: str | None = None,
                  progress: bool = True, step_callback=None) -> Path:
    from diffcxr.models.diffusion import epsilon_loss, noise_latents
    from diffcxr.training.base import write_sample_grid
    from diffcxr.training.cache import prepare_latent_cache

    if not teacher:
        raise DiffCXRError("train distill needs --teacher PIPELINE_DIR (the pipeline folder of a finished run)")
    out_root = Path(out_root)
    out = out_root / "distill"
    cfg = run.distill
    if resume and stage_complete(out, cfg.max_steps):
        print(f"[distill] already complete in {out}", flush=True)
        return out

    # -- set-up ----------------------------------------------------------------------------------------------------
    teacher_pipe = load_teacher(teacher)
    image_size = run.model_config()["image_size"]
    if teacher_pipe.image_size != image_size:
        raise DiffCXRError(f"--teacher {teacher} makes {teacher_pipe.image_size}px images but config {run.name!r} "
                           f"trains on {image_size}px: use the config the teacher was trained with")
    session = Session(run, "distill", out, resume=resume, mixed_precision=mixed_precision, progress=progress,
                      step_callback=step_callback)
    acc = session.accelerator
    teacher_pipe.to(session.device)
    train_records, holdout_records = session.stage_records(data_spec, manifest, teacher=str(Path(teacher).resolve()))
    components = (teacher_pipe.vae, teacher_pipe.report_encoder)
    cache = prepare_latent_cache(run, session, train_records, out_root, progress=progress, components=components)
    empty = cache.empty.to(session.device)
    noise_schedule = _training_scheduler(teacher_pipe.scheduler.config)
    adapter = teacher_pipe.knowledge_adapter
    torch.manual_seed(run.seed)
    student = student_from_teacher(teacher_pipe.denoiser)
    objective = GuidedStudent(student, adapter)
    optimizer = session.optimizer(student.parameters())
    scheduler = session.lr_scheduler(optimizer)
    objective, optimizer = acc.prepare(objective, optimizer)
    ema = session.ema(student)
    state = session.restore({"student": student}, optimizer, scheduler, ema)
    batches = session.batches(len(cache), state)
    w_low, w_span = cfg.guidance_min, cfg.guidance_max - cfg.guidance_min

    # -- the loop --------------------------------------------------------------------------------------------------
    session.start_progress(state)
    while state.step < cfg.max_steps:
        student.train()
        for micro in range(cfg.grad_accum):
            latents, report, knowledge = (t.to(session.device) for t in cache.get(next(batches)))
            g = session.generator(state, micro)
            noisy, _, timesteps = noise_latents(noise_schedule, latents, g)
            guidance = (w_low + w_span * torch.rand(latents.shape[0], generator=g)).to(session.device)
            with acc.autocast():
                target = guided_target(teacher_pipe.denoiser, adapter, noisy, timesteps, report, knowledge, empty,
                                       guidance)
            loss = epsilon_loss(objective(noisy, timesteps, report, knowledge, guidance), target)
            session.check_finite(loss, state)
            session.backward(loss, objective, micro)
        grad_norm = session.optimizer_step(objective, optimizer, scheduler, ema, state, params=student.parameters())
        session.log(state, grad_norm)
        session.after_step(state)
    session.finish(state)

    # -- export (EMA weights) --------------------------------------------------------------------------------------
    if session.is_main:
        with session.ema_weights(student):
            student.save_pretrained(out / "denoiser", safe_serialization=True)
            write_sample_grid(run, out_root, student.eval(), holdout_records, out / "samples" / "final.png",
                              adapter=adapter, components=components, scheduler=teacher_pipe.scheduler)
        export_distilled_pipeline(teacher, out / "denoiser", out_root / "pipeline", data_spec, cfg)
    session.mark_complete()
    return out


def _training_scheduler(scheduler_config):
    """``DDPMScheduler`` over the teacher pipeline's schedule (the one it was trained with)."""
    from diffusers import DDPMScheduler

    from diffcxr.models.diffusion import PAPER_SCHEDULE

    return DDPMScheduler(**{k: scheduler_config[k] for k in PAPER_SCHEDULE}, prediction_type="epsilon")


def export_distilled_pipeline(teacher, student_dir, target, data_spec: str, cfg) -> Path:
    """The teacher pipeline folder with its denoiser replaced by the student, and the model card extended."""
    teacher, target = Path(teacher), Path(target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(teacher, tmp)
    shutil.rmtree(tmp / "denoiser")
    shutil.copytree(student_dir, tmp / "denoiser")
    card_path = tmp / "training_data.json"
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {"components": {}}
    card["components"]["denoiser"] = {
        "trained": True, "stage": "distill", "data": data_spec, "distilled_from": str(teacher.resolve()),
        "teacher_denoiser": card["components"].get("denoiser"),
        "guidance_range": [cfg.guidance_min, cfg.guidance_max]}
    card_path.write_text(json.dumps(card, indent=2), encoding="utf-8")
    with open(tmp / "README.md", "a", encoding="utf-8") as f:
        f.write(f"\nThe denoiser is guidance-distilled (`diffcxr train distill`) from `{teacher.resolve()}` on "
                f"`{data_spec}`: it predicts the teacher's guided noise for w in [{cfg.guidance_min}, "
                f"{cfg.guidance_max}] in one forward per step.\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    print(f"[distill] saved the guidance-distilled pipeline {target}", flush=True)
    return target
