"""Figures of the trust measures of :mod:`experiments.trust.measures`: the check of a prediction (input, output,
std, consistency map), the calibration curve, the FRC curve and the power spectra of :mod:`experiments.trust.spectrum`,
as PNG files.

Built like :mod:`experiments.figures` (Agg canvas, no pyplot, one PNG per call, path returned). Input
and output are drawn in grey with the fixed limits [-1, 1]; the std and the consistency map, in their
own units, each get a colour scale from 0 to their maximum over the drawn rows and a colour bar.
"""

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from experiments.figures import ImageStack, new_figure, plot_image_grid, save_figure
from experiments.trust.calibration import Calibration
from experiments.trust.measures import FRC
from experiments.trust.spectrum import HIGH_BAND


def plot_check(
    inputs: ImageStack,
    outputs: ImageStack,
    std: ImageStack | None,
    consistency_maps: ImageStack,
    path: str | Path,
    title: str | None = None,
    max_images: int = 4,
) -> Path:
    """One row per image: input, output, std of the samples (when given), consistency map.

    ``inputs``, ``outputs``: ``[N, 1, H, W]`` (or ``[N, H, W]``) in [-1, 1], the input possibly on a
    coarser grid; ``std``: ``[N, 1, H, W]`` (None for a single sample); ``consistency_maps``: the
    :attr:`~experiments.trust.measures.Consistency.error_map` of each image, ``[N, 1, h, w]``. Where the map is
    bright the output does not re-degrade to the input: structure there has no support in the data.
    """
    maps = {"Std": std} if std is not None else {}
    maps["Consistency |error|"] = consistency_maps
    # Wider colour-bar columns, so their bars and tick labels do not run into the next title.
    return plot_image_grid({"Input": inputs, "Output": outputs}, maps, path, title, max_images,
                           map_limits=_zero_based_limits, image_width=2.4, map_width=3.0)


def _zero_based_limits(maps: np.ndarray) -> tuple[float, float]:
    """0 to the maximum (never 0 itself, so an all-zero map still has a colour scale)."""
    return 0.0, max(float(maps.max()), np.finfo(np.float32).tiny)


def plot_calibration(curves: Mapping[str, Calibration], path: str | Path, unit: str = "") -> Path:
    """Actual RMSE of the mean against the predicted error std, one line per entry of ``curves`` (e.g.
    ``{"raw": ..., "calibrated (s = 1.8)": ...}``), with the diagonal of perfect calibration; each
    legend entry gives the curve's ENCE. ``unit`` labels the axes (e.g. ``"[-1, 1] units"``)."""
    if not curves:
        raise ValueError("plot_calibration needs at least one calibration curve")
    figure = new_figure(4.5, 4.2)
    axes = figure.subplots()
    largest = max(max(float(curve.predicted.max()), float(curve.actual.max())) for curve in curves.values())
    axes.plot([0.0, largest], [0.0, largest], "k--", linewidth=1, label="calibrated")
    for name, curve in curves.items():
        label = f"{name} (ENCE {curve.ence:.2f})"
        axes.plot(curve.predicted.numpy(), curve.actual.numpy(), "o-", markersize=4, label=label)
    suffix = f" ({unit})" if unit else ""
    axes.set_xlabel(f"Predicted error std{suffix}")
    axes.set_ylabel(f"Actual RMSE of the mean{suffix}")
    axes.set_xlim(0.0, 1.05 * largest)
    axes.set_ylim(0.0, 1.05 * largest)
    axes.set_aspect("equal")
    axes.legend(fontsize="small")
    return save_figure(figure, path)


