"""Intra-prompt diversity: mean pairwise MS-SSIM over the images generated from one report (lower = more diverse).

Uses torchmetrics' ``multiscale_structural_similarity_index_measure`` (Gaussian kernel 11, σ 1.5, data range 1,
images in ``[0, 1]``). Its standard 5 scales need images of at least ~161 px with kernel 11; smaller images use
the largest number of scales torchmetrics accepts (3 at 64×64, 4 at 128×128) with the *first* standard betas
renormalised to sum to 1 — the number of scales used is returned so it can be recorded.
"""

from __future__ import annotations

import itertools

import torch

from diffcxr.errors import DiffCXRError

__all__ = ["STANDARD_BETAS", "scales_for_size", "pairwise_msssim", "intra_prompt_msssim"]

STANDARD_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
KERNEL_SIZE = 11


def scales_for_size(size: int, kernel_size: int = KERNEL_SIZE) -> int:
    """Largest number of MS-SSIM scales (≤ 5) torchmetrics accepts for ``size×size`` images."""
    for n in range(5, 0, -1):
        if size >= 2 ** n and size // max(1, n - 1) ** 2 > kernel_size - 1:
            return n
    raise DiffCXRError(f"images of {size}×{size} are too small for MS-SSIM with kernel {kernel_size}")


def _betas(n: int) -> tuple[float, ...]:
    b = STANDARD_BETAS[:n]
    return tuple(x / sum(b) for x in b)


def pairwise_msssim(images: torch.Tensor, scales: int | None = None) -> tuple[float, int]:
    """Mean MS-SSIM over all unordered pairs of ``images`` ``(K, 1, S, S)`` in ``[0, 1]``; returns ``(mean, scales)``."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    images = torch.as_tensor(images).float()
    if images.ndim != 4 or images.shape[0] < 2:
        raise DiffCXRError(f"need (K>=2, C, H, W) images for pairwise MS-SSIM, got {tuple(images.shape)}")
    scales = scales or scales_for_size(min(images.shape[-2:]))
    pairs = list(itertools.combinations(range(images.shape[0]), 2))
    a = images[[i for i, _ in pairs]]
    b = images[[j for _, j in pairs]]
    values = ms_ssim(a, b, data_range=1.0, kernel_size=KERNEL_SIZE, betas=_betas(scales), normalize="relu",
                     reduction="none")
    return float(values.mean()), scales


def intra_prompt_msssim(groups) -> dict:
    """``groups``: iterable of ``(K, 1, S, S)`` tensors (the samples of one report each, ``K >= 2``).

    Returns ``{"msssim": mean over reports, "std": ..., "n_reports": ..., "per_report": [...], "scales": n}``.
    """
    values, scales = [], None
    for group in groups:
        value, scales = pairwise_msssim(group, scales)
        values.append(value)
    if not values:
        raise DiffCXRError("MS-SSIM diversity needs at least one report with 2 or more generated images")
    t = torch.tensor(values, dtype=torch.float64)
    return {"msssim": float(t.mean()), "std": float(t.std()) if len(values) > 1 else 0.0,
            "n_reports": len(values), "per_report": values, "scales": scales,
            "betas": list(_betas(scales)), "kernel_size": KERNEL_SIZE}
