"""Guidance distillation (Meng et al., "On distillation of guided diffusion models", CVPR 2023, stage one):
one forward per solver step instead of classifier-free guidance's two.

The teacher is an exported pipeline (``diffcxr train all``): its base U-ViT and knowledge adapter, both frozen.
The student is a copy of the teacher's U-ViT with a guidance-weight embedding added to its time token
(``UViT(guidance_embedding=True)``; the embedding's last layer starts at zero, so the fresh student *is* the
teacher's conditional branch). Each step draws noisy latents, timesteps and a guidance weight
``w ~ U[guidance_min, guidance_max]`` per sample, and trains the student (with the teacher's frozen adapter at
the teacher's ``default_adapter_scale``, so the knowledge path is unchanged) to predict the teacher's guided
noise::

    target = ε_u + w · (ε_c − ε_u)         (teacher: base + adapter, unconditional = the empty prompt for both)
    loss   = ‖ student(x_t, t, report, w) + adapter residuals − target ‖²

With ``distill.method: consistency`` (latent consistency distillation, Luo et al. 2023) the same student learns
the consistency function ``f(x_t, t) = c_skip(t)·x_t + c_out(t)·x̂_0(x_t, t)`` (diffusers' ``LCMScheduler``
boundary scalings). Each step draws ``t`` from a grid of ``num_ddim_timesteps`` (50: ``t = 19, 39, …, 999``),
takes one guided DDIM step of the teacher from ``t`` to ``t − 20``, and matches (Huber loss) the student's
``f`` at ``(x_t, t)`` to that of an EMA target copy of the student (``target_ema_decay``) at the teacher's
``(x_{t−20}, t − 20)``::

    x_{t-k}  = DDIM(x_t, ε_u + w·(ε_c − ε_u), t → t − k)                  (teacher, frozen)
    loss     = huber( f_student(x_t, t, w),  f_target(x_{t-k}, t − k, w) )

The exported pipeline (``<out>/pipeline``) is the teacher's with the student as its denoiser; it samples with any
``w`` in the distilled range at one forward per step (``DiffCXRPipeline.guidance_distilled``): with any solver
(guidance), or with ``LCMScheduler`` in ``sample_steps`` steps, recorded as the pipeline's
``default_inference_steps`` (consistency).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch
from torch import nn

from diffcxr.errors import DiffCXRError
from diffcxr.training.config import RunConfig
from diffcxr.training.session import Session, stage_complete

__all__ = ["train_distill", "GuidedStudent", "load_teacher", "student_from_teacher", "guided_target",
           "ddim_timestep_grid", "boundary_scalings", "consistency_function", "ddim_step", "huber_loss"]

# diffusers' LCMScheduler defaults: the boundary condition's time scaling and σ_data
TIMESTEP_SCALING = 10.0
SIGMA_DATA = 0.5


class GuidedStudent(nn.Module):
    """Trainable guidance-conditioned U-ViT + the teacher's frozen knowledge adapter (at ``adapter_scale``) →
    guided ε (one module, so DDP sees the student's parameters)."""

    def __init__(self, student, adapter=None, adapter_scale: float = 1.0):
        super().__init__()
        self.student = student
        self.adapter = adapter
        self.adapter_scale = adapter_scale

    def forward(self, noisy, timesteps, report, knowledge, guidance):
        from diffcxr.models.knowledge_adapter import predict_noise

        return predict_noise(self.student, noisy, timesteps, report, self.adapter, knowledge,
                             conditioning_scale=self.adapter_scale, guidance=guidance)


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
def guided_target(denoiser, adapter, noisy, timesteps, report, knowledge, empty, guidance,
                  adapter_scale: float = 1.0) -> torch.Tensor:
    """The teacher's classifier-free-guided ε ``ε_u + w·(ε_c − ε_u)`` for a batch: ``noisy`` (B, C, h, w),
    ``timesteps`` (B,), ``report`` / ``knowledge`` (B, 77, d), ``empty`` the empty-prompt tokens (1, 77, d),
    ``guidance`` (B,) weights, the adapter at ``adapter_scale``. One doubled forward, like the pipeline's."""
    from diffcxr.models.knowledge_adapter import predict_noise

    uncond = empty.to(report.dtype).expand_as(report)
    eps = predict_noise(denoiser, torch.cat([noisy, noisy]), torch.cat([timesteps, timesteps]),
                        torch.cat([uncond, report]), adapter, torch.cat([uncond, knowledge]),
                        conditioning_scale=adapter_scale).float()
    eps_u, eps_c = eps.chunk(2)
    return eps_u + guidance.view(-1, 1, 1, 1) * (eps_c - eps_u)


def ddim_timestep_grid(num_train_timesteps: int, num_ddim_timesteps: int) -> torch.Tensor:
    """The teacher solver's grid, as LCM's ``DDIMSolver``: ``k·(1..N) − 1`` with ``k = T // N`` (long, (N,))."""
    k = num_train_timesteps // num_ddim_timesteps
    return torch.arange(1, num_ddim_timesteps + 1) * k - 1


def boundary_scalings(timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(c_skip, c_out)`` of diffusers' ``LCMScheduler`` at integer ``timesteps`` (B,), each ``(B, 1, 1, 1)``:
    ``c_skip = σ²/((s·t)² + σ²)``, ``c_out = s·t/√((s·t)² + σ²)`` with ``s = 10``, ``σ = 0.5``; ``f(x, 0) = x``."""
    scaled = timesteps.float().view(-1, 1, 1, 1) * TIMESTEP_SCALING
    return SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2), scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5


def _alpha(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    return alphas_cumprod.to(timesteps.device)[timesteps].float().view(-1, 1, 1, 1)


def _predicted_x0(eps: torch.Tensor, sample: torch.Tensor, timesteps: torch.Tensor,
                  alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``x̂_0 = (x_t − √(1−ᾱ_t)·ε)/√ᾱ_t``."""
    a = _alpha(alphas_cumprod, timesteps)
    return (sample - (1 - a).sqrt() * eps.float()) / a.sqrt()


def consistency_function(eps: torch.Tensor, sample: torch.Tensor, timesteps: torch.Tensor,
                         alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``c_skip·x_t + c_out·x̂_0`` — what ``LCMScheduler.step`` denoises to."""
    c_skip, c_out = boundary_scalings(timesteps)
    return c_skip * sample + c_out * _predicted_x0(eps, sample, timesteps, alphas_cumprod)


def ddim_step(sample: torch.Tensor, eps: torch.Tensor, timesteps: torch.Tensor, prev_timesteps: torch.Tensor,
              alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM from ``timesteps`` to ``prev_timesteps`` (per sample) with the noise prediction ``eps``."""
    a_prev = _alpha(alphas_cumprod, prev_timesteps)
    return a_prev.sqrt() * _predicted_x0(eps, sample, timesteps, alphas_cumprod) + (1 - a_prev).sqrt() * eps


def huber_loss(prediction: torch.Tensor, target: torch.Tensor, c: float) -> torch.Tensor:
    """LCM's pseudo-Huber loss ``mean(√((p − t)² + c²) − c)`` (float32)."""
    return (((prediction.float() - target.float()) ** 2 + c * c).sqrt() - c).mean()


@torch.no_grad()
def _update_target(target: nn.Module, online: nn.Module, decay: float) -> None:
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o.detach().to(t.dtype), 1 - decay)


def train_distill(run: RunConfig, data_spec: str, out_root, *, teacher: str | None = None,
                  manifest: str | None = None, resume: bool = False, mixed_precision: str | None = None,
                  progress: bool = True, step_callback=None) -> Path:
    from diffcxr.models.diffusion import epsilon_loss, noise_latents, training_scheduler
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
    adapter = teacher_pipe.knowledge_adapter
    cache = prepare_latent_cache(run, session, train_records, out_root, progress=progress, components=components,
                                 knowledge_sides=bool(adapter is not None and adapter.config.knowledge_sides))
    empty = cache.empty.to(session.device)
    noise_schedule = training_scheduler(teacher_pipe.scheduler.config)  # the schedule the teacher trained with
    adapter_scale = teacher_pipe.default_adapter_scale  # the student learns the teacher as it samples by default
    torch.manual_seed(run.seed)
    student = student_from_teacher(teacher_pipe.denoiser)
    objective = GuidedStudent(student, adapter, adapter_scale)
    optimizer = session.optimizer(student.parameters())
    scheduler = session.lr_scheduler(optimizer)
    objective, optimizer = acc.prepare(objective, optimizer)
    ema = session.ema(student)
    consistency = cfg.method == "consistency"
    models = {"student": student}
    if consistency:  # the EMA target copy of the student whose consistency function the student matches
        target_net = copy.deepcopy(student).requires_grad_(False).eval()
        target_objective = GuidedStudent(target_net, adapter, adapter_scale)
        models["target"] = target_net
        alphas_cumprod = noise_schedule.alphas_cumprod.to(session.device)
        grid = ddim_timestep_grid(noise_schedule.config.num_train_timesteps, cfg.num_ddim_timesteps)
        skip = noise_schedule.config.num_train_timesteps // cfg.num_ddim_timesteps
    state = session.restore(models, optimizer, scheduler, ema)
    batches = session.batches(len(cache), state)
    w_low, w_span = cfg.guidance_min, cfg.guidance_max - cfg.guidance_min

    # -- the loop --------------------------------------------------------------------------------------------------
    session.start_progress(state)
    while state.step < cfg.max_steps:
        student.train()
        for micro in range(cfg.grad_accum):
            latents, report, knowledge = (t.to(session.device) for t in cache.get(next(batches)))
            g = session.generator(state, micro)
            # consistency: a timestep of the teacher's solver grid (and, below, the one k steps before it)
            noisy, _, timesteps = noise_latents(noise_schedule, latents, g, grid if consistency else None)
            guidance = (w_low + w_span * torch.rand(latents.shape[0], generator=g)).to(session.device)
            with acc.autocast():
                target = guided_target(teacher_pipe.denoiser, adapter, noisy, timesteps, report, knowledge, empty,
                                       guidance, adapter_scale)
                if consistency:
                    with torch.no_grad():
                        prev = (timesteps - skip).clamp(min=0)
                        x_prev = ddim_step(noisy, target, timesteps, prev, alphas_cumprod)
                        target = consistency_function(target_objective(x_prev, prev, report, knowledge, guidance),
                                                      x_prev, prev, alphas_cumprod)
            prediction = objective(noisy, timesteps, report, knowledge, guidance)
            if consistency:
                loss = huber_loss(consistency_function(prediction, noisy, timesteps, alphas_cumprod), target,
                                  cfg.huber_c)
            else:
                loss = epsilon_loss(prediction, target)
            session.check_finite(loss, state)
            session.backward(loss, objective, micro)
        grad_norm = session.optimizer_step(objective, optimizer, scheduler, ema, state, params=student.parameters())
        if consistency:
            _update_target(target_net, student, cfg.target_ema_decay)
        session.log(state, grad_norm)
        session.after_step(state)
    session.finish(state)

    # -- export (EMA weights) --------------------------------------------------------------------------------------
    if session.is_main:
        with session.ema_weights(student):
            student.save_pretrained(out / "denoiser", safe_serialization=True)
            pipe = distilled_pipeline(teacher_pipe, student.eval(), cfg)
            write_sample_grid(run, out_root, student, holdout_records, out / "samples" / "final.png",
                              adapter=adapter, components=components, scheduler=pipe.scheduler)
            export_distilled_pipeline(pipe, teacher, out_root / "pipeline", data_spec, cfg)
    session.mark_complete()
    return out


def distilled_pipeline(teacher_pipe, student, cfg):
    """The teacher's pipeline with ``student`` as its denoiser; for ``consistency``, ``LCMScheduler`` over the
    teacher's schedule and ``cfg.sample_steps`` as the default steps."""
    from diffusers import LCMScheduler

    from diffcxr.models.diffusion import PAPER_SCHEDULE
    from diffcxr.pipelines import DiffCXRPipeline

    scheduler, steps = teacher_pipe.scheduler, teacher_pipe.default_inference_steps
    if cfg.method == "consistency":
        schedule = {k: teacher_pipe.scheduler.config[k] for k in PAPER_SCHEDULE}
        scheduler = LCMScheduler(**schedule, prediction_type="epsilon", original_inference_steps=cfg.num_ddim_timesteps,
                                 timestep_scaling=TIMESTEP_SCALING)
        steps = cfg.sample_steps
    return DiffCXRPipeline(vae=teacher_pipe.vae, denoiser=student, report_encoder=teacher_pipe.report_encoder,
                           scheduler=scheduler, knowledge_adapter=teacher_pipe.knowledge_adapter,
                           default_inference_steps=steps, guidance_range=[cfg.guidance_min, cfg.guidance_max],
                           # the teacher's measured default w, kept inside the range the student learned
                           default_guidance_scale=min(max(teacher_pipe.default_guidance_scale, cfg.guidance_min),
                                                      cfg.guidance_max),
                           default_adapter_scale=teacher_pipe.default_adapter_scale)


def export_distilled_pipeline(pipe, teacher, target, data_spec: str, cfg) -> Path:
    """Save ``pipe`` to ``target`` (atomically: a sibling folder renamed) with the teacher's model card extended."""
    teacher, target = Path(teacher), Path(target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    card_path = teacher / "training_data.json"
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {"components": {}}
    card["components"]["denoiser"] = {
        "trained": True, "stage": "distill", "method": cfg.method, "data": data_spec,
        "distilled_from": str(teacher.resolve()), "teacher_denoiser": card["components"].get("denoiser"),
        "guidance_range": [cfg.guidance_min, cfg.guidance_max], "default_inference_steps": pipe.default_inference_steps,
        "scheduler": type(pipe.scheduler).__name__}
    (tmp / "training_data.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    readme = (teacher / "README.md").read_text(encoding="utf-8") if (teacher / "README.md").is_file() else ""
    what = ("guidance-distilled: it predicts the teacher's guided noise in one forward per step" if cfg.method ==
            "guidance" else f"consistency-distilled: it samples with LCMScheduler in {cfg.sample_steps} steps "
            "(the pipeline's default), one forward per step")
    (tmp / "README.md").write_text(
        f"{readme}\nThe denoiser is {what}, for w in [{cfg.guidance_min}, {cfg.guidance_max}] "
        f"(`diffcxr train distill`, method `{cfg.method}`, from `{teacher.resolve()}` on `{data_spec}`).\n",
        encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    print(f"[distill] saved the {cfg.method}-distilled pipeline {target}", flush=True)
    return target
