"""U-ViT denoiser (Bao et al., "All are Worth Words", CVPR 2023) as used by Diff-CXR.

The network follows the authors' ``uvit_t2i`` code:

* tokens = [time token | context tokens | patch tokens] with a learned positional embedding;
  the time token is the sinusoidal embedding of the timestep (optionally followed by an MLP), the context
  tokens are ``Linear(context_dim -> width)`` of the report condition, the patch tokens are a stride-``p``
  convolution of the latent;
* pre-LN transformer blocks (``LayerNorm -> MHSA(no qkv bias) -> +``, ``LayerNorm -> MLP(GELU) -> +``) with
  PyTorch's fused ``scaled_dot_product_attention``;
* ``depth // 2`` in-blocks, one mid-block, ``depth // 2`` out-blocks; every out-block first fuses its long skip
  with ``Linear(2*width -> width)`` over ``concat(x, skip)``;
* final ``LayerNorm -> Linear(width -> p*p*C) -> unpatchify -> Conv3x3``; the output is the predicted noise ε.

A guidance-distilled student (``guidance_embedding=True``, :mod:`diffcxr.training.distill`) also reads the
classifier-free guidance weight ``w``: ``MLP(sinusoid(GUIDANCE_EMBED_SCALE · (w − 1)))`` is added to the time
token, with the MLP's last layer zero-initialised so that a fresh student equals the network it was copied from.

The input half (embeddings, in-blocks, mid-block) lives in :class:`UViTInputHalfMixin`, which the
:class:`~diffcxr.models.knowledge_adapter.DiseaseKnowledgeAdapter` reuses unchanged (it is a trainable copy of
exactly that half).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from diffcxr.errors import DiffCXRError

__all__ = ["UViT", "UViTOutput", "UViTBlock", "timestep_embedding", "UViTInputHalfMixin", "GUIDANCE_EMBED_SCALE"]

# w = 1 (no guidance) ... 8 maps to 0 ... 700 on the sinusoid's axis: the span the timesteps use
GUIDANCE_EMBED_SCALE = 100.0


@dataclass
class UViTOutput(BaseOutput):
    """Output of :class:`UViT`: ``sample`` is the predicted noise, shape ``(B, C, H, W)``."""

    sample: torch.Tensor


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal timestep embedding of U-ViT / ADM: ``[cos(t*f), sin(t*f)]`` with geometric frequencies.

    ``timesteps`` is ``(B,)`` (float or int); returns ``(B, dim)`` in float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class Attention(nn.Module):
    """Multi-head self-attention with fused SDPA (no attention dropout, as in U-ViT)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        if dim % num_heads:
            raise DiffCXRError(f"U-ViT width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class UViTBlock(nn.Module):
    """Pre-LN transformer block; with ``skip=True`` it first fuses a long skip by ``Linear(2d -> d)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 skip: bool = False, eps: float = 1e-5):
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class UViTInputHalfMixin:
    """Embeddings + in-blocks + mid-block shared by :class:`UViT` and the knowledge adapter.

    Expects the host module to define ``patch_embed``, ``time_embed``, ``context_embed``, ``pos_embed``,
    ``in_blocks``, ``mid_block`` and a ``config`` with ``sample_size``, ``in_channels``, ``width``,
    ``context_dim``, ``num_context_tokens``.
    """

    gradient_checkpointing: bool

    def _build_input_half(self, sample_size: int, in_channels: int, patch_size: int, width: int, depth: int,
                          num_heads: int, mlp_ratio: float, qkv_bias: bool, context_dim: int,
                          num_context_tokens: int, mlp_time_embed: bool, layer_norm_eps: float) -> None:
        if depth < 2 or depth % 2:
            raise DiffCXRError(f"U-ViT depth must be an even number >= 2 (got {depth})")
        if sample_size % patch_size:
            raise DiffCXRError(f"U-ViT sample_size {sample_size} is not divisible by patch_size {patch_size}")
        num_patches = (sample_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size)
        self.time_embed = (
            nn.Sequential(nn.Linear(width, 4 * width), nn.SiLU(), nn.Linear(4 * width, width))
            if mlp_time_embed else nn.Identity()
        )
        self.context_embed = nn.Linear(context_dim, width)
        self.extras = 1 + num_context_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + num_patches, width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.in_blocks = nn.ModuleList(
            [UViTBlock(width, num_heads, mlp_ratio, qkv_bias, eps=layer_norm_eps) for _ in range(depth // 2)]
        )
        self.mid_block = UViTBlock(width, num_heads, mlp_ratio, qkv_bias, eps=layer_norm_eps)
        self.gradient_checkpointing = False

    # -- input validation --------------------------------------------------------------------------------
    def _check_inputs(self, sample: torch.Tensor, encoder_hidden_states: torch.Tensor) -> None:
        cfg = self.config
        expected = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
        if sample.ndim != 4 or tuple(sample.shape[1:]) != expected:
            raise DiffCXRError(
                f"{type(self).__name__} expects latents of shape (B, {expected[0]}, {expected[1]}, {expected[2]}) "
                f"(images of {cfg.sample_size}x{cfg.sample_size} latent pixels), got {tuple(sample.shape)}"
            )
        ctx = (cfg.num_context_tokens, cfg.context_dim)
        if encoder_hidden_states.ndim != 3 or tuple(encoder_hidden_states.shape[1:]) != ctx:
            raise DiffCXRError(
                f"{type(self).__name__} expects encoder_hidden_states of shape (B, {ctx[0]}, {ctx[1]}), "
                f"got {tuple(encoder_hidden_states.shape)}"
            )
        if encoder_hidden_states.shape[0] != sample.shape[0]:
            raise DiffCXRError(
                f"batch size mismatch: latents {sample.shape[0]} vs encoder_hidden_states {encoder_hidden_states.shape[0]}"
            )

    @staticmethod
    def _timesteps(timestep, batch: int, device: torch.device) -> torch.Tensor:
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], device=device)
        timestep = timestep.to(device).reshape(-1)
        if timestep.numel() == 1:
            timestep = timestep.expand(batch)
        if timestep.numel() != batch:
            raise DiffCXRError(f"timestep must be a scalar or have batch size {batch}, got {timestep.numel()} values")
        return timestep

    # -- the input half ----------------------------------------------------------------------------------
    def embed_tokens(self, sample: torch.Tensor, timestep, context_tokens: torch.Tensor, guidance=None
                     ) -> torch.Tensor:
        """Return ``[time | context | patch] + pos_embed`` for already-projected ``context_tokens`` (B, 77, width).

        ``guidance`` (scalar or ``(B,)`` guidance weights) is read only by a network with a guidance embedding."""
        dtype = self.pos_embed.dtype
        x = self.patch_embed(sample.to(dtype)).flatten(2).transpose(1, 2)
        t = self._timesteps(timestep, sample.shape[0], sample.device)
        time_token = self.time_embed(timestep_embedding(t, self.config.width).to(dtype)).unsqueeze(1)
        guidance_embed = getattr(self, "guidance_embed", None)
        if guidance_embed is not None:
            if guidance is None:
                raise DiffCXRError("this U-ViT is guidance-distilled: pass the guidance weight (guidance=w)")
            w = self._timesteps(guidance, sample.shape[0], sample.device).float()
            w_embed = timestep_embedding((w - 1) * GUIDANCE_EMBED_SCALE, self.config.width).to(dtype)
            time_token = time_token + guidance_embed(w_embed).unsqueeze(1)
        x = torch.cat([time_token, context_tokens.to(dtype), x], dim=1)
        return x + self.pos_embed

    def _block(self, block: UViTBlock, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            if skip is None:
                return self._gradient_checkpointing_func(block, x)
            return self._gradient_checkpointing_func(block, x, skip)
        return block(x, skip)

    def run_input_half(self, tokens: torch.Tensor, block_hook=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the in-blocks and the mid-block. Returns ``(mid_output, skips)``; ``skips[i]`` is in-block i's output.

        ``block_hook(index, x)`` (optional) is called after each in-block (index 0..n-1) and after the mid-block
        (index n); the adapter uses it to produce its zero-initialised residuals.
        """
        skips = []
        x = tokens
        for i, blk in enumerate(self.in_blocks):
            x = self._block(blk, x)
            skips.append(x)
            if block_hook is not None:
                block_hook(i, x)
        x = self._block(self.mid_block, x)
        if block_hook is not None:
            block_hook(len(self.in_blocks), x)
        return x, skips


class UViT(UViTInputHalfMixin, ModelMixin, ConfigMixin):
    """The Diff-CXR denoiser: a U-ViT that predicts ε from VAE latents, a timestep and 77 report tokens.

    Paper size: ``UViT(sample_size=32, in_channels=4, patch_size=2, width=512, depth=16, num_heads=8,
    mlp_ratio=4, context_dim=768)`` — 19.3 G MACs and 58 M parameters per forward.
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
        final_conv: bool = True,
        final_conv_init: str = "identity",
        layer_norm_eps: float = 1e-5,
        guidance_embedding: bool = False,
    ):
        super().__init__()
        self._build_input_half(sample_size, in_channels, patch_size, width, depth, num_heads, mlp_ratio,
                               qkv_bias, context_dim, num_context_tokens, mlp_time_embed, layer_norm_eps)
        self.guidance_embed = (nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
                               if guidance_embedding else None)
        self.out_blocks = nn.ModuleList(
            [UViTBlock(width, num_heads, mlp_ratio, qkv_bias, skip=True, eps=layer_norm_eps) for _ in range(depth // 2)]
        )
        self.norm = nn.LayerNorm(width, eps=layer_norm_eps)
        self.decoder_pred = nn.Linear(width, patch_size * patch_size * in_channels)
        self.final_layer = nn.Conv2d(in_channels, in_channels, 3, padding=1) if final_conv else nn.Identity()
        self.apply(self._init_weights)
        if final_conv and final_conv_init == "identity":
            # The last 3x3 conv (zero padding) starts as the identity. With PyTorch's default init its taps start
            # random, and training can settle on a one-pixel shift of some channels (their weight on the left
            # tap), which the conv undoes everywhere except the left border column, where it reads padding: a
            # seed-dependent defect (cpu-mini seed 2: 4.4x the noise-prediction error in that column, washed-out
            # images; docs/report-adherence.md). Identity starts, and in practice stays, centred.
            nn.init.dirac_(self.final_layer.weight)
            nn.init.zeros_(self.final_layer.bias)
        if self.guidance_embed is not None:  # a fresh student predicts what its teacher's conditional branch does
            nn.init.zeros_(self.guidance_embed[-1].weight)
            nn.init.zeros_(self.guidance_embed[-1].bias)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # U-ViT's initialisation: truncated-normal linears, unit LayerNorms.
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def num_skips(self) -> int:
        return len(self.in_blocks)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, h*w, p*p*C) -> (B, C, h*p, w*p)`` (U-ViT's ``B (h w) (p1 p2 C) -> B C (h p1) (w p2)``)."""
        p, c = self.config.patch_size, self.config.in_channels
        b, n, _ = x.shape
        h = w = int(round(math.sqrt(n)))
        x = x.reshape(b, h, w, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, h * p, w * p)

    def forward(
        self,
        sample: torch.Tensor,
        timestep,
        encoder_hidden_states: torch.Tensor,
        down_block_additional_residuals: list[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        guidance=None,
        return_dict: bool = True,
    ):
        """Predict ε.

        Args:
            sample: noisy latents ``(B, C, H, W)``.
            timestep: scalar or ``(B,)`` diffusion timesteps (0..999).
            encoder_hidden_states: report condition tokens ``(B, num_context_tokens, context_dim)``.
            down_block_additional_residuals: one tensor ``(B, L, width)`` per long skip (from the knowledge
                adapter), added to the in-block outputs before the out-blocks consume them.
            mid_block_additional_residual: ``(B, L, width)`` added to the mid-block output.
            guidance: scalar or ``(B,)`` classifier-free guidance weights ``w`` (diffusers' convention), for a
                guidance-distilled network only (``guidance_embedding=True``): it then predicts the guided ε
                ``ε_u + w·(ε_c − ε_u)`` in one forward.
        """
        self._check_inputs(sample, encoder_hidden_states)
        context = self.context_embed(encoder_hidden_states.to(self.pos_embed.dtype))
        x = self.embed_tokens(sample, timestep, context, guidance)
        x, skips = self.run_input_half(x)
        if down_block_additional_residuals is not None:
            if len(down_block_additional_residuals) != len(skips):
                raise DiffCXRError(
                    f"expected {len(skips)} down-block residuals (one per long skip), "
                    f"got {len(down_block_additional_residuals)}"
                )
            skips = [s + r.to(s.dtype) for s, r in zip(skips, down_block_additional_residuals)]
        if mid_block_additional_residual is not None:
            x = x + mid_block_additional_residual.to(x.dtype)
        for blk in self.out_blocks:
            x = self._block(blk, x, skips.pop())
        x = self.norm(x)
        # U-ViT applies decoder_pred to all tokens and then drops the extras; slicing first is identical and cheaper.
        x = self.decoder_pred(x[:, self.extras:, :])
        out = self.final_layer(self.unpatchify(x))
        if not return_dict:
            return (out,)
        return UViTOutput(sample=out)
