"""Switch on the fastest numerically equivalent execution of a network.

Measured with ``python -m experiments.bench.unet --channels-last --deeplay-python <venv with deeplay>``
on the project's idle 2-core CPU (AMD EPYC, 2,445 MHz, torch 2.14.1, tutorial network, batch 16,
128 x 128): median images/s over 5 interleaved rounds, min-max in brackets, and the ratio to deeplay's
eager ``AttentionUNet`` of the same round.

    network                       training step              forward (one denoising step)
    deeplay AttentionUNet, eager  3.48 (3.37-3.78)           13.97 (13.68-14.63)
    UNet, channels_last           3.42 (3.17-3.84)  0.98x    16.20 (15.26-20.47)  1.14x
                                  (0.91-1.07x: no gain)      (1.04-1.50x in every round: a gain)

Both networks do the same 17.3 GFLOP per image and training step (5.8 forward) and reach about 38 % of
the assumed fp32 peak in training, 52-60 % in the forward pass: training is bound by the convolutions'
backward pass, which the memory format does not change. So ``channels_last`` is kept for its forward
(sampling) gain. Adding ``torch.compile`` (a separate 5-round run against deeplay) gave training 3.56
(3.27-3.76), 1.02x, and forward 16.53 (15.44-19.36), 1.23x: nothing beyond channels_last alone, after
one to two minutes of compilation per process, so it stays off by default; ``--sweep`` measures every option.
"""

from __future__ import annotations

import torch
from torch import nn


def optimize_for_speed(model: nn.Module, channels_last: bool = True, compile: bool = False) -> nn.Module:
    """Return a faster equivalent of ``model`` (same outputs up to float rounding, same parameters).

    channels_last: store convolution weights as NHWC (``model.to(memory_format=...)``, which converts
        ``model`` itself, as ``nn.Module.to`` does); inputs may stay NCHW, the first convolution
        switches layout. Faster sampling on CPU (the table above); training at deeplay's speed.
    compile: wrap in ``torch.compile``; the wrapper shares ``model``'s parameters, so optimise and save
        ``model`` as usual. Compilation costs tens of seconds first; measure before relying on it.
    """
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile else model
