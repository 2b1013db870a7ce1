"""Image–report alignment: cosine between a report's embedding and its image's, next to a scale.

The project's own vision-language model (the VLM stage of AVA-TLS: the report encoder's token 0 and the image
tower it was trained against) scores each (report, image) pair. A number alone has no scale, so the same model
scores real pairs (the ceiling this model can see) and real images against *other* real reports (what an image
that ignores its report would get).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from diffcxr.errors import DiffCXRError

__all__ = ["pair_cosines", "shuffled_pairs"]


def pair_cosines(text_embeds: torch.Tensor, image_embeds: torch.Tensor) -> np.ndarray:
    """Cosine of each row pair: ``(N, d)`` report embeddings, ``(N, d)`` image embeddings → ``(N,)`` in [-1, 1]."""
    if text_embeds.shape != image_embeds.shape or text_embeds.ndim != 2:
        raise DiffCXRError(f"need two (N, d) embedding matrices of one shape, got {tuple(text_embeds.shape)} and "
                           f"{tuple(image_embeds.shape)}")
    return F.cosine_similarity(text_embeds.double(), image_embeds.double(), dim=1).numpy()


def shuffled_pairs(n: int, seed: int = 0) -> np.ndarray:
    """A permutation of ``range(n)`` with no fixed point (each image meets another image's report), seeded."""
    if n < 2:
        raise DiffCXRError("shuffled pairs need at least 2 images")
    order = np.random.default_rng(seed).permutation(n)
    return np.roll(order, 1)[np.argsort(order)]  # i -> the next one in a random cycle: never i itself
