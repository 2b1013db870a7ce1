"""Shared helpers of the LNFS benchmarks: load images, fit a small AutoencoderKL for a few minutes, encode.

The VAE here is a *benchmark stand-in* (the project's VAE training stage is separate): a 1-channel diffusers
``AutoencoderKL`` (block_out_channels 16/32/32 = KL-f4, 4 latent channels, the shape of the ``cpu-mini`` model config at half width)
fitted with plain Adam on L1 + 1e-6·KL for a fixed wall-clock budget. The filter itself only sees the saved
VAE (``save_pretrained``) through ``diffcxr.filtering.driver``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch


def load_images(records, size: int) -> tuple[torch.Tensor, list]:
    from diffcxr.data.image_io import load_image
    from diffcxr.errors import ImageReadError

    images, kept = [], []
    for record in records:
        try:
            images.append(load_image(record.image_path, size))
            kept.append(record)
        except ImageReadError:
            pass
    return torch.stack(images), kept


def fit_vae(images: torch.Tensor, minutes: float, seed: int = 0, out_dir: str | Path | None = None, log=print,
            channels=(16, 32, 32), batch_size: int = 16):
    """Fit a small 1-channel AutoencoderKL on ``images`` (B×1×S×S in [-1, 1]) for ``minutes`` of wall time."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    size = images.shape[-1]
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=tuple(channels), layers_per_block=1,
        latent_channels=4, norm_num_groups=8, sample_size=size, scaling_factor=1.0,
    )
    optimiser = torch.optim.Adam(vae.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    start, step = time.perf_counter(), 0
    vae.train()
    while time.perf_counter() - start < minutes * 60:
        batch = images[torch.randint(0, len(images), (batch_size,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample(generator=None)).sample
        loss = (recon - batch).abs().mean() + 1e-6 * posterior.kl().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % 100 == 0:
            log(f"  vae step {step}: L1 {float((recon - batch).abs().mean()):.4f} ({time.perf_counter() - start:.0f} s)")
    vae.eval().requires_grad_(False)
    # scaling factor = 1 / std of the latents (as the training stage does), so latents are ~unit variance
    with torch.inference_mode():
        sample = torch.cat([vae.encode(images[i:i + 64]).latent_dist.mode() for i in range(0, min(len(images), 512), 64)])
    vae.register_to_config(scaling_factor=float(1.0 / sample.std()))
    log(f"  vae: {step} steps in {time.perf_counter() - start:.0f} s, scaling_factor {vae.config.scaling_factor:.3f}")
    if out_dir is not None:
        vae.save_pretrained(out_dir)
    return vae


def get_vae(images: torch.Tensor, vae_dir: Path, minutes: float, seed: int = 0, log=print):
    """Reuse a benchmark VAE saved in ``vae_dir`` or fit (and save) one."""
    from diffcxr.models.vae import load_frozen_vae

    if (Path(vae_dir) / "config.json").is_file():
        log(f"reusing VAE {vae_dir}")
        return load_frozen_vae(vae_dir)
    log(f"fitting a benchmark VAE for {minutes} min on {len(images)} images ...")
    return fit_vae(images, minutes, seed, vae_dir, log)


def encode(vae, images: torch.Tensor, batch: int = 64) -> np.ndarray:
    from diffcxr.models.vae import encode_images

    with torch.inference_mode():
        return np.concatenate([encode_images(vae, images[i:i + batch]).float().cpu().numpy()
                               for i in range(0, len(images), batch)])