def plot_frc(curves: Mapping[str, FRC], path: str | Path) -> Path:
    """FRC curves against spatial frequency (1 / resolution: per nm when every curve has a pixel size,
    else per pixel), with the 1/7 and (for the first curve) the half-bit thresholds; each legend entry
    gives the resolution at 1/7, or why the FRC is undefined."""
    if not curves:
        raise ValueError("plot_frc needs at least one FRC curve")
    in_nm = all(curve.pixel_size_um is not None for curve in curves.values())
    figure = new_figure(5.5, 3.8)
    axes = figure.subplots()
    for index, (name, curve) in enumerate(curves.items()):
        frequency = np.arange(len(curve.correlation)) / (curve.size * (1000.0 * curve.pixel_size_um if in_nm else 1.0))
        resolution = curve.resolution_nm if in_nm else curve.resolution_px
        if curve.note is not None:
            label = f"{name} (undefined: {curve.note})"
        else:
            label = f"{name} ({resolution:.3g} {'nm' if in_nm else 'px'})" if resolution else f"{name} (beyond Nyquist)"
        axes.plot(frequency[1:], curve.correlation.numpy()[1:], color=f"C{index}", label=label)
        if index == 0:
            axes.plot(frequency[1:], curve.half_bit.numpy()[1:], "k:", linewidth=1, label="half-bit")
    axes.axhline(1 / 7, color="k", linestyle="--", linewidth=1, label="1/7")
    axes.set_xlabel("Spatial frequency (1/nm)" if in_nm else "Spatial frequency (1/pixel)")
    axes.set_ylabel("FRC")
    axes.set_ylim(-0.2, 1.05)
    axes.legend(fontsize="small")
    return save_figure(figure, path)


def plot_spectra(spectra: Mapping[str, Mapping[str, Mapping[str, list[float]]]], path: str | Path, title: str,
                 bicubic_label: str = "bicubic input") -> Path:
    """One panel per level: each spectrum over the target's (dB) against the frequency (cycles per pixel), the
    band of the high-frequency measure shaded. ``spectra``: name -> level -> the ``spectrum`` record of an
    evaluation (``frequency``, ``target``, ``sample``, ``mean``, ``bicubic``); each name's one sample is drawn
    solid and its output (the mean of its samples) dashed, once where they are one curve (a single sample, a
    regression), the first name's bicubic input in grey."""
    names = list(spectra)
    levels = list(spectra[names[0]])
    columns = min(3, len(levels))
    rows = -(-len(levels) // columns)
    figure = new_figure(4.2 * columns, 3.2 * rows)
    grid = np.atleast_2d(figure.subplots(rows, columns, squeeze=False))
    figure.subplots_adjust(hspace=0.5, wspace=0.3)
    for axes, level in zip(grid.flat, levels):
        first = spectra[names[0]][level]

        def relative(power: list[float]) -> list[float]:
            return [10 * math.log10(p / t) if p > 0 and t > 0 else math.nan for p, t in zip(power, first["target"])]

        axes.plot(first["frequency"], relative(first["bicubic"]), color="0.4", label=bicubic_label)
        for index, name in enumerate(names):
            spectrum = spectra[name][level]
            if spectrum["sample"] == spectrum["mean"]:  # one sample, or a regression: its output is its sample
                axes.plot(spectrum["frequency"], relative(spectrum["mean"]), color=f"C{index}", label=name)
                continue
            axes.plot(spectrum["frequency"], relative(spectrum["sample"]), color=f"C{index}", label=f"{name}: one sample")
            axes.plot(spectrum["frequency"], relative(spectrum["mean"]), "--", color=f"C{index}", label=f"{name}: output")
        axes.axhline(0, color="k", lw=0.8)
        axes.axvspan(*HIGH_BAND, color="0.92", zorder=0)
        axes.set_title(level, fontsize=9)
        axes.set_xlabel("cycles per pixel")
        axes.set_ylabel("power over target's (dB)")
        axes.grid(alpha=0.3)
    for axes in list(grid.flat)[len(levels):]:
        axes.set_visible(False)
    grid.flat[0].legend(fontsize=6)
    figure.suptitle(title)
    return save_figure(figure, path)
