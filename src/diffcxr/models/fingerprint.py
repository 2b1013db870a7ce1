"""A content hash of a model: which weights (and config) produced a cache of latents or embeddings."""

from __future__ import annotations

import hashlib
import json

import torch

__all__ = ["model_fingerprint"]


# config entries that say where a model was loaded from (or which values a loader filled in), not what it computes:
# a run folder copied or moved (or opened through another relative path) must keep its fingerprint, or its latent
# cache is rebuilt for nothing
_BOOKKEEPING_KEYS = frozenset({"_name_or_path", "name_or_path", "_commit_hash", "_use_default_values"})


def model_fingerprint(module: torch.nn.Module) -> str:
    """sha256 (hex) over the module's config (diffusers/transformers models: ``module.config``, without the folder
    it was loaded from) and every parameter and buffer: name, shape, dtype and bytes. Equal fingerprints mean
    equal outputs."""
    h = hashlib.sha256()
    config = getattr(module, "config", None)
    if config is not None:
        as_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        as_dict = {k: v for k, v in as_dict.items() if k not in _BOOKKEEPING_KEYS}
        h.update(json.dumps(as_dict, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
