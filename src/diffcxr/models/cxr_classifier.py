"""CXR classifier over the 14 CheXpert findings: the evaluation yardstick (mAUC) and offline FID feature network.

Trained on real images by ``diffcxr train classifier`` (:mod:`diffcxr.training.classifier`) or in memory by
``diffcxr downstream`` (:mod:`diffcxr.experiments.classifier`); both save it with ``save_pretrained``.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from diffcxr.models.conv_stages import conv_stages

__all__ = ["CXRClassifier"]


class CXRClassifier(ModelMixin, ConfigMixin):
    """:func:`~diffcxr.models.conv_stages.conv_stages` trunk, global average pool, dropout, linear head.

    Input ``(B, 1, S, S)`` in [-1, 1] (S = ``config.image_size`` for the numbers it was trained for; any S
    divisible by ``2**len(channels)`` runs); ``forward`` returns logits ``(B, num_labels)`` in the order of
    ``config.label_names`` (CheXpert's 14 findings); ``features`` the pooled ``(B, channels[-1])`` vector.
    """

    @register_to_config
    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (32, 64, 128, 256), num_labels: int = 14,
                 image_size: int = 64, label_names: tuple[str, ...] | None = None, dropout: float = 0.1):
        super().__init__()
        self.body = conv_stages(in_channels, tuple(channels))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(channels[-1], num_labels)

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, feature_dim)`` (for FID/KID statistics)."""
        return self.body(pixel_values.to(self.head.weight.dtype)).mean(dim=(2, 3))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(pixel_values)))
