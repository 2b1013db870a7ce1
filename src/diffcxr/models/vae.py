"""The latent autoencoder: a diffusers ``AutoencoderKL``.

Either a 1-channel KL autoencoder trained from scratch (CPU configs: KL-f4 / KL-f8, see ``configs/model``), or a
pretrained Stable Diffusion KL-f8 VAE (3 channels) for users who have one: grayscale X-rays are replicated to 3
channels on the way in and averaged back to 1 channel on the way out.

The latent scaling lives in ONE place, ``vae.config.scaling_factor`` (and ``shift_factor`` when a VAE has one):
:func:`encode_images` returns ``latents * scaling_factor`` and :func:`decode_latents` divides it back. Nothing
else in diffcxr multiplies by 0.18215.

Pixel convention everywhere: float tensors in [-1, 1], shape ``(B, 1, H, W)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL

from diffcxr.errors import DiffCXRError

__all__ = ["make_vae", "vae_from_model_config", "load_vae", "load_frozen_vae", "encode_images", "decode_latents", "vae_downsample_factor"]


def make_vae(
    in_channels: int = 1,
    latent_channels: int = 4,
    block_out_channels: list[int] | tuple[int, ...] = (128, 256, 512, 512),
    layers_per_block: int = 2,
    norm_num_groups: int = 32,
    scaling_factor: float = 0.18215,
    sample_size: int = 256,
) -> AutoencoderKL:
    """A randomly initialised ``AutoencoderKL`` (``len(block_out_channels) - 1`` downsamplings: 3 = KL-f8)."""
    for c in block_out_channels:
        if c % norm_num_groups:
            raise DiffCXRError(f"VAE channels {list(block_out_channels)} must be divisible by norm_num_groups={norm_num_groups}")
    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        norm_num_groups=norm_num_groups,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
    )


def vae_from_model_config(cfg: dict) -> AutoencoderKL:
    """Build (``vae.pretrained: null``) or load (a local folder / hub id) the VAE of a loaded model config."""
    from diffcxr.models.configs import vae_kwargs

    pretrained = cfg["vae"].get("pretrained")
    if pretrained:
        return load_vae(pretrained)
    return make_vae(**vae_kwargs(cfg))


def load_vae(name_or_path, subfolder: str | None = None, torch_dtype=None) -> AutoencoderKL:
    """Load a saved ``AutoencoderKL`` (local folder, or hub id when online)."""
    try:
        return AutoencoderKL.from_pretrained(name_or_path, subfolder=subfolder, torch_dtype=torch_dtype,
                                             use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise DiffCXRError(f"cannot load VAE {name_or_path!r}: {str(exc).splitlines()[0]}") from exc


def load_frozen_vae(path) -> AutoencoderKL:
    """A saved VAE folder (or a saved pipeline folder: its ``vae/``) in eval mode with gradients off."""
    path = Path(path)
    if not path.exists():
        raise DiffCXRError(f"VAE folder not found: {path}")
    if path.is_dir() and not (path / "config.json").is_file() and (path / "vae" / "config.json").is_file():
        path = path / "vae"  # a saved pipeline: use its vae/ component
    return load_vae(path).eval().requires_grad_(False)


def vae_downsample_factor(vae: AutoencoderKL) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _scale_shift(vae: AutoencoderKL) -> tuple[float, float]:
    scale = float(vae.config.scaling_factor)
    shift = getattr(vae.config, "shift_factor", None)
    return scale, float(shift) if shift is not None else 0.0


def encode_images(vae: AutoencoderKL, pixel_values: torch.Tensor, generator: torch.Generator | None = None,
                  sample: bool = False) -> torch.Tensor:
    """Images in [-1, 1] ``(B, 1 or 3, H, W)`` → scaled latents ``(latent - shift) * scaling_factor``.

    ``sample=False`` uses the posterior mean (deterministic; what the authors precompute), ``True`` samples.
    Grayscale input to a 3-channel VAE is replicated.
    """
    if pixel_values.ndim != 4:
        raise DiffCXRError(f"encode_images expects (B, C, H, W) images, got shape {tuple(pixel_values.shape)}")
    want = vae.config.in_channels
    if pixel_values.shape[1] != want:
        if pixel_values.shape[1] == 1 and want == 3:
            pixel_values = pixel_values.expand(-1, 3, -1, -1)
        elif pixel_values.shape[1] == 3 and want == 1:
            pixel_values = pixel_values.mean(dim=1, keepdim=True)
        else:
            raise DiffCXRError(f"the VAE takes {want}-channel images, got {pixel_values.shape[1]} channels")
    f = vae_downsample_factor(vae)
    if pixel_values.shape[-1] % f or pixel_values.shape[-2] % f:
        raise DiffCXRError(f"image size {tuple(pixel_values.shape[-2:])} is not divisible by the VAE factor {f}")
    dist = vae.encode(pixel_values.to(device=vae.device, dtype=vae.dtype)).latent_dist
    latents = dist.sample(generator) if sample else dist.mode()
    scale, shift = _scale_shift(vae)
    return (latents - shift) * scale


def decode_latents(vae: AutoencoderKL, latents: torch.Tensor, grayscale: bool = True) -> torch.Tensor:
    """Scaled latents → images in [-1, 1] (clamped), ``(B, 1, H, W)`` (3-channel VAEs averaged when ``grayscale``)."""
    scale, shift = _scale_shift(vae)
    latents = latents.to(device=vae.device, dtype=vae.dtype) / scale + shift
    if vae.device.type == "cpu" and vae.dtype != torch.float32:
        # oneDNN's bf16 convolutions run channels-last: the paper-size decode takes 1.5 s instead of 2.35 s on 2
        # cores (fp32 gains nothing, so it stays as it was)
        latents = latents.contiguous(memory_format=torch.channels_last)
    images = vae.decode(latents).sample.contiguous()
    if grayscale and images.shape[1] == 3:
        images = images.mean(dim=1, keepdim=True)
    return images.clamp(-1, 1)
