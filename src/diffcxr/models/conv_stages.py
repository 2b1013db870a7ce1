"""The small strided CNN trunk shared by the VLM image tower and the CXR classifier."""

from __future__ import annotations

from torch import nn


def conv_stages(in_channels: int, channels: tuple[int, ...]) -> nn.Sequential:
    """One stage per entry of ``channels``: Conv3x3 stride 2 → GroupNorm → SiLU → Conv3x3 → GroupNorm → SiLU.

    ``(B, in_channels, H, W)`` → ``(B, channels[-1], H / 2**len(channels), W / 2**len(channels))``. GroupNorm
    uses 8 groups where the width allows (1 otherwise), so the trunk behaves the same at any batch size.
    """
    layers: list[nn.Module] = []
    prev = in_channels
    for c in channels:
        groups = 8 if c % 8 == 0 else 1
        layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.GroupNorm(groups, c), nn.SiLU(),
                   nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(groups, c), nn.SiLU()]
        prev = c
    return nn.Sequential(*layers)
