"""What ``python -m experiments.predict --check`` measures for each frame: can this output be trusted?

* Re-degradation consistency (SQUIRREL, :func:`experiments.trust.measures.consistency`): the output blurred
  back to widefield resolution and fitted to the input; its absolute error map lights up where the
  output holds structure that the input does not explain. Fitted against the *native* input (before
  ``--upsample``: the map is on the input's own grid, the size ratio 2 handled by the fit).
* Sample-to-sample FRC (:func:`experiments.trust.measures.fourier_ring_correlation`): two independent
  samples of the same input (prediction's first two; with one sample, one more chain drawn after it from
  the same seeded generator) are compared ring by ring; below the resolution where they stop agreeing the
  model guesses.

Images are the frames in [0, 1] units (the input normalised like the training data, the output mapped
by ``(v + 1) / 2``), so the map and RSE are in those units; alpha, beta and sigma (output pixels) are
the fitted re-degradation. :func:`redegradation` and :func:`square_frc` are also used by
:mod:`experiments.evaluation.trust_report`.

A degenerate frame (constant, a few pixels high, NaN) never stops the check: a measure it cannot define
is None in :data:`SUMMARY_NAME`, with a sibling ``"<measure>_note"`` saying why (the convention of
:func:`experiments.integrity.json_files.strict_json`), and a frame too small to fit gets a consistency map of zeros,
noted as ``"error_map_note"``. An FRC resolution that is None *without* a note is a defined answer: the
two samples agree up to Nyquist. The file is strict JSON, replaced atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from experiments.trust.measures import (
    FRC,
    KERNEL_RADIUS_SIGMAS,
    MIN_FIT_SIDE,
    Consistency,
    consistency,
    fourier_ring_correlation,
)
from experiments.integrity.json_files import NOTE_SUFFIX, write_json

SIGMA_RANGE = (0.0, 5.0)  # output pixels searched for the widefield blur (BioSR's PSF is ~2-3 px)
# A coarser sigma search than quality.consistency's default (fewer blur evaluations), the same RSE to
# 5 digits; sigma to 0.01 output pixels is plenty here.
SIGMA_GRID_POINTS = 11
SIGMA_TOLERANCE = 0.01
SUMMARY_NAME = "check.json"
# The summary's key for each measure of quality.Consistency (its notes are keyed by the attribute).
FIT_KEYS = {"rse": "rse", "rsp": "rsp", "alpha": "alpha", "beta": "beta", "sigma": "sigma_px"}
NO_PIXEL_SIZE = "no pixel size known: give --pixel-size (µm) or a TIF that states it"


def sigma_range(output_shape: tuple[int, int]) -> tuple[float, float]:
    """:data:`SIGMA_RANGE`, its top cut on a small output so that the 4-sigma kernel fits inside it (no
    blur at all on a one-pixel-wide output, which is too small to fit anyway)."""
    return SIGMA_RANGE[0], min(SIGMA_RANGE[1], (min(output_shape) - 1) / KERNEL_RADIUS_SIGMAS)


def fit_border(widefield_shape: tuple[int, int], factor: int, sigma_max: float) -> int:
    """Pixels left out at each edge of the input: the RSF's 4-sigma reach at the largest sigma, or, on
    an input too small for that, a quarter of what its shorter side holds beyond the fit's minimum (the
    fit needs pixels to work on); 0 on an input too small to fit at all, which the fit then notes."""
    reach = math.ceil(KERNEL_RADIUS_SIGMAS * sigma_max / factor)
    return max(0, min(reach, (min(widefield_shape) - MIN_FIT_SIDE) // 4))


def redegradation(output: Tensor, widefield: Tensor) -> Consistency:
    """:func:`~experiments.trust.measures.consistency` of ``output`` [H, W] with ``widefield`` [H / f, W / f]
    (f = 1 or 2) over :func:`sigma_range` (searched to :data:`SIGMA_TOLERANCE`), with the border of
    :func:`fit_border`."""
    factor = max(output.shape[-1] // widefield.shape[-1], 1)
    sigmas = sigma_range(tuple(output.shape[-2:]))
    border = fit_border(tuple(widefield.shape[-2:]), factor, sigmas[1])
    return consistency(output, widefield, sigmas, border, SIGMA_GRID_POINTS, SIGMA_TOLERANCE)


def central_square(image: Tensor) -> Tensor:
    """The largest centred square of ``image`` [..., H, W]: the FRC needs square images."""
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[..., top : top + side, left : left + side]


def square_frc(first: Tensor, second: Tensor, pixel_size_um: float | None) -> FRC:
    """FRC of the central squares of ``first`` and ``second`` [H, W] (pixel size in nm or None)."""
    return fourier_ring_correlation(central_square(first), central_square(second), pixel_size_um)


@dataclass(frozen=True)
class FrameCheck:
    """The check of one frame: its consistency fit and the FRC of two independent samples."""

    consistency: Consistency
    frc: FRC

    def summary(self) -> dict:
        """The numbers, JSON-ready: each a finite number or None. An undefined measure is None with a
        sibling ``"<key>_note"`` saying why; ``frc_*`` None without a note: the samples agree up to Nyquist."""
        fit, frc = self.consistency, self.frc
        entry = {}

        def put(key: str, value: float | None, note: str | None) -> None:
            entry[key] = value
            if note is not None:
                entry[f"{key}{NOTE_SUFFIX}"] = note

        for name, key in FIT_KEYS.items():
            put(key, getattr(fit, name), fit.notes.get(name))
        entry["border_px"] = fit.border
        if "error_map" in fit.notes:
            entry[f"error_map{NOTE_SUFFIX}"] = fit.notes["error_map"]
        put("frc_resolution_px", frc.resolution_px, frc.note)
        put("frc_resolution_nm", frc.resolution_nm, frc.note or (NO_PIXEL_SIZE if frc.pixel_size_um is None else None))
        put("frc_half_bit_px", frc.half_bit_resolution_px, frc.note)
        return entry


def check_frame(output: Tensor, widefield: Tensor, first: Tensor, second: Tensor, pixel_size_um: float | None) -> FrameCheck:
    """Check one frame: ``output`` [H, W] against ``widefield`` [H / f, W / f], and the samples
    ``first``, ``second`` [H, W] against each other. All in one intensity scale (any: alpha and beta
    absorb it)."""
    return FrameCheck(redegradation(output, widefield), square_frc(first, second, pixel_size_um))


def check_result(mean: np.ndarray, pair: Tensor, widefield: np.ndarray, pixel_size_um: float | None) -> FrameCheck:
    """:func:`check_frame` of a frame's ``mean`` [H, W] (in [0, 1]) and its ``pair`` of independent samples
    [2, H, W] (what :func:`experiments.inference.frames.super_resolve` returns with ``keep_pair``), against
    ``widefield`` [h, w] (the input on its own grid, in [0, 1]); ``pixel_size_um``: the output's, for the FRC
    in nm (None: pixels only)."""
    first, second = pair
    return check_frame(torch.from_numpy(mean), torch.from_numpy(widefield), first, second, pixel_size_um)


def summary_entries(source: Path, output: Path, summaries: list[dict]) -> list[dict]:
    """The entries of :data:`SUMMARY_NAME` for one input: one per frame, from each frame's
    :meth:`FrameCheck.summary`."""
    return [{"source": str(source), "output": str(output), "frame": index, **summary}
            for index, summary in enumerate(summaries)]


def write_summary(path: Path, entries: list[dict]) -> Path:
    """Write :data:`SUMMARY_NAME`: ``{"frames": [entry, ...]}``, one entry per input frame, as strict
    JSON replaced atomically (:func:`experiments.integrity.json_files.write_json`)."""
    return write_json(path, {"frames": entries})
