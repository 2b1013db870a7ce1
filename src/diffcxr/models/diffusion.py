"""The diffusion process in one place: the noise schedule, noising and the ε-prediction loss used in training,
and the solver that samples over the same schedule.

The schedule is the authors' (1000 steps, scaled-linear β 0.00085–0.012, ε prediction); a training stage's
config (``base`` / ``adapter`` sections: ``num_train_timesteps``, ``beta_start``, ``beta_end``,
``beta_schedule``) may change it, and the exported pipeline's solver then follows. Both schedulers are
diffusers': ``DDPMScheduler`` (training, ``add_noise``) and ``DPMSolverMultistepScheduler`` (DPM-Solver++,
2nd order) for sampling. :data:`SOLVERS` names the other diffusers solvers a saved pipeline can sample with over
its own schedule (:func:`solver_scheduler`; ``diffcxr generate --solver``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["PAPER_SCHEDULE", "SOLVERS", "schedule_config", "training_scheduler", "sampling_scheduler",
           "solver_scheduler", "resolve_solver", "noise_latents", "epsilon_loss"]

PAPER_SCHEDULE: dict[str, Any] = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                                  "beta_schedule": "scaled_linear"}


def schedule_config(stage_cfg=None) -> dict[str, Any]:
    """Schedule keyword arguments of a training stage config (any object with the four attributes, or a mapping
    such as a saved pipeline's ``scheduler.config``), or the paper's when ``stage_cfg`` is None. Always ε
    prediction."""
    if stage_cfg is None:
        values = PAPER_SCHEDULE
    elif isinstance(stage_cfg, Mapping):
        values = {k: stage_cfg[k] for k in PAPER_SCHEDULE}
    else:
        values = {k: getattr(stage_cfg, k) for k in PAPER_SCHEDULE}
    return {**values, "prediction_type": "epsilon"}


def training_scheduler(stage_cfg=None):
    """``DDPMScheduler`` over the schedule: what :func:`noise_latents` noises with."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**schedule_config(stage_cfg))


def sampling_scheduler(stage_cfg=None, solver: str = "dpm++2m"):
    """The sampling ``solver`` (a key of :data:`SOLVERS`; default DPM-Solver++ 2nd order multistep, the paper's)
    over the schedule the model was trained with."""
    return solver_scheduler(solver, schedule_config(stage_cfg))


# name -> (diffusers scheduler class, its settings); all keep the pipeline's training schedule
SOLVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++3m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 3}),
    "unipc": ("UniPCMultistepScheduler", {"solver_order": 2}),
    "deis": ("DEISMultistepScheduler", {"solver_order": 2}),
    "euler": ("EulerDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "lcm": ("LCMScheduler", {}),  # for consistency-distilled pipelines (diffcxr train distill distill.method=consistency)
}
# settings of an LCM scheduler a pipeline keeps when its solver is swapped
_LCM_KEYS = ("original_inference_steps", "timestep_scaling")


def resolve_solver(name: str, scheduler) -> str:
    """``"auto"`` → the solver a pipeline was saved with: the key of :data:`SOLVERS` whose scheduler class and
    settings match ``scheduler`` (a scheduler such as ``pipe.scheduler``, or a config mapping, which names its class
    only as read from disk: ``_class_name``); ``"dpm++2m"`` when none does. Any other name is returned as it is."""
    if name != "auto":
        return name
    if isinstance(scheduler, Mapping):
        config, saved_class = scheduler, scheduler.get("_class_name")
    else:
        config, saved_class = scheduler.config, type(scheduler).__name__
    if "timestep_scaling" in config:  # only LCMScheduler has it
        return "lcm"
    for key, (class_name, settings) in SOLVERS.items():
        if saved_class == class_name and all(config.get(k, v) == v for k, v in settings.items()):
            return key
    return "dpm++2m"


def solver_scheduler(name: str, scheduler_config) -> Any:
    """The solver ``name`` (a key of :data:`SOLVERS`, or ``"auto"``: :func:`resolve_solver`, which needs the
    scheduler itself or a config read from disk to tell the saved class) over the schedule in ``scheduler_config``
    (a pipeline's ``scheduler.config``):
    ``pipe.scheduler = solver_scheduler("unipc", pipe.scheduler.config)``."""
    import diffusers

    from diffcxr.errors import DiffCXRError

    name = resolve_solver(name, scheduler_config)
    if name not in SOLVERS:
        raise DiffCXRError(f"unknown solver {name!r}; choose one of auto, {', '.join(SOLVERS)}")
    class_name, settings = SOLVERS[name]
    keys = (*PAPER_SCHEDULE, "prediction_type", *(_LCM_KEYS if name == "lcm" else ()))
    schedule = {k: scheduler_config[k] for k in keys if k in scheduler_config}
    return getattr(diffusers, class_name).from_config(schedule, **settings)


def noise_latents(scheduler, latents: torch.Tensor, generator: torch.Generator,
                  timestep_choices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training draw: ``(noisy, noise, timesteps)`` for clean ``latents`` ``(B, C, h, w)`` (float32).

    ``noise ~ N(0, I)`` and ``timesteps ~ U{0, …, T−1}`` (or uniform over ``timestep_choices``, e.g. a
    solver's grid) come from ``generator`` (a CPU generator, in this order, so a run is reproducible on any
    device); ``noisy = √ᾱ_t·latents + √(1−ᾱ_t)·noise`` (``scheduler.add_noise``).
    """
    latents = latents.float()
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    if timestep_choices is None:
        steps = scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (latents.shape[0],), generator=generator)
    else:
        timesteps = timestep_choices[torch.randint(0, len(timestep_choices), (latents.shape[0],), generator=generator)]
    timesteps = timesteps.to(latents.device)
    return scheduler.add_noise(latents, noise, timesteps), noise, timesteps


def epsilon_loss(predicted_noise: torch.Tensor, noise: torch.Tensor, *, timesteps: torch.Tensor | None = None,
                 scheduler=None, snr_gamma: float | None = None) -> torch.Tensor:
    """The diffusion loss: mean squared error of the ε prediction ``(B, C, h, w)`` (computed in float32).

    With ``snr_gamma`` (and the draw's ``timesteps`` ``(B,)`` and its ``scheduler``) each sample's error is
    weighted by ``min(SNR_t, γ) / SNR_t``, min-SNR-γ weighting (Hang et al., 2023) for ε prediction: the nearly
    clean timesteps, whose ε errors are large but say little about the image, stop dominating the gradient.
    ``snr_gamma=None`` is the plain mean.
    """
    if snr_gamma is None:
        return F.mse_loss(predicted_noise.float(), noise.float())
    if timesteps is None or scheduler is None:
        raise ValueError("epsilon_loss: snr_gamma needs the timesteps and the scheduler that drew them")
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps).float()
    weight = torch.clamp(snr, max=snr_gamma) / snr
    per_sample = F.mse_loss(predicted_noise.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weight).mean()
