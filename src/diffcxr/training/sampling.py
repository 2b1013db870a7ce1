"""A small report-to-image sampler for training-time grids and the demo (the pipeline does the same for users).

DPM-Solver++ (multistep) over the training β schedule, classifier-free guidance in diffusers' convention
``ε_u + w (ε_c − ε_u)`` (w = 2 ≙ the authors' s = 1), the unconditional branch using the empty-prompt
embedding for both the report and the knowledge condition.
"""

from __future__ import annotations

import torch

__all__ = ["sample_images", "scheduler_config", "save_grid", "impression"]


def scheduler_config(stage_cfg) -> dict:
    return {"num_train_timesteps": stage_cfg.num_train_timesteps, "beta_start": stage_cfg.beta_start,
            "beta_end": stage_cfg.beta_end, "beta_schedule": stage_cfg.beta_schedule, "prediction_type": "epsilon"}


@torch.no_grad()
def sample_images(vae, encoder, uvit, reports: list[str], *, adapter=None, knowledge: list[str] | None = None,
                  num_inference_steps: int = 25, guidance_scale: float = 2.0, seed: int = 0, sched_config: dict,
                  report_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Images in [-1, 1], ``(B, 1, H, W)``, one per report (deterministic for a seed)."""
    from diffusers import DPMSolverMultistepScheduler

    from diffcxr.models.knowledge_adapter import predict_noise
    from diffcxr.models.vae import decode_latents

    device = uvit.device
    b = len(reports)
    cond = report_embeds if report_embeds is not None else encoder.encode(reports).condition_embeds
    cond = cond.float().to(device)
    empty = encoder.encode([""], allow_empty=True).condition_embeds.float().to(device).expand(b, -1, -1)
    know = None
    if adapter is not None:
        know = encoder.encode(knowledge).condition_embeds.float().to(device)
    scheduler = DPMSolverMultistepScheduler(**sched_config, algorithm_type="dpmsolver++", solver_order=2)
    scheduler.set_timesteps(num_inference_steps, device=device)
    c, s = uvit.config.in_channels, uvit.config.sample_size
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn((b, c, s, s), generator=g).to(device) * scheduler.init_noise_sigma
    use_cfg = guidance_scale != 1.0
    for t in scheduler.timesteps:
        x = torch.cat([latents, latents]) if use_cfg else latents
        ctx = torch.cat([empty, cond]) if use_cfg else cond
        kn = (torch.cat([empty, know]) if use_cfg else know) if know is not None else None
        eps = predict_noise(uvit, x, t, ctx, knowledge_adapter=adapter, knowledge_hidden_states=kn).float()
        if use_cfg:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + guidance_scale * (eps_c - eps_u)
        latents = scheduler.step(eps, t, latents).prev_sample
    return decode_latents(vae, latents).float().cpu()


def save_grid(images: torch.Tensor, captions: list[str], path, tile: int = 128, columns: int | None = None,
              title: str | None = None) -> None:
    """Images in [-1, 1] with captions → a contact sheet PNG."""
    from diffcxr.data.contact_sheet import make_contact_sheet

    import numpy as np
    from PIL import Image

    tiles = []
    for im in images:  # upscale small images to the tile (the contact sheet only shrinks)
        a = np.round(((im[0].float() + 1) / 2).clamp(0, 1).numpy() * 255).astype(np.uint8)
        tiles.append(np.asarray(Image.fromarray(a, "L").resize((tile, tile), Image.Resampling.BICUBIC),
                                dtype=np.float32) / 255)
    make_contact_sheet(tiles, captions, tile=tile, columns=columns, caption_lines=6, title=title).save(path)


def impression(report: str) -> str:
    """The IMPRESSION part of a report (the whole text when it has none), whitespace-normalised."""
    text = " ".join(report.split())
    return text[text.index("IMPRESSION:"):] if "IMPRESSION:" in text else text
