"""Whether N samples of one input spread as draws from its posterior do: the posterior check.

If the samples ``x_1 .. x_N`` and the target ``y`` are independent draws from one distribution (the
posterior of the clean image given the input), each pixel's squared error decomposes as

    mean_i |x_i - y|^2 = |m - y|^2 + mean_i |x_i - m|^2          (m: the mean of the N samples)

and in expectation ``E|m - y|^2 = (1 + 1/N) s^2`` and ``E mean_i |x_i - m|^2 = (1 - 1/N) s^2`` (s^2 the
posterior variance), so the ratio of the error of one sample to the error of the mean of N is

    ratio = mean_i MSE(x_i, y) / MSE(m, y)  ->  2 / (1 + 1/N)                        (1.78 at N = 8)

A sampler whose samples are near copies of each other (a collapsed posterior) gives 1; one whose samples
spread too far, more than the expected value. The check reports, per image, the **dispersion**
``(ratio - 1) / (expected - 1)``: 1 for draws from the posterior, 0 for copies. It is the share of the real
error of the mean that the samples' spread predicts, the quantity a std map's calibration must correct.
"""

from __future__ import annotations

import torch
from torch import Tensor

# A sampler passes when the dispersion's 95 % interval over images reaches this band: its spread is
# within 20 % (in the ratio's excess over 1) of a posterior's; below it the error bars are too narrow.
DISPERSION_BAND = (0.8, 1.25)


def expected_ratio(samples: int) -> float:
    """``2 / (1 + 1 / N)``: the posterior's ratio of one sample's MSE to that of the mean of ``samples``."""
    if samples < 2:
        raise ValueError(f"the posterior check needs 2 or more samples per image; got {samples}")
    return 2.0 / (1.0 + 1.0 / samples)


def error_ratios(samples: Tensor, target: Tensor) -> Tensor:
    """Per image, the mean over samples of each sample's MSE over the MSE of their mean (float64 [B]).

    ``samples``: ``[N, B, ...]``, ``target``: ``[B, ...]``, in one intensity unit. An image whose mean hits
    its target exactly has no ratio (NaN), and is left out by :func:`dispersions`."""
    if samples.shape[1:] != target.shape:
        raise ValueError(f"samples [N, B, ...] must match target [B, ...]; got {tuple(samples.shape)}, {tuple(target.shape)}")
    samples, target = samples.double(), target.double()
    one = (samples - target).pow(2).flatten(2).mean(2).mean(0)
    mean = (samples.mean(0) - target).pow(2).flatten(1).mean(1)
    return torch.where(mean > 0, one / mean.clamp_min(torch.finfo(torch.float64).tiny), torch.nan)


def dispersions(samples: Tensor, target: Tensor) -> list[float]:
    """Per image, ``(ratio - 1) / (expected - 1)`` (:func:`error_ratios`, :func:`expected_ratio`): 1 for
    posterior draws, 0 for identical samples; images without a ratio are left out."""
    expected = expected_ratio(samples.shape[0])
    ratios = error_ratios(samples, target)
    return [float((ratio - 1.0) / (expected - 1.0)) for ratio in ratios if not torch.isnan(ratio)]


def passes(low: float, high: float) -> bool:
    """Whether a dispersion interval ``[low, high]`` reaches :data:`DISPERSION_BAND`."""
    return high >= DISPERSION_BAND[0] and low <= DISPERSION_BAND[1]
