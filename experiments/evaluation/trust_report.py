"""The trust measures of ``python -m experiments.evaluate`` for each level (issue 13), beside the bicubic input.

Per image, on [-1, 1] images:

* ``rse``, ``rsp``: re-degradation consistency of the output (mean of the samples) with its widefield
  input (:func:`experiments.trust.check.redegradation`, SQUIRREL). The bicubic input against itself is
  consistent by construction, so it has no such row.
* ``frc_px``: FRC resolution (1/7 threshold, pixels) of the output against the target, and of the
  bicubic input against the target: what the model resolves that the input did not.
* ``frc_samples_px`` (two or more samples): FRC resolution of sample 1 against sample 2: below it the
  samples disagree and the model guesses.
* ``hf_power_db``, ``hf_power_sample_db``: the power of the output (and of the bicubic input), and of one sample,
  in the upper half of the spatial frequencies, relative to the target's (:mod:`experiments.trust.spectrum`): a
  blurred estimate loses it, a draw from the posterior keeps it. The radially averaged spectra themselves are
  recorded under ``spectrum``.

Resolutions are the median over images; an image whose curve never falls below 1/7 counts as Nyquist
(2 px), the finest a grid can show. An image on which a measure is undefined (a constant frame has no
RSP, nor an FRC) is left out of that measure's average, and ``<measure>_left_out`` counts it; a measure
undefined on every image is None with a note. With two or more samples, the posterior check
(:mod:`experiments.trust.posterior`: do the samples spread as draws from the posterior?) and
:func:`calibration_report`: the std map's calibration curve and the coverage of its 90 % interval, raw and
with each calibration factor of :mod:`experiments.trust.calibration` fitted on the validation split (never
on a test level) applied.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ddpm.settings import UsageError
from experiments.config.schema import DataConfig, EvalConfig, SamplingConfig
from experiments.pairs.dataset import read_pairs
from experiments.data.layout import DatasetError
from experiments.trust.check import redegradation, square_frc
from experiments.evaluation.loop import evaluate
from experiments.evaluation.stats import mean_interval
from experiments.trust.calibration import (
    Calibration,
    ErrorModel,
    calibration,
    coverage,
    fit_curve,
    fit_interval,
    PREDICTED,
    interval_width,
    rank_correlation,
)
from experiments.inference.sampling import mean_and_spread, predicts_std
from experiments.trust.posterior import dispersions, expected_ratio, passes
from experiments.trust.spectrum import band_ratio_db, radial_power, ring_frequencies
from experiments.trust.figures import plot_calibration
from experiments.inference.predictor import Predictor
from experiments.integrity.json_files import NOTE_SUFFIX

NYQUIST_PX = 2.0
LEFT_OUT_SUFFIX = "_left_out"


def _resolution_px(first: Tensor, second: Tensor) -> float | None:
    """FRC resolution (1/7, pixels): Nyquist where the curve never falls below 1/7, None where undefined."""
    frc = square_frc(first, second, None)
    if frc.note is not None:
        return None
    return NYQUIST_PX if frc.resolution_px is None else frc.resolution_px


def _summarised(key: str, values: list[float | None], average: Callable[[list[float]], float]) -> dict:
    """``{key: average of the defined values, key_left_out: how many were None}``; the average None, with
    a note, when none is defined."""
    defined = [value for value in values if value is not None]
    entry = {key: average(defined) if defined else None, f"{key}{LEFT_OUT_SUFFIX}": len(values) - len(defined)}
    if not defined:
        entry[f"{key}{NOTE_SUFFIX}"] = f"undefined on every one of the {len(values)} images"
    return entry


@dataclass
class TrustAccumulator:
    """Collects the measures of every batch of one split; pass :meth:`update` as ``observe`` to
    :func:`experiments.evaluation.evaluate`. The per-image lists hold None where the measure is undefined."""

    rse: list[float | None] = field(default_factory=list)
    rsp: list[float | None] = field(default_factory=list)
    frc: list[float | None] = field(default_factory=list)
    frc_bicubic: list[float | None] = field(default_factory=list)
    frc_samples: list[float | None] = field(default_factory=list)
    means: list[Tensor] = field(default_factory=list)
    stds: list[Tensor] = field(default_factory=list)
    targets: list[Tensor] = field(default_factory=list)
    dispersion: list[float] = field(default_factory=list)  # the posterior check's, per image (2+ samples)
    # radially averaged power spectra summed over images: "target", "sample" (the first), "mean", "bicubic"
    spectra: dict[str, Tensor] = field(default_factory=dict)
    spectrum_shape: tuple[int, int] | None = None
    samples: int = 0
    calibration_only: bool = False  # validation: keep what calibration needs, skip the per-image measures
    seconds: float = 0.0  # spent in update: the measures' cost beside the sampling's

    def update(self, inputs: Tensor, samples: Tensor, targets: Tensor) -> None:
        """``inputs``, ``targets``: [B, 1, H, W]; ``samples``: [S, B, 1, H, W], all in [-1, 1], or a probabilistic
        regression's image and predicted std [1, B, 2, H, W] (:func:`~experiments.inference.sampling.predicts_std`)."""
        start = time.perf_counter()
        drawn = not predicts_std(samples)  # samples of a sampler, not a probabilistic regression's one output
        self.samples = len(samples) if drawn else PREDICTED
        mean, std = mean_and_spread(samples)
        for index in range(0 if self.calibration_only else len(inputs)):
            fit = redegradation(mean[index, 0], inputs[index, 0])
            self.rse.append(fit.rse)
            self.rsp.append(fit.rsp)
            self.frc.append(_resolution_px(mean[index, 0], targets[index, 0]))
            self.frc_bicubic.append(_resolution_px(inputs[index, 0], targets[index, 0]))
            if drawn and self.samples > 1:
                self.frc_samples.append(_resolution_px(samples[0, index, 0], samples[1, index, 0]))
        if not self.calibration_only:
            self._add_spectra({"target": targets, "sample": samples[0, :, :1] if drawn else mean, "mean": mean,
                               "bicubic": inputs})
        if std is not None:
            self.means.append(mean)
            self.stds.append(std)
            self.targets.append(targets.float())
        if drawn and self.samples > 1:
            self.dispersion.extend(dispersions(samples, targets))
        self.seconds += time.perf_counter() - start

    def _add_spectra(self, images: dict[str, Tensor]) -> None:
        shape = tuple(images["target"].shape[-2:])
        if self.spectrum_shape is None:
            self.spectrum_shape = shape
        elif shape != self.spectrum_shape:
            raise ValueError(f"the spectra average images of one size; got {shape} after {self.spectrum_shape}")
        for name, batch in images.items():
            power = radial_power(batch.float()[:, 0]).sum(0)
            self.spectra[name] = power if name not in self.spectra else self.spectra[name] + power

    def metrics(self) -> dict[str, dict]:
        """``{"model": {...}, "bicubic": {...}, "spectrum": {...}}``: mean RSE and RSP, median FRC resolutions
        (pixels), over the images where each is defined (:func:`_summarised`; never NaN), the high-frequency power
        relative to the target's (dB), and the mean radially averaged spectra with their frequencies."""
        model = {**_summarised("rse", self.rse, statistics.fmean), **_summarised("rsp", self.rsp, statistics.fmean),
                 **_summarised("frc_px", self.frc, statistics.median), "measure_seconds": self.seconds}
        bicubic = _summarised("frc_px", self.frc_bicubic, statistics.median)
        if self.frc_samples:
            model.update(_summarised("frc_samples_px", self.frc_samples, statistics.median))
        if self.dispersion:
            model["posterior"] = self.posterior_check()
        if not self.spectra:
            return {"model": model, "bicubic": bicubic}
        frequencies, target = ring_frequencies(*self.spectrum_shape), self.spectra["target"]

        def relative(key: str, name: str) -> dict:  # None with a note where the ratio is undefined, never NaN
            value = band_ratio_db(self.spectra[name], target, frequencies)
            if math.isfinite(value):
                return {key: value}
            return {key: None, f"{key}{NOTE_SUFFIX}": "no power in the band, in the target or in this image"}

        model.update(relative("hf_power_db", "mean"), **relative("hf_power_sample_db", "sample"))
        bicubic.update(relative("hf_power_db", "bicubic"))
        images = len(self.rse)
        spectrum = {"frequency": frequencies.tolist(),
                    **{name: (power / images).tolist() for name, power in self.spectra.items()}}
        return {"model": model, "bicubic": bicubic, "spectrum": spectrum}

    def stacked(self) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, std and target of every image seen, [N, 1, H, W] each (two or more samples only)."""
        if not self.means:
            raise UsageError("calibration needs a std: two or more samples per image (evaluate with --samples 2 or more), "
                             "or a probabilistic regression")
        return torch.cat(self.means), torch.cat(self.stds), torch.cat(self.targets)

    def posterior_check(self) -> dict:
        """The posterior check (:mod:`experiments.trust.posterior`) over the images seen: the dispersion's mean
        and 95 % interval (1: the samples spread as posterior draws; 0: copies), the ratio a posterior gives,
        and whether the interval reaches :data:`~experiments.trust.posterior.DISPERSION_BAND`."""
        interval = mean_interval(self.dispersion)
        half = interval.half_width or 0.0
        return {"dispersion": interval.mean, "dispersion_ci95": interval.half_width, "images": interval.n,
                "expected_ratio": expected_ratio(self.samples), "passes": passes(interval.mean - half, interval.mean + half)}

    def fit_models(self) -> dict[str, ErrorModel]:
        """Both error models fitted on what was seen (:mod:`experiments.trust.calibration`: ``curve``, fitted to
        the calibration curve; ``interval``, that curve rescaled so that its 90 % interval holds 90 % of the
        pixels): call it on validation only."""
        seen = self.stacked()
        curve = fit_curve(*seen, self.samples)
        return {"curve": curve, "interval": fit_interval(*seen, self.samples, curve)}

    def rank_correlation(self) -> float:
        """Spearman's correlation of the std map with |error| over every pixel seen (any error model keeps it)."""
        mean, std, target = self.stacked()
        return rank_correlation(std, mean - target)

    def calibration(self, model: ErrorModel = ErrorModel()) -> Calibration:
        return calibration(*self.stacked(), self.samples, model=model)

    def calibration_row(self, model: ErrorModel = ErrorModel()) -> dict[str, float]:
        """The error model, the curve's ECE, ENCE and worst bin, and the 90 % interval's coverage and mean
        width ([-1, 1] units) on what was seen."""
        mean, std, target = self.stacked()
        curve = self.calibration(model)
        return {"scale": model.scale, "floor": model.floor, "ece": curve.ece, "ence": curve.ence,
                "worst_gap": curve.worst_gap, "coverage90": coverage(mean, std, target, self.samples, model),
                "width90": interval_width(std, self.samples, model)}


