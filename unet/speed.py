"""Switch on the fastest numerically equivalent execution of a network.

``channels_last`` (NHWC convolutions) is on by default and ``torch.compile`` off: their measured speed,
against deeplay's eager ``AttentionUNet``, for training and for the forward pass of sampling, is in
``docs/benchmarks.md`` (figures in ``docs/bench/unet_channels_last*.json``), measured with
``python -m experiments.bench.unet --channels-last`` (``--sweep`` measures every option).
"""

from __future__ import annotations

import torch
from torch import nn


def optimize_for_speed(model: nn.Module, channels_last: bool = True, compile: bool = False) -> nn.Module:
    """Return a faster equivalent of ``model`` (same outputs up to float rounding, same parameters).

    channels_last: store convolution weights as NHWC (``model.to(memory_format=...)``, which converts
        ``model`` itself, as ``nn.Module.to`` does); inputs may stay NCHW, the first convolution
        switches layout (its measured effect: docs/benchmarks.md).
    compile: wrap in ``torch.compile``; the wrapper shares ``model``'s parameters, so optimise and save
        ``model`` as usual. Compilation costs tens of seconds first; measure before relying on it.
    """
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile else model
