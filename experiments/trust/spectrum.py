"""How much fine detail an output holds beside its target: the radially averaged power spectrum.

Pixel metrics favour a blurred estimate: the mean of the posterior has the smallest squared error and the
least high-frequency power. A draw from the posterior should instead hold the target's power at every
frequency. So, measured without any downloaded network, per test level: the mean over images of

    P(f) = mean over the ring |k| in [f - df / 2, f + df / 2) of |FFT(x - mean x)|^2 / (H W)

(cycles per pixel, rings of width 1 / min(H, W) up to Nyquist, 0.5), for the target, one sample, the mean of
the samples and the bicubic input, each in the model's own intensity units ([-1, 1], not fitted: a fit to the
target would shrink an uncertain output's power). The summary number is the power in the upper half of the
band, :data:`HIGH_BAND`, relative to the target's, in dB: about 0 for an output with the target's detail,
below 0 for a blurred one, above for one with more (noise or invented structure).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Cycles per pixel: the upper half of the band up to Nyquist, where blur removes power first.
HIGH_BAND = (0.25, 0.5)


def ring_frequencies(height: int, width: int) -> Tensor:
    """The centre frequency (cycles per pixel) of each ring of :func:`radial_power`: ``(i + 0.5) / min(H, W)``
    for the rings below Nyquist."""
    side = min(height, width)
    return (torch.arange(side // 2, dtype=torch.float64) + 0.5) / side


def radial_power(images: Tensor) -> Tensor:
    """The radially averaged power spectrum of each image [..., H, W] (float64 [..., R], R rings of
    :func:`ring_frequencies`); each image's mean is taken off first, so the spectrum holds its structure."""
    images = images.double()
    height, width = images.shape[-2:]
    centred = images - images.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(centred).abs().pow(2) / (height * width)
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64)[None, :]
    side = min(height, width)
    ring = torch.floor(torch.sqrt(fy**2 + fx**2) * side).long().flatten()
    rings = side // 2
    inside = ring < rings
    flat = power.flatten(-2)[..., inside]
    index = ring[inside]
    totals = torch.zeros(*flat.shape[:-1], rings, dtype=torch.float64).index_add_(-1, index, flat)
    counts = torch.zeros(rings, dtype=torch.float64).index_add_(0, index, torch.ones_like(index, dtype=torch.float64))
    return totals / counts


def band_ratio_db(power: Tensor, reference: Tensor, frequencies: Tensor, band: tuple[float, float] = HIGH_BAND) -> float:
    """``10 log10`` of the power of spectrum ``power`` [R] over that of ``reference`` [R] in the rings whose centre
    lies in ``band`` (cycles per pixel); NaN where the reference holds none there."""
    inside = (frequencies >= band[0]) & (frequencies < band[1])
    ours, theirs = float(power[inside].sum()), float(reference[inside].sum())
    if theirs <= 0 or ours <= 0:
        return math.nan
    return 10.0 * math.log10(ours / theirs)