def validation_models(predictor: Predictor, data: DataConfig, sampling: SamplingConfig, schedule: EvalConfig,
                      progress: bool) -> dict | None:
    """Both error models (:meth:`TrustAccumulator.fit_models`) fitted on the validation split of ``data`` (its
    first ``schedule.max_test_images``, sampled as the test levels are) and how many images they saw, as
    ``{"curve": {"scale", "floor"}, "interval": {...}, "images": n}``; None when it has no validation split;
    without the models, and a note why, when they cannot be fitted (samples that never differ)."""
    try:
        dataset = read_pairs(data, "validate")
    except (DatasetError, FileNotFoundError):
        return None
    seen = TrustAccumulator(calibration_only=True)
    evaluate(predictor.model, predictor.diffusion, dataset, sampling, schedule, schedule.max_test_images,
             progress=progress, description="validate (calibration)", observe=seen.update)
    images = sum(len(mean) for mean in seen.means)
    try:
        fitted = {method: asdict(model) for method, model in seen.fit_models().items()}
    except ValueError as error:  # e.g. samples that never differ: no error model, said so, the rest measured
        return {"images": images, f"calibration{NOTE_SUFFIX}": f"no error model could be fitted: {error}"}
    return {**fitted, "images": images}


def calibration_report(test: TrustAccumulator, models: dict | None, figure: Path) -> dict[str, dict]:
    """The std map's calibration on ``test``: ``raw`` and, with the validation ``models`` (None: no validation
    split), with each of its error models applied (``curve``, ``interval``); draws the curves into ``figure``.
    The raw row also holds the rank correlation of std and |error| (the error models keep the std's order)."""
    result = {"raw": {**test.calibration_row(), "rank_correlation": test.rank_correlation()}}
    curves = {"raw": test.calibration()}
    for method in [method for method in ("curve", "interval") if models is not None and method in models]:
        model = ErrorModel(**models[method])
        result[method] = test.calibration_row(model)
        curves[f"{method}: scale {model.scale:.2f}, floor {model.floor:.3f}"] = test.calibration(model)
    plot_calibration(curves, figure, "[-1, 1] units")
    return result


