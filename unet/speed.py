"""Switch on the fastest numerically equivalent execution of a network.

Measured on the project's 2-core CPU (torch 2.14.1, tutorial network, batch 16, 128 x 128), in
images/s, ours against deeplay's eager ``AttentionUNet`` measured in the same run. The machine was
shared with other jobs, so absolute figures vary from run to run; channels_last led in every run.

    python -m experiments.bench.unet --sweep --repeats 2 --deeplay-python ...   (best of 2, load ~5)
    option                         training step        forward (denoising step)
    deeplay AttentionUNet, eager   1.82                  8.73
    UNet, eager                    2.25  (1.23x)         9.30  (1.06x)
    UNet, channels_last            2.70  (1.48x)        11.97  (1.37x)
    UNet, torch.compile            1.76  (0.96x)         7.59  (0.87x)
    UNet, channels_last + compile  1.75  (0.96x)         7.49  (0.86x)

An earlier interleaved in-process comparison on a quieter machine gave deeplay 6.1 / 21.4, ours eager
6.3 / 23.3, channels_last 8.5 / 26.7, compile 7.1 / 31.9. So ``channels_last`` is the fastest
option for training on CPU, and the default here; ``torch.compile`` can speed up sampling when the
machine is idle, after tens of seconds of compilation. On GPUs measure with the benchmark.
"""

from __future__ import annotations

import torch
from torch import nn


def optimize_for_speed(model: nn.Module, channels_last: bool = True, compile: bool = False) -> nn.Module:
    """Return a faster equivalent of ``model`` (same outputs up to float rounding, same parameters).

    channels_last: store convolution weights as NHWC (``model.to(memory_format=...)``, which converts
        ``model`` itself, as ``nn.Module.to`` does); inputs may stay NCHW, the first convolution
        switches layout. The best single option for training on CPU.
    compile: wrap in ``torch.compile``; the wrapper shares ``model``'s parameters, so optimise and save
        ``model`` as usual. Pays off for long sampling runs (2,000 forward passes per image batch).
    """
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile else model
