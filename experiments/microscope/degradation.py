"""What a microscope does to a SIM window, drawn per window: the ranges of the widefield degradation.

A model trained on one exact microscope loses most of its gain on another (docs/data.md, "Randomized
degradation"), so the real-structure set can draw, for every window, its own optics, background and
photon budget around BioSR's measured microscope. Each range below is declared beside its field with
its reason; ``(low, high)`` with ``low == high`` is a fixed value. Three presets (:data:`DEGRADATIONS`):

* ``fixed``: today's model (Gaussian PSF of 215 nm FWHM, flat 5 % background, levels' photons); the
  shipped models up to issue 33 were trained on it;
* ``measured``: the same, with BioSR's measured 488 nm OTF in place of the Gaussian;
* ``randomized``: the measured OTF broadened by extra blur, background that is not flat, photon budgets
  and read noise drawn over ranges wider than BioSR's.

A window's recording (:func:`record`), in photoelectrons relative to the cell's bright structures:
``((camera + haze) * illumination) / reference + flat``, then Poisson and read noise. Camera offset and
gain are not drawn: every input is min-max scaled (:func:`experiments.microscope.widefield.input_images`),
which removes both; what they leave (the Poisson statistics) is set by the photon budget in electrons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from ddpm.settings import UsageError
from experiments.microscope.optics import GaussianOTF, apply_transfer, border_px

Span = tuple[float, float]
DegradationName = Literal["fixed", "measured", "randomized"]
DEGRADATIONS: tuple[str, ...] = get_args(DegradationName)
# The widefield PSF: "gaussian" (experiments.microscope.widefield.WidefieldModel's 215 nm), "measured" (BioSR's
# 488 nm OTF, experiments/microscope/otf), or the path of a user's .mrc OTF or bead image.
GAUSSIAN, MEASURED = "gaussian", "measured"


def _check_span(name: str, span: Span, low: float, high: float = math.inf) -> None:
    if len(span) != 2 or not low <= span[0] <= span[1] <= high:
        raise UsageError(f"--data.degradation {name} must be (low, high) with {low} <= low <= high <= {high}, got {span}")


@dataclass(frozen=True)
class Degradation:
    """The ranges a window's degradation is drawn from (uniform; photons log-uniform)."""

    # The widefield PSF around which the blur is drawn (see GAUSSIAN, MEASURED).
    optics: str = GAUSSIAN
    # Extra Gaussian blur convolved with that PSF (nm FWHM): focus drift, a thicker sample, a worse
    # objective. 0 to 370 nm takes the measured PSF's 215 nm to 450 nm, past the 280 to 370 nm that the
    # best Gaussian fits to recorded BioSR widefield images give (issue 33).
    extra_blur_fwhm_nm: Span = (0.0, 0.0)
    # Mean background as a fraction of the bright-structure signal: 0 to 40 %, since recordings fitted
    # with a flat offset show 10 to 30 % where the fixed model assumes 5 %.
    background: Span = (0.05, 0.05)
    # The share of that background that is out-of-focus structure rather than flat: recorded residuals
    # hold 6 to 44 times more power at low spatial frequencies than at high ones, which flat light
    # plus shot noise cannot give.
    structured_share: Span = (0.0, 0.0)
    # Width (µm FWHM) of the defocus blur of the out-of-focus structure: light from 0.5 to 2 µm above
    # or below the TIRF layer spreads over about that much.
    haze_fwhm_um: Span = (1.0, 1.0)
    # Uneven illumination: the signal times 1 + a * (a smooth wave of period 2 to 4 windows), a drawn
    # from this range; TIRF fields are typically flat to 10-30 % over a cell.
    illumination: Span = (0.0, 0.0)
    # Photoelectrons at the bright structures (sum of the 9 frames) for training and validation pairs;
    # None: by the pair's level (WidefieldModel.photons, 20 to 2,000). The test split always uses its
    # levels' photons, so that its levels keep their meaning.
    photons: Span | None = None
    # rms read noise of one frame (e-): sCMOS cameras 1 to 2 e-, older or faster-read ones up to 3.
    read_noise_per_frame: Span = (1.6, 1.6)

    def __post_init__(self) -> None:
        _check_span("extra_blur_fwhm_nm", self.extra_blur_fwhm_nm, 0.0, 2000.0)
        _check_span("background", self.background, 0.0, 10.0)
        _check_span("structured_share", self.structured_share, 0.0, 1.0)
        _check_span("haze_fwhm_um", self.haze_fwhm_um, 0.05, 5.0)
        _check_span("illumination", self.illumination, 0.0, 0.9)
        _check_span("read_noise_per_frame", self.read_noise_per_frame, 0.0, 100.0)
        if self.photons is not None:
            _check_span("photons", self.photons, 1e-3)
        if not self.optics:
            raise UsageError("--data.degradation optics: give 'gaussian', 'measured' or the path of an OTF / bead image")