QUALITY_COLUMNS = {"rse": "RSE vs input ↓", "rsp": "RSP vs input ↑", "frc_px": "FRC vs target (px) ↓",
                   "frc_samples_px": "FRC sample vs sample (px) ↓", "hf_power_db": "HF power vs target (dB)",
                   "hf_power_sample_db": "HF power of one sample (dB)"}


def append_section(report: Path, levels: dict[str, dict], models: dict | None) -> None:
    """Append the trust measures of every level to the Markdown ``report``."""
    lines = ["", "## Can this output be trusted?", "", quality_table({k: v["quality"] for k, v in levels.items()}), "",
             "RSE / RSP: re-degradation consistency of the output with its widefield input (SQUIRREL); FRC: "
             "resolution (1/7 threshold, median over images, Nyquist = 2 px when never crossed) against the "
             "target, and between two samples of one input (below it the model guesses). \"k left out\": images "
             "on which the measure is undefined (e.g. constant frames), not averaged; n/a: undefined on every image. HF power: "
             "the power above a quarter cycle per pixel relative to the target's (0 dB: as much detail; below: blurred)."]
    calibrated = {level: v["calibration"] for level, v in levels.items() if "calibration" in v}
    if calibrated:
        source = ("no validation split: no error model fitted, raw only" if models is None else
                  models.get(f"calibration{NOTE_SUFFIX}", "each error model fitted on the validation split (never on "
                                                          "test), applied to each test level"))
        lines += ["", f"Calibration of the std map ({source}); figures calibration_<level>.png. Coverage: the share "
                  "of pixels inside +-1.645 calibrated std (goal 0.88 to 0.92); worst gap: the largest |RMSE - "
                  "predicted| / predicted of a bin of the curve (goal below 0.15).", "",
                  "| | std | scale | floor | coverage 90 % | width 90 % | ENCE | worst gap | rank corr. std, abs. error |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for level, values in calibrated.items():
            for method, row in values.items():
                ranked = f"{row['rank_correlation']:.2f}" if "rank_correlation" in row else "same"
                lines.append(f"| {level} | {method} | {row['scale']:.3f} | {row['floor']:.4f} | {row['coverage90']:.3f} "
                             f"| {row['width90']:.3f} | {row['ence']:.3f} | {row['worst_gap']:.3f} | {ranked} |")
    checked = {level: v["quality"]["model"]["posterior"] for level, v in levels.items() if "posterior" in v["quality"]["model"]}
    if checked:
        lines += ["", "Posterior check (MSE of one sample over MSE of the mean of N against 2 / (1 + 1/N), as "
                  "dispersion: 1 for draws from the posterior, 0 for copies; passes when its interval reaches 0.8 to 1.25):", "",
                  "| | dispersion | images | passes |", "|---|---|---|---|"]
        for level, row in checked.items():
            half = "" if row["dispersion_ci95"] is None else f" ± {row['dispersion_ci95']:.2f}"
            lines.append(f"| {level} | {row['dispersion']:.2f}{half} | {row['images']} | {'yes' if row['passes'] else 'no'} |")
    with report.open("a", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def quality_table(levels: dict[str, dict[str, dict[str, float]]]) -> str:
    """A Markdown table of :meth:`TrustAccumulator.metrics` per level (rows "level: model" and
    "level: bicubic input"); a value not measured shows as "–", one undefined on every image as "n/a",
    and images left out of an average are counted beside it."""
    lines = ["| | " + " | ".join(QUALITY_COLUMNS.values()) + " |", "|---" * (len(QUALITY_COLUMNS) + 1) + "|"]
    for level, rows in levels.items():
        for name, label in (("model", "model"), ("bicubic", "bicubic input")):
            cells = [_cell(rows[name], key) for key in QUALITY_COLUMNS]
            lines.append(f"| {level}: {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(row: dict, key: str) -> str:
    if key not in row:
        return "–"
    value, left_out = row[key], row.get(f"{key}{LEFT_OUT_SUFFIX}", 0)
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" ({left_out} left out)" if left_out else "")
