"""VAE stage: a 1-channel ``AutoencoderKL`` trained from scratch (configs without a pretrained VAE).

Loss = reconstruction (L1 or MSE, per pixel) + ``kl_weight`` × KL(q(z|x) ‖ N(0, I)) (summed over latent
dimensions, averaged over the batch), as in the LDM KL autoencoders (without their GAN/perceptual terms).
At the end the latent ``scaling_factor`` is set to 1 / std of the training latents (posterior means), so the
diffusion stages see unit-variance latents; the model is saved to ``<out>/vae/vae``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from diffcxr.training.session import Session, stage_complete
from diffcxr.training.config import RunConfig
from diffcxr.training.data import ImageSet

__all__ = ["train_vae", "VAEObjective"]


class VAEObjective(nn.Module):
    """Encode → reparameterised sample (noise given, so it is seeded) → decode; returns (recon, mean, logvar)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, pixels: torch.Tensor, noise: torch.Tensor):
        posterior = self.vae.encode(pixels).latent_dist
        z = posterior.mean + posterior.std * noise.to(posterior.mean.dtype)
        return self.vae.decode(z).sample, posterior.mean, posterior.logvar


def train_vae(run: RunConfig, data_spec: str, out_root, *, manifest: str | None = None, resume: bool = False,
              mixed_precision: str | None = None, progress: bool = True, step_callback=None) -> Path | None:
    from diffcxr.models.configs import latent_downsample, vae_kwargs
    from diffcxr.models.vae import make_vae

    out = Path(out_root) / "vae"
    mcfg, cfg = run.model_config(), run.vae
    if mcfg["vae"].get("pretrained"):
        print(f"[vae] model config uses the pretrained VAE {mcfg['vae']['pretrained']!r}: nothing to train", flush=True)
        return None
    if resume and stage_complete(out, cfg.max_steps):
        print(f"[vae] already complete in {out}", flush=True)
        return out

    # -- set-up ----------------------------------------------------------------------------------------------------
    session = Session(run, "vae", out, resume=resume, mixed_precision=mixed_precision, progress=progress,
                      step_callback=step_callback)
    acc = session.accelerator
    train_records, holdout_records = session.stage_records(data_spec, manifest)
    images = ImageSet(train_records, mcfg["image_size"], skip_unreadable=run.data.skip_unreadable)
    torch.manual_seed(run.seed)
    vae = make_vae(**vae_kwargs(mcfg))
    objective = VAEObjective(vae)
    optimizer = session.optimizer(vae.parameters())
    scheduler = session.lr_scheduler(optimizer)
    objective, optimizer = acc.prepare(objective, optimizer)
    ema = session.ema(vae)
    state = session.restore({"vae": vae}, optimizer, scheduler, ema)
    batches = session.batches(len(images), state)
    f = latent_downsample(mcfg)
    latent_shape = (vae.config.latent_channels, mcfg["image_size"] // f, mcfg["image_size"] // f)

    # -- the loop --------------------------------------------------------------------------------------------------
    session.start_progress(state)
    while state.step < cfg.max_steps:
        objective.train()
        for micro in range(cfg.grad_accum):
            pixels = images.batch(next(batches)).to(session.device)
            noise = torch.randn((pixels.shape[0], *latent_shape), generator=session.generator(state, micro))
            recon, mean, logvar = objective(pixels, noise.to(session.device))
            recon = recon.float()
            rec = F.l1_loss(recon, pixels) if cfg.recon_loss == "l1" else F.mse_loss(recon, pixels)
            mean, logvar = mean.float(), logvar.float().clamp(-30, 20)
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()
            loss = rec + cfg.kl_weight * kl
            session.check_finite(loss, state)
            session.backward(loss, objective, micro)
        grad_norm = session.optimizer_step(objective, optimizer, scheduler, ema, state)
        session.log(state, grad_norm)
        session.after_step(state)
    session.finish(state)

    # -- scaling factor and export (EMA weights when EMA is on) -------------------------------------------------------
    if session.is_main:
        with session.ema_weights(vae):
            vae.eval()
            scale = _latent_scaling(vae, images, cfg.scaling_samples, session.device, run.cache.batch_size)
            vae.register_to_config(scaling_factor=scale)
            vae.save_pretrained(out / "vae", safe_serialization=True)
            _reconstruction_sheet(vae, ImageSet(holdout_records[:8], mcfg["image_size"]), out / "reconstructions.png")
        print(f"[vae] scaling_factor = {scale:.4f}; saved {out / 'vae'}", flush=True)
    session.mark_complete({"scaling_factor": float(vae.config.scaling_factor)})
    return out


@torch.no_grad()
def _latent_scaling(vae, images: ImageSet, n: int, device, batch_size: int) -> float:
    """1 / std of the posterior means of (up to) ``n`` training images."""
    latents = []
    for start in range(0, min(n, len(images)), batch_size):
        idx = list(range(start, min(start + batch_size, n, len(images))))
        latents.append(vae.encode(images.batch(idx).to(device)).latent_dist.mean.float().cpu())
    std = torch.cat(latents).std().item()
    return float(1.0 / max(std, 1e-6))


@torch.no_grad()
def _reconstruction_sheet(vae, images: ImageSet, path: Path) -> None:
    from diffcxr.data.contact_sheet import make_contact_sheet
    from diffcxr.models.vae import decode_latents, encode_images

    if len(images) == 0:
        return
    x = images.batch(range(len(images))).to(vae.device)
    recon = decode_latents(vae, encode_images(vae, x))
    tiles, captions = [], []
    for a, b in zip(x, recon):
        tiles += [((a[0] + 1) / 2).cpu().numpy(), ((b[0] + 1) / 2).float().cpu().numpy()]
        captions += ["input", "reconstruction"]
    make_contact_sheet(tiles, captions, tile=128, columns=4, caption_lines=1).save(path)
