"""A content hash of a model: which weights (and config) produced a cache of latents or embeddings."""

from __future__ import annotations

import hashlib
import json

import torch

__all__ = ["model_fingerprint"]


def model_fingerprint(module: torch.nn.Module) -> str:
    """sha256 (hex) over the module's config (diffusers/transformers models: ``module.config``) and every
    parameter and buffer: name, shape, dtype and bytes. Equal fingerprints mean equal outputs."""
    h = hashlib.sha256()
    config = getattr(module, "config", None)
    if config is not None:
        as_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        h.update(json.dumps(as_dict, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
