"""Diff-CXR's disease-knowledge control adapter.

A ControlNet-style trainable copy of the U-ViT input half (embeddings + in-blocks + mid-block). Its context
tokens are the report tokens plus a zero-initialised linear projection of the knowledge tokens (the encoded
"There is pleural effusion." prompt). After each copied block a zero-initialised ``Linear(width -> width)``
produces a residual that is added to the frozen base model's matching long skip; one more is added to the
mid-block output. At initialisation every residual is exactly zero, so base + adapter == base.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from diffcxr.errors import DiffCXRError
from diffcxr.models.uvit import UViT, UViTInputHalfMixin

__all__ = ["DiseaseKnowledgeAdapter", "DiseaseKnowledgeAdapterOutput", "predict_noise"]

# config keys copied from a UViT by ``from_uvit``
_SHARED_CONFIG = ("sample_size", "in_channels", "patch_size", "width", "depth", "num_heads", "mlp_ratio", "qkv_bias",
                  "context_dim", "num_context_tokens", "mlp_time_embed", "layer_norm_eps")
# parameter prefixes of the input half (identical names in UViT and the adapter)
_SHARED_PREFIXES = ("patch_embed.", "time_embed.", "context_embed.", "pos_embed", "in_blocks.", "mid_block.")


def _zero_linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class DiseaseKnowledgeAdapterOutput(NamedTuple):
    """Unpacks as ``(down_block_res_samples, mid_block_res_sample)``."""

    down_block_res_samples: list[torch.Tensor]
    mid_block_res_sample: torch.Tensor


class DiseaseKnowledgeAdapter(UViTInputHalfMixin, ModelMixin, ConfigMixin):
    """Trainable copy of the U-ViT input half that turns knowledge tokens into long-skip residuals.

    Build it from a trained base with :meth:`from_uvit` (copies the weights, like diffusers'
    ``ControlNetModel.from_unet``). Paper size: 10.3 G MACs and 32 M parameters per forward.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int = 32,
        in_channels: int = 4,
        patch_size: int = 2,
        width: int = 512,
        depth: int = 16,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        context_dim: int = 768,
        num_context_tokens: int = 77,
        mlp_time_embed: bool = False,
        layer_norm_eps: float = 1e-5,
        knowledge_dim: int | None = None,
        knowledge_sides: bool = False,
    ):
        """``knowledge_sides`` (no weights): the knowledge prompt this adapter reads names each finding's side
        ("There is left pleural effusion.", :func:`~diffcxr.knowledge.finding_sides`); the pipeline writes its
        prompts that way."""
        super().__init__()
        self._build_input_half(sample_size, in_channels, patch_size, width, depth, num_heads, mlp_ratio,
                               qkv_bias, context_dim, num_context_tokens, mlp_time_embed, layer_norm_eps)
        self.apply(UViT._init_weights)
        # zero-initialised projections: knowledge -> context space, and one residual per long skip + mid block
        self.knowledge_proj = _zero_linear(knowledge_dim or context_dim, context_dim)
        self.skip_residual_proj = nn.ModuleList([_zero_linear(width, width) for _ in range(depth // 2)])
        self.mid_residual_proj = _zero_linear(width, width)

    @classmethod
    def from_uvit(cls, uvit: UViT, knowledge_dim: int | None = None, load_weights_from_uvit: bool = True,
                  knowledge_sides: bool = False) -> "DiseaseKnowledgeAdapter":
        """Create an adapter whose input half is a copy of ``uvit``'s (zero-initialised projections)."""
        cfg = {k: uvit.config[k] for k in _SHARED_CONFIG}
        adapter = cls(**cfg, knowledge_dim=knowledge_dim, knowledge_sides=knowledge_sides)
        if load_weights_from_uvit:
            shared = {k: v for k, v in uvit.state_dict().items() if k.startswith(_SHARED_PREFIXES)}
            missing, unexpected = adapter.load_state_dict(shared, strict=False)
            if unexpected or any(k.startswith(_SHARED_PREFIXES) for k in missing):
                raise DiffCXRError(f"cannot copy U-ViT weights into the adapter: missing={missing}, unexpected={unexpected}")
        adapter = adapter.to(uvit.device)
        if adapter.dtype != uvit.dtype:
            adapter = adapter.to(dtype=uvit.dtype)
        return adapter

    def forward(
        self,
        sample: torch.Tensor,
        timestep,
        encoder_hidden_states: torch.Tensor,
        knowledge_hidden_states: torch.Tensor,
        conditioning_scale: float = 1.0,
    ) -> DiseaseKnowledgeAdapterOutput:
        """Return ``(down_block_res_samples, mid_block_res_sample)`` for :class:`UViT`'s forward.

        ``knowledge_hidden_states`` has the same shape as ``encoder_hidden_states`` ((B, 77, knowledge_dim));
        every residual is multiplied by ``conditioning_scale``.
        """
        self._check_inputs(sample, encoder_hidden_states)
        kdim = self.knowledge_proj.in_features
        if knowledge_hidden_states.shape != (*encoder_hidden_states.shape[:2], kdim):
            raise DiffCXRError(
                f"knowledge_hidden_states must have shape {(*encoder_hidden_states.shape[:2], kdim)}, "
                f"got {tuple(knowledge_hidden_states.shape)}"
            )
        dtype = self.pos_embed.dtype
        ctx = encoder_hidden_states.to(dtype) + self.knowledge_proj(knowledge_hidden_states.to(dtype))
        x = self.embed_tokens(sample, timestep, self.context_embed(ctx))
        residuals: list[torch.Tensor] = []
        n = len(self.in_blocks)

        def hook(i: int, h: torch.Tensor) -> None:
            proj = self.skip_residual_proj[i] if i < n else self.mid_residual_proj
            residuals.append(proj(h) * conditioning_scale)

        self.run_input_half(x, block_hook=hook)
        return DiseaseKnowledgeAdapterOutput(residuals[:n], residuals[n])


def predict_noise(
    denoiser: UViT,
    sample: torch.Tensor,
    timestep,
    encoder_hidden_states: torch.Tensor,
    knowledge_adapter: DiseaseKnowledgeAdapter | None = None,
    knowledge_hidden_states: torch.Tensor | None = None,
    conditioning_scale: float = 1.0,
    guidance=None,
) -> torch.Tensor:
    """ε prediction of the base U-ViT, plus the adapter's residuals when an adapter is given. ``guidance`` (the
    weight ``w``) goes to a guidance-distilled U-ViT only."""
    down = mid = None
    if knowledge_adapter is not None:
        if knowledge_hidden_states is None:
            raise DiffCXRError("a knowledge adapter needs knowledge_hidden_states (the encoded knowledge prompt)")
        down, mid = knowledge_adapter(sample, timestep, encoder_hidden_states, knowledge_hidden_states,
                                      conditioning_scale=conditioning_scale)
    return denoiser(sample, timestep, encoder_hidden_states, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid, guidance=guidance, return_dict=False)[0]
