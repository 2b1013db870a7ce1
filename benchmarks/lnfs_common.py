"""Shared helpers of the LNFS benchmarks: load images, train (or reuse) the VAE with the project's VAE stage,
encode through ``diffcxr.models.vae.encode_images``.

The numbers in docs/filtering.md were measured with an earlier stand-in VAE (plain Adam, L1 + 1e-6·KL, a
4-minute wall-clock budget, the same 16/32/32 KL-f4 shape); the benchmarks now train it with ``diffcxr train
vae`` (the ``demo`` run config), so a re-run gives numbers of the same kind, not the same digits.
"""

from __future__ import annotations

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


def get_vae(data_spec: str, run_dir: str | Path, steps: int, size: int, seed: int = 0, log=print):
    """The VAE the filter encodes with: reused from ``run_dir`` or trained there by the project's own VAE stage
    (``diffcxr train vae`` with the ``demo`` run config: KL-f4, 16/32/32 channels, 4 latent channels) on every
    record of ``data_spec`` (all splits, every view) for ``steps`` steps at ``size``."""
    from diffcxr.models.vae import load_frozen_vae
    from diffcxr.training import load_run_config, train

    folder = Path(run_dir) / "vae" / "vae"
    if (folder / "config.json").is_file():
        log(f"reusing VAE {folder}")
    else:
        log(f"training the benchmark VAE ({steps} steps of the VAE stage) on {data_spec} ...")
        run = load_run_config("demo", [f"seed={seed}", f"model.image_size={size}", f"vae.max_steps={steps}",
                                       "data.train_splits=[train, val, test]", "data.frontal_only=false"])
        train("vae", run, data_spec, run_dir, resume=True, progress=False)
    return load_frozen_vae(folder)


def encode(vae, images: torch.Tensor, batch: int = 64) -> np.ndarray:
    from diffcxr.models.vae import encode_images

    with torch.inference_mode():
        return np.concatenate([encode_images(vae, images[i:i + batch]).float().cpu().numpy()
                               for i in range(0, len(images), batch)])