FIXED = Degradation()
MEASURED_OPTICS = Degradation(optics=MEASURED)
RANDOMIZED = Degradation(
    optics=MEASURED, extra_blur_fwhm_nm=(0.0, 370.0), background=(0.0, 0.4), structured_share=(0.3, 1.0),
    haze_fwhm_um=(0.5, 2.0), illumination=(0.0, 0.3), photons=(10.0, 4000.0), read_noise_per_frame=(1.0, 3.0),
)
PRESETS: dict[str, Degradation] = {"fixed": FIXED, "measured": MEASURED_OPTICS, "randomized": RANDOMIZED}


def preset_name(degradation: Degradation) -> str | None:
    """The name of the preset ``degradation`` is, or None for ranges of one's own."""
    return next((name for name, preset in PRESETS.items() if preset == degradation), None)


def degradation_preset(name: str) -> Degradation:
    if name not in PRESETS:
        raise UsageError(f"unknown degradation {name!r}; choose one of {DEGRADATIONS}")
    return PRESETS[name]


@dataclass(frozen=True)
class Draw:
    """One window's degradation, drawn from a :class:`Degradation`."""

    extra_blur_fwhm_nm: float
    background: float
    structured_share: float
    haze_fwhm_um: float
    illumination: float
    illumination_wave: tuple[float, float, float]  # period (windows), direction, phase (rad)
    read_noise_per_frame: float
    photons: float | None  # None: the level's


def _uniform(rng: np.random.Generator, span: Span) -> float:
    return float(span[0]) if span[0] == span[1] else float(rng.uniform(*span))


def draw(degradation: Degradation, rng: np.random.Generator) -> Draw:
    """One window's values, each drawn from its range (a fixed range draws nothing from ``rng``; the
    illumination's wave only where its amplitude can be above 0)."""
    wave = (3.0, 0.0, 0.0)
    if degradation.illumination[1] > 0:
        wave = (float(rng.uniform(2.0, 4.0)), float(rng.uniform(0, np.pi)), float(rng.uniform(0, 2 * np.pi)))
    photons = None
    if degradation.photons is not None:
        low, high = degradation.photons
        photons = float(math.exp(_uniform(rng, (math.log(low), math.log(high)))))
    return Draw(
        _uniform(rng, degradation.extra_blur_fwhm_nm), _uniform(rng, degradation.background),
        _uniform(rng, degradation.structured_share), _uniform(rng, degradation.haze_fwhm_um),
        _uniform(rng, degradation.illumination), wave, _uniform(rng, degradation.read_noise_per_frame), photons,
    )  # fmt: skip


def gaussian_blur(image: np.ndarray, fwhm_nm: float, pixel_um: float, margin: int) -> np.ndarray:
    """``image`` [H, W] (holding ``margin`` px of real surroundings on each side) blurred by a Gaussian of
    ``fwhm_nm``, cut to its inner [H - 2 margin, W - 2 margin]; the margin must cover the Gaussian's reach."""
    inner = image[margin : image.shape[0] - margin, margin : image.shape[1] - margin]
    if fwhm_nm == 0:
        return inner
    blurred = apply_transfer(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                             GaussianOTF(fwhm_nm), pixel_um, 0).numpy()
    return blurred[margin : image.shape[0] - margin, margin : image.shape[1] - margin]


def margin_px(fwhm_nm: float, pixel_um: float) -> int:
    """The surroundings a Gaussian blur of ``fwhm_nm`` needs (its reach, :func:`border_px`); 0 for none."""
    return border_px(GaussianOTF(fwhm_nm), pixel_um) if fwhm_nm > 0 else 0


def illumination_field(side: int, amplitude: float, wave: tuple[float, float, float]) -> np.ndarray:
    """``1 + amplitude * cos(...)``: one smooth wave of ``wave[0]`` windows' period across a window of ``side``."""
    period, direction, phase = wave
    ys, xs = np.mgrid[0:side, 0:side] / side
    along = xs * np.cos(direction) + ys * np.sin(direction)
    return (1.0 + amplitude * np.cos(2 * np.pi * along / period + phase)).astype(np.float32)
