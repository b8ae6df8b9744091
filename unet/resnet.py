"""A plain residual CNN denoiser: the fork example of the README ("Use your own architecture").

No attention and no down-sampling, so any image size works (size_multiple 1); the time encoding is
projected and added in every block. The one file a new network needs: its config, its module and the
``@register_network`` line, imported by ``unet/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ddpm.settings import bounded, check_ranges
from unet.registry import register_network


@dataclass(frozen=True)
class ResNetConfig:
    """in_channels: condition + image channels; width: feature channels of every block; blocks: how
    many residual blocks; time_encoding_dim: width of the time encoding; out_channels: noise channels."""

    in_channels: int = bounded(2, 1)
    out_channels: int = bounded(1, 1)
    width: int = bounded(64, 1)
    blocks: int = bounded(4, 1)
    time_encoding_dim: int = bounded(256, 2)

    def __post_init__(self) -> None:
        check_ranges(self, "--network.")

    @property
    def size_multiple(self) -> int:
        """Every layer keeps the image size, so any side works."""
        return 1


class ResidualBlock(nn.Module):
    """h + Conv3x3(SiLU(Conv3x3(SiLU(h)) + W t_encoding)): ``[B, width, H, W] -> [B, width, H, W]``."""

    def __init__(self, width: int, time_encoding_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.time = nn.Linear(time_encoding_dim, width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1)

    def forward(self, h: torch.Tensor, t_encoding: torch.Tensor) -> torch.Tensor:
        inner = self.conv1(F.silu(h)) + self.time(t_encoding)[:, :, None, None]
        return h + self.conv2(F.silu(inner))


@register_network("resnet", ResNetConfig)
class ResNet(nn.Module):
    """A plain residual CNN denoiser, without attention or down-sampling.

    Predicts the noise of x_t from x = [condition, x_t] ``[B, in_channels, H, W]`` in [-1, 1] and the
    time encoding ``[B, time_encoding_dim]``; returns ``[B, out_channels, H, W]``."""

    def __init__(self, config: ResNetConfig = ResNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.conv_in = nn.Conv2d(config.in_channels, config.width, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(ResidualBlock(config.width, config.time_encoding_dim) for _ in range(config.blocks))
        self.conv_out = nn.Conv2d(config.width, config.out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, t_encoding: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in self.blocks:
            h = block(h, t_encoding)
        return self.conv_out(F.silu(h))
