"""The network and the diffusion that a run's configuration describes, for training and for inference."""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from ddpm import Diffusion
from ddpm.settings import UsageError
from experiments.config.schema import RunConfig
from unet import build_network


def build_model(config: RunConfig, device: torch.device) -> nn.Module:
    """The network registered under the config's kind (``unet.build_network``), checked against the
    conditioning mode."""
    expected = 2 if config.train.conditional else 1
    if config.network.in_channels != expected:
        mode = "conditional (low-resolution image + noisy image)" if config.train.conditional else "unconditional"
        raise UsageError(
            f"a {mode} run feeds {expected} input channel(s), but network.in_channels is "
            f"{config.network.in_channels}; set --network.in_channels {expected}"
        )
    return build_network(config.network).to(device)


def build_diffusion(config: RunConfig, device: torch.device) -> Diffusion:
    """The forward and reverse processes (Eqs. 1-11) of ``config.diffusion``, with the network's
    time-encoding width."""
    return Diffusion(**asdict(config.diffusion), time_encoding_dim=config.network.time_encoding_dim, device=device)
