"""Vision-aware local alignment of AVA-TLS: trains every condition token of the report encoder.

The VLM stage's global InfoNCE reads token 0 of the squeeze only, so on its own it leaves the 77 condition
tokens (the diffusion condition) untrained. This head aligns them with the image, per sample:

- **local InfoNCE**: each condition token attends (one-head cross-attention) to the image tower's patch tokens;
  the image-attended feature of token *i* must be closer to text token *i* than to the sample's other tokens
  (symmetric cross-entropy over the N × N cosine logits of one sample, temperature τ, averaged over samples);
- **SimSiam**: each image patch attends to the condition tokens; the text-attended feature and the patch token
  predict each other through a small predictor (d → d/2 → d) against stop-gradient targets.

``loss = local InfoNCE + SimSiam``; the VLM stage adds ``λ · loss`` to the global InfoNCE. The head is used only
in training (it is checkpointed with the stage, not exported), so inference and its FLOPs are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LocalAlignment", "LocalAlignmentLosses", "token_infonce", "simsiam_loss"]


def token_infonce(text_tokens: torch.Tensor, attended: torch.Tensor, temperature: float = 0.07,
                  negative_tokens: torch.Tensor | None = None,
                  negative_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample symmetric InfoNCE between paired rows of ``text_tokens`` and ``attended`` (both (B, N, d)).

    Within each sample, row *i* of one side must match row *i* of the other among the N rows; mean over B.
    ``negative_tokens`` (B, N, d): another text's tokens per sample (e.g. its report with left and right
    swapped) that each attended row must also rank below its own text row; ``negative_mask`` (B,) bool: the
    samples that have one (default all).
    """
    t = F.normalize(text_tokens.float(), dim=-1)
    a = F.normalize(attended.float(), dim=-1)
    logits = t @ a.transpose(1, 2) / temperature  # (B, N, N)
    b, n, _ = logits.shape
    target = torch.arange(n, device=logits.device).repeat(b)
    attended_to_text = logits.transpose(1, 2)  # (B, N attended, N text)
    if negative_tokens is not None:
        extra = a @ F.normalize(negative_tokens.float(), dim=-1).transpose(1, 2) / temperature  # (B, N, N)
        if negative_mask is not None:
            extra = extra.masked_fill(~negative_mask.to(extra.device).bool()[:, None, None], float("-inf"))
        attended_to_text = torch.cat([attended_to_text, extra], dim=2)
    return 0.5 * (F.cross_entropy(logits.reshape(b * n, n), target)
                  + F.cross_entropy(attended_to_text.reshape(b * n, attended_to_text.shape[2]), target))


def simsiam_loss(x: torch.Tensor, y: torch.Tensor, predictor: nn.Module) -> torch.Tensor:
    """Symmetric SimSiam loss: −½ (cos(p(x), sg(y)) + cos(p(y), sg(x))), averaged over all rows; in [−1, 1]."""
    px, py = predictor(x.float()), predictor(y.float())
    return -0.5 * (F.cosine_similarity(px, y.detach().float(), dim=-1).mean()
                   + F.cosine_similarity(py, x.detach().float(), dim=-1).mean())


@dataclass
class LocalAlignmentLosses:
    """The two terms (scalars) and their sum ``total``."""

    infonce: torch.Tensor
    simsiam: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.infonce + self.simsiam


class LocalAlignment(nn.Module):
    """Cross-attention between condition tokens ``(B, N, d)`` and image patch tokens ``(B, P, d)``."""

    def __init__(self, dim: int, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature
        self.token_attention = nn.MultiheadAttention(dim, num_heads=1, batch_first=True)  # text → image patches
        self.patch_attention = nn.MultiheadAttention(dim, num_heads=1, batch_first=True)  # image → text tokens
        self.predictor = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, dim))

    def forward(self, text_tokens: torch.Tensor, patch_tokens: torch.Tensor,
                negative_tokens: torch.Tensor | None = None,
                negative_mask: torch.Tensor | None = None) -> LocalAlignmentLosses:
        """``negative_tokens`` / ``negative_mask``: hard negatives of the local InfoNCE (see ``token_infonce``)."""
        text_tokens, patch_tokens = text_tokens.float(), patch_tokens.float()
        image_for_token, _ = self.token_attention(text_tokens, patch_tokens, patch_tokens, need_weights=False)
        text_for_patch, _ = self.patch_attention(patch_tokens, text_tokens, text_tokens, need_weights=False)
        infonce = token_infonce(text_tokens, image_for_token, self.temperature, negative_tokens, negative_mask)
        return LocalAlignmentLosses(infonce=infonce, simsiam=simsiam_loss(text_for_patch, patch_tokens,
                                                                           self.predictor))
