"""Whether the samples' spread predicts the error of their mean, and the error model that makes it do so.

The std of N samples predicts the std of their mean's error as ``predicted_error_std`` (a posterior sampler's
``std sqrt((N + 1) / (N - 1))``); a probabilistic regression predicts that std itself (``samples`` =
:data:`PREDICTED`). Samplers that shrink the posterior, and errors no sample shows (the noise of
the target itself, where every sample agrees), make it too small; an :class:`ErrorModel` corrects both:

    error std = sqrt((scale * predicted error std)^2 + floor^2)

* :func:`calibration` draws the curve of the actual error against the predicted one, bin by bin (Levi et
  al., "Evaluating and calibrating uncertainty prediction in regression tasks", 2019; Kuleshov et al.,
  ICML 2018), with its ENCE and its worst bin;
* :func:`fit_curve` fits the error model to that curve (least squares of each bin's relative misfit of its
  mean squared error: linear in scale^2 and floor^2); :func:`fit_interval` rescales a fitted model so
  that its ``Z90`` interval holds 90 % of the pixels (split-conformal, Angelopoulos & Bates 2021). Either is
  fitted on validation images and applied to test images and to a user's (:class:`StdCalibration`, shipped
  in a model's checkpoint);
* :func:`coverage` is the share of pixels inside the interval, the test of either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

# The two-sided 90 % quantile of a normal distribution: the interval mean +- Z90 std holds 90 % of its mass.
Z90 = 1.6448536269514722
# The "samples" of a std that the model predicts for its error (a probabilistic regression's one evaluation):
# it needs no finite-sample factor.
PREDICTED = 0
CalibrationMethod = Literal["curve", "interval"]
CALIBRATION_METHODS: tuple[str, ...] = get_args(CalibrationMethod)


@dataclass(frozen=True)
class ErrorModel:
    """``error std = sqrt((scale * predicted error std)^2 + floor^2)``; the identity by default."""

    scale: float = 1.0
    floor: float = 0.0  # in the image unit

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0 and math.isfinite(self.floor) and self.floor >= 0):
            raise ValueError(f"an error model needs scale > 0 and floor >= 0, finite; got {self.scale}, {self.floor}")

    def error_std(self, std: Tensor, samples: int) -> Tensor:
        """The std of the error of the mean of ``samples`` samples whose population std is ``std``."""
        predicted = self.scale * predicted_error_std(std, samples)
        return predicted if self.floor == 0 else torch.sqrt(predicted**2 + self.floor**2)


@dataclass(frozen=True)
class Calibration:
    """Calibration curve of the predicted error std against the actual error of the samples' mean.

    ``predicted``, ``actual``, ``counts``: ``[B]`` per bin of pixels (equal counts, sorted by predicted
    std): the root-mean predicted variance and the root-mean-square actual error in the bin. ``ece``:
    the count-weighted mean of ``|actual - predicted|`` over bins, in the image unit; ``ence``: the
    count-weighted mean of ``|actual - predicted| / predicted`` (Levi et al. 2019's ENCE, scale-free);
    ``worst_gap``: the largest ``|actual - predicted| / predicted`` of a bin. ``model``: the error model
    the predicted std came from (the identity unless calibrated).
    """

    predicted: Tensor
    actual: Tensor
    counts: Tensor
    ece: float
    ence: float
    worst_gap: float
    model: ErrorModel


def predicted_error_std(std: Tensor, samples: int) -> Tensor:
    """Predicted std of the error of the mean of ``samples`` draws against the target, from their
    per-pixel std ``std`` (population std, divisor N, as :func:`experiments.evaluation.loop.sample` returns).

    For a posterior sampler the target is one more draw from the distribution the samples come from, so
    the mean's error is the spread of the target around the posterior mean (sigma^2) plus the sampling
    error of the mean (sigma^2 / N): variance sigma^2 (1 + 1 / N). The unbiased sample variance
    estimates sigma^2 as std^2 N / (N - 1); together std * sqrt((N + 1) / (N - 1)). (The std of the
    mean around the model's own expectation, sigma / sqrt(N), would leave out the first, larger term.)
    With ``samples`` = :data:`PREDICTED`, ``std`` is that prediction already.
    """
    if samples == PREDICTED:
        return std
    if samples < 2:
        raise ValueError(f"a spread needs at least 2 samples per input; got {samples}")
    return std * math.sqrt((samples + 1) / (samples - 1))


def _binned(predicted: Tensor, error: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Pixels sorted by predicted std, split into ``bins`` equal-count bins: per bin the root-mean
    predicted variance, the root-mean-square error and the pixel count."""
    predicted, error = predicted.detach().to(torch.float64).flatten(), error.detach().to(torch.float64).flatten()
    if predicted.numel() < bins or bins < 1:
        raise ValueError(
            f"need at least one bin and one pixel per bin; got {predicted.numel()} pixels, {bins} bins"
        )
    order = predicted.argsort()
    groups = list(zip(predicted[order].tensor_split(bins), error[order].tensor_split(bins)))
    rmv = torch.stack([group.pow(2).mean().sqrt() for group, _ in groups]).cpu()
    rmse = torch.stack([group.pow(2).mean().sqrt() for _, group in groups]).cpu()
    counts = torch.tensor([len(group) for group, _ in groups])
    return rmv, rmse, counts


def calibration(mean: Tensor, std: Tensor, target: Tensor, samples: int, bins: int = 10,
                model: ErrorModel = ErrorModel()) -> Calibration:
    """Calibration of per-pixel uncertainty (Levi et al. 2019; Kuleshov et al., ICML 2018).

    ``mean``, ``std``: the mean and the population std of ``samples`` samples per pixel, any shape
    (e.g. ``[B, 1, H, W]``); ``target``: the same shape. The predicted error std is ``model.error_std``;
    pixels are put in ``bins`` equal-count bins by it, and in each bin the root-mean predicted variance is
    compared with the RMSE of ``mean - target``. Calibrated means the curve lies on the diagonal. The std
    of N samples is itself a noisy estimate, and binning by it sorts pixels by their luck: even for a
    perfect sampler the RMSE in a bin exceeds the predicted std, by about sqrt((N - 1) / (N - 3)) when the
    true spreads are spread evenly on a log scale (3 % at N = 32, 18 % at N = 8), and the top bin, full of
    overestimates, falls below it. Use many samples (16 or more) for a meaningful curve.
    """
    if mean.shape != std.shape or mean.shape != target.shape:
        raise ValueError(f"mean, std and target must have one shape; got {mean.shape}, {std.shape}, {target.shape}")
    rmv, rmse, counts = _binned(model.error_std(std.detach().to(torch.float64), samples), mean - target, bins)
    weights = counts / counts.sum()
    gap = (rmse - rmv).abs()
    positive = bool((rmv > 0).all())
    ence = float((weights * gap / rmv).sum()) if positive else math.inf
    worst = float((gap / rmv).max()) if positive else math.inf
    return Calibration(rmv, rmse, counts, float((weights * gap).sum()), ence, worst, model)


def fit_curve(mean: Tensor, std: Tensor, target: Tensor, samples: int, bins: int = 10) -> ErrorModel:
    """The error model that fits the calibration curve of these (validation) images: with each bin's mean
    predicted variance ``v_b`` and mean squared error ``e_b``, the least squares of the relative misfit
    ``(scale^2 v_b + floor^2) / e_b - 1`` over the bins (weighted by their pixel counts), linear in scale^2
    and floor^2, so that every bin counts alike whatever its error; a negative floor^2 refits the scale alone.
    Bins without error are left out. Arguments as in :func:`calibration`; fit on validation images only,
    never on those it is tested on."""
    curve = calibration(mean, std, target, samples, bins)
    variance, error, weight = curve.predicted.double() ** 2, curve.actual.double() ** 2, curve.counts.double()
    keep = error > 0
    a, c, w = variance[keep] / error[keep], 1.0 / error[keep], weight[keep]
    if not bool((a > 0).any()):
        raise ValueError("the samples never differ (std 0 everywhere) or never miss: nothing to calibrate")
    normal = torch.stack([torch.stack([(w * a * a).sum(), (w * a * c).sum()]), torch.stack([(w * a * c).sum(), (w * c * c).sum()])])
    right = torch.stack([(w * a).sum(), (w * c).sum()])
    scale2, floor2 = torch.linalg.lstsq(normal, right[:, None]).solution[:, 0].tolist()
    if scale2 <= 0 or floor2 < 0:  # outside the model's range: the scale alone
        scale2, floor2 = float((w * a).sum() / (w * a * a).sum()), 0.0
    return ErrorModel(math.sqrt(scale2), math.sqrt(floor2))


def fit_interval(mean: Tensor, std: Tensor, target: Tensor, samples: int, shape: ErrorModel = ErrorModel(),
                 share: float = 0.9) -> ErrorModel:
    """``shape`` times the factor c for which ``mean +- Z90 * c * shape.error_std`` holds ``share`` of the
    pixels of these (validation) images: c is the conformal ``share`` quantile of |error| / error std, over
    Z90 (split-conformal calibration, Angelopoulos & Bates 2021, with the error model as the score's scale).
    Arguments as in :func:`calibration`; fit on validation images only."""
    if not 0 < share < 1:
        raise ValueError(f"share must lie in (0, 1); got {share}")
    predicted = shape.error_std(std.detach().to(torch.float64), samples).flatten()
    error = (mean.detach().to(torch.float64) - target.detach().to(torch.float64)).abs().flatten()
    # a pixel without predicted error is inside its interval only where it has no error either
    ratios = torch.where(predicted > 0, error / predicted.clamp_min(torch.finfo(torch.float64).tiny),
                         torch.where(error > 0, math.inf, 0.0))
    rank = min(len(ratios), math.ceil((len(ratios) + 1) * share))  # the conformal quantile's rank, 1-based
    factor = float(ratios.kthvalue(rank).values) / Z90
    if not 0 < factor < math.inf:
        raise ValueError(f"no scale of this error model holds {share:.0%} of the pixels: too many have an error but no "
                         "predicted spread (fit a floor first, fit_curve)" if factor == math.inf else
                         "the samples' means hit their targets exactly: nothing to calibrate")
    return ErrorModel(shape.scale * factor, shape.floor * factor)


def coverage(mean: Tensor, std: Tensor, target: Tensor, samples: int, model: ErrorModel = ErrorModel()) -> float:
    """The share of pixels whose error lies within ``Z90 * model.error_std``: 0.9 when the calibrated std
    map's 90 % interval means what it says."""
    half = Z90 * model.error_std(std.detach().to(torch.float64), samples)
    error = (mean.detach().to(torch.float64) - target.detach().to(torch.float64)).abs()
    return float((error <= half).double().mean())


def interval_width(std: Tensor, samples: int, model: ErrorModel = ErrorModel()) -> float:
    """The mean full width ``2 Z90 * model.error_std`` of the 90 % interval over the pixels, in the image unit."""
    return 2 * Z90 * float(model.error_std(std.detach().to(torch.float64), samples).mean())


@dataclass(frozen=True)
class StdCalibration:
    """A shipped model's error model, with where it holds: fitted by ``method`` (:func:`fit_curve`, or
    :func:`fit_interval` on top of it) on ``images`` validation images of ``samples`` samples each, drawn by
    the sampler ``sampler`` on ``evaluations`` network evaluations with ``eta``. It holds for samples of that
    sampler only."""

    scale: float
    floor: float
    method: CalibrationMethod
    sampler: str
    evaluations: int
    eta: float
    samples: int
    images: int

    def __post_init__(self) -> None:
        ErrorModel(self.scale, self.floor)  # checks both
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}; got {self.method!r}")

    @property
    def model(self) -> ErrorModel:
        return ErrorModel(self.scale, self.floor)

    def error_std(self, std: Tensor, samples: int) -> Tensor:
        """The calibrated std of the error of the mean of ``samples`` samples whose spread is ``std``."""
        return self.model.error_std(std, samples)

    def describe(self) -> str:
        fitted = {"curve": "fitted to the calibration curve", "interval": "scaled so that +-1.645 std holds 90 %"}[self.method]
        if self.samples == PREDICTED:
            return (f"calibrated std of the output's error, sqrt(({self.scale:.3f} x the model's predicted std)^2 + "
                    f"{self.floor:.4f}^2) in [-1, 1] units, {fitted} of the pixels of {self.images} validation images")
        return (f"calibrated std of the output's error, sqrt(({self.scale:.3f} x samples' std x sqrt((N + 1) / (N - 1)))^2 "
                f"+ {self.floor:.4f}^2) in [-1, 1] units, {fitted} of the pixels of {self.images} validation images "
                f"({self.samples} samples of {self.sampler} on {self.evaluations} evaluations)")


def rank_correlation(std: Tensor, error: Tensor) -> float:
    """Spearman's correlation of the std map with |error| over all pixels: whether the map is high where the
    error is, whatever its scale (ties get the order they come in, enough for continuous maps)."""
    def ranks(values: Tensor) -> Tensor:
        flat = values.detach().to(torch.float64).flatten()
        order = flat.argsort()
        ranked = torch.empty_like(flat)
        ranked[order] = torch.arange(len(flat), dtype=torch.float64)
        return ranked

    first, second = ranks(std), ranks(error.abs())
    return float(torch.corrcoef(torch.stack([first, second]))[0, 1])
