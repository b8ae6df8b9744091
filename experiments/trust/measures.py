"""How far a super-resolved image can be trusted: re-degradation consistency and Fourier ring correlation
(the std map's calibration: :mod:`experiments.trust.calibration`; the samples' spread:
:mod:`experiments.trust.posterior`).

* :func:`consistency` re-degrades the output to the widefield input's resolution and maps where they
  disagree (the idea of SQUIRREL, Culley et al., Nature Methods 15, 263-266, 2018): structure the
  model invented has no counterpart in the input and lights up.
* :func:`fourier_ring_correlation` compares two images ring by ring in Fourier space (Banterle et
  al., J. Struct. Biol. 183, 363-367, 2013; Nieuwenhuizen et al., Nature Methods 10, 557-562, 2013),
  with the 1/7 and half-bit thresholds (van Heel & Schatz, J. Struct. Biol. 151, 250-262, 2005).
  Between two samples of one input it says down to which scale the model's guesses agree.

The FRC and SQUIRREL measures are written here by hand, in torch with ``torch.fft``, because the
packages that provide them pin ``numpy<2`` (``frc``) or pull OpenCL and OpenCV (``nanopyx``).

Images are single 2-D tensors ``[H, W]`` of any float dtype, on any device, in any intensity unit (the
measures are either scale-free or reported in the input's unit). Computations run in float64.

A measure that an image cannot define (the correlation of a constant frame, a fit on a frame narrower
than the blur, the FRC of a 1 x 1 field) is None and carries a note saying why, never NaN and never an
exception: one degenerate frame must not cost the measures of the others, nor the ones it does define.
Invalid arguments (mismatched sizes, an empty sigma range) still raise.
"""

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
from torch import Tensor

from experiments.microscope.optics import FWHM_PER_SIGMA, GaussianOTF, apply_transfer

Window = Literal["tukey", "hann", "none"]
WINDOWS: tuple[str, ...] = get_args(Window)
TUKEY_TAPER = 0.25  # fraction of each side that the Tukey window tapers: the centre 50 % stays untouched
ONE_SEVENTH = 1.0 / 7.0
HALF_BIT_SNR = (math.sqrt(2.0) - 1.0) / 2.0  # van Heel & Schatz (2005): per half of the data, 1/2 bit in all
KERNEL_RADIUS_SIGMAS = 4.0  # the mirrored border of the Gaussian RSF: 6e-5 of its mass per axis lies beyond
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
# Values whose spread is at most this fraction of their largest magnitude count as constant: float64
# rounding in the blur leaves ~1e-14, the finest step of a float32 image is ~6e-8.
CONSTANT_TOLERANCE = 1e-10
MIN_FIT_SIDE = 2  # input pixels per side inside the border: a blur, a scale and a correlation need a 2-D patch


def _plane(image: Tensor, name: str) -> Tensor:
    """``[H, W]`` (or ``[1, H, W]``, ``[1, 1, H, W]``) -> float64 ``[H, W]``."""
    plane = image.detach().to(torch.float64)
    while plane.ndim > 2 and plane.shape[0] == 1:
        plane = plane[0]
    if plane.ndim != 2:
        raise ValueError(f"{name} must be one 2-D image [H, W]; got shape {tuple(image.shape)}")
    return plane


def _is_constant(values: Tensor) -> bool:
    """Whether ``values`` differ by no more than rounding (:data:`CONSTANT_TOLERANCE`)."""
    return bool(values.max() - values.min() <= CONSTANT_TOLERANCE * values.abs().max())


def _non_finite(images: dict[str, Tensor]) -> str | None:
    """Which of ``images`` (by name) holds NaN or infinity, as a note, or None."""
    name = next((name for name, image in images.items() if not bool(torch.isfinite(image).all())), None)
    return None if name is None else f"the {name} holds NaN or infinite values"


# --- Re-degradation consistency (SQUIRREL) -------------------------------------------------------


@dataclass(frozen=True)
class Consistency:
    """The re-degradation of one output against its widefield input.

    ``error_map``: ``[h, w]`` on the input's grid, in its unit and dtype, ``|alpha * D(G_sigma * sr) + beta -
    widefield|``; its outer ``border`` pixels are computed with reflected content and left out of the
    fit and the scores. ``rse``: root-mean-square of the map inside the border; ``rsp``: Pearson
    correlation of the re-degraded output with the input inside the border (1 = perfect). ``alpha``,
    ``beta``: the fitted intensity scale and offset; ``sigma``: the fitted RSF width in output pixels
    (at an end of the searched range, the range was too narrow: widen it).

    A measure the images do not define is None, and ``notes`` maps its name to why: against a constant
    input every blur fits equally (no ``sigma``) and nothing correlates (no ``rsp``); an output constant
    once re-degraded has no ``sigma`` or ``rsp`` either, and its scale and offset cannot be told apart (no
    ``alpha``, ``beta``); ``rse`` and the map stay defined. A frame too small for the fit, or holding NaN,
    gets no measure at all and a map of zeros, noted under ``"error_map"``, so that a stack's maps still
    stack.
    """

    error_map: Tensor
    rse: float | None
    rsp: float | None
    alpha: float | None
    beta: float | None
    sigma: float | None
    border: int
    notes: dict[str, str] = field(default_factory=dict)


CONSISTENCY_MEASURES = ("rse", "rsp", "alpha", "beta", "sigma")


def _grid_factor(sr: Tensor, widefield: Tensor) -> int:
    """The integer ratio of the output's size to the input's (1 when both are on one grid)."""
    (height, width), (low_height, low_width) = sr.shape, widefield.shape
    factor = height // low_height
    if factor < 1 or height != factor * low_height or width != factor * low_width:
        raise ValueError(
            f"the output ({height}x{width}) must be the input's size ({low_height}x{low_width}) times an integer; "
            "crop both to matching sizes, or pass the bicubic-upsampled input"
        )
    return factor


def redegrade(sr: Tensor, sigma: float, factor: int) -> Tensor:
    """The output taken back to the input's resolution by the microscope's forward model
    (:func:`experiments.microscope.optics.apply_transfer`, the blur that simulates the training inputs): a
    Gaussian PSF of width ``sigma`` output pixels (the resolution-scaling function of Culley et al. 2018),
    mirrored by its 4-sigma reach at the edges, then averaged over ``factor x factor`` blocks onto the
    input's grid (a camera pixel integrates the light over its area). ``sr``: ``[H, W]`` with H, W multiples
    of ``factor``; returns ``[H / factor, W / factor]``."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 pixels; got {sigma}")
    # Lengths in pixels: a pixel of 1 nm makes the PSF's FWHM in nm its width in pixels.
    blurred = apply_transfer(sr, GaussianOTF(sigma * FWHM_PER_SIGMA), 1e-3, math.ceil(KERNEL_RADIUS_SIGMAS * sigma))
    height, width = sr.shape
    return blurred.reshape(height // factor, factor, width // factor, factor).mean((1, 3))


def _fit_scale_offset(degraded: Tensor, widefield: Tensor) -> tuple[float, float, float]:
    """Closed-form least squares of ``widefield ~ alpha * degraded + beta`` (both flat): (alpha, beta,
    residual sum of squares). A constant ``degraded`` fits through its offset alone (alpha 0)."""
    centred = degraded - degraded.mean()
    variance = (centred**2).sum()
    alpha = 0.0 if _is_constant(degraded) else float((centred * (widefield - widefield.mean())).sum() / variance)
    beta = float(widefield.mean() - alpha * degraded.mean())
    residual = float(((alpha * degraded + beta - widefield) ** 2).sum())
    return alpha, beta, residual


def _fit_size_problem(
    output_shape: tuple[int, int], input_shape: tuple[int, int], border: int, sigma_max: float
) -> str | None:
    """Why a frame of these shapes cannot be fitted with ``border`` and blurs up to ``sigma_max``, or None."""
    needed = 2 * border + MIN_FIT_SIDE
    if min(input_shape) < needed:
        return (f"frame of {input_shape[0]} x {input_shape[1]} px is too small for the re-degradation fit "
                f"(needs at least {needed} px per side)")
    radius = math.ceil(KERNEL_RADIUS_SIGMAS * sigma_max)
    if radius >= min(output_shape):
        return (f"output of {output_shape[0]} x {output_shape[1]} px is too small for a blur of sigma {sigma_max:g} px "
                f"(needs more than {radius} px per side)")
    return None


def _skipped_fit(widefield: Tensor, border: int, reason: str, dtype: torch.dtype) -> Consistency:
    """A :class:`Consistency` without any measure, all noted with ``reason``, and a map of zeros."""
    notes = dict.fromkeys(CONSISTENCY_MEASURES, reason) | {"error_map": f"zeros, no fit: {reason}"}
    return Consistency(torch.zeros_like(widefield, dtype=dtype), None, None, None, None, None, border, notes)


def _content_notes(fitted: Tensor, target: Tensor) -> dict[str, str]:
    """The measures that a fit of ``fitted`` (the re-degraded output inside the border) to ``target`` (the
    input there) cannot define, and why."""
    notes = {}
    if _is_constant(target):
        notes["rsp"] = "the input frame is constant: correlation undefined"
        notes["sigma"] = "the input frame is constant: every blur fits it equally"
    if _is_constant(fitted):
        notes.setdefault("rsp", "the output is constant once re-degraded: correlation undefined")
        notes.setdefault("sigma", "the output is constant once re-degraded: every blur fits equally")
        notes["alpha"] = notes["beta"] = "the output is constant once re-degraded: scale and offset are not separable"
    return notes


def consistency(
    sr: Tensor,
    widefield: Tensor,
    sigma_range: tuple[float, float] = (0.0, 5.0),
    border: int | None = None,
    grid_points: int = 21,
    tolerance: float = 1e-4,
) -> Consistency:
    """Re-degradation consistency of a super-resolved image with its widefield input (SQUIRREL, Culley et
    al., Nature Methods 15, 263-266, 2018).

    ``sr``: ``[H, W]``; ``widefield``: ``[h, w]`` with ``H = f h``, ``W = f w`` for an integer ``f``
    (``f = 1`` when the input was upsampled to the output's grid, as BioSR's bicubic inputs are). The
    model ``widefield ~ alpha * D_f(G_sigma * sr) + beta`` (G_sigma a Gaussian of width sigma output
    pixels, D_f the f x f block mean) is fitted by least squares: for a fixed sigma, alpha and beta are
    a closed-form linear fit; sigma is searched in ``sigma_range`` (output pixels) on a grid of
    ``grid_points`` values, then refined by golden-section search in the bracket around the best grid
    point to ``tolerance`` pixels (``low == high`` fixes sigma). The fit and the scores use the pixels
    at least ``border`` input pixels from the edge (default: the RSF's 4-sigma radius at the largest
    sigma), where reflect padding cannot reach. A frame too small for that border or blur, or holding
    NaN, is not fitted; measures its content cannot define are None (see :class:`Consistency`).
    Returns a :class:`Consistency`.
    """
    dtype = widefield.dtype
    sr, widefield = _plane(sr, "sr"), _plane(widefield, "widefield")
    factor = _grid_factor(sr, widefield)
    low, high = sigma_range
    if not 0.0 <= low <= high:
        raise ValueError(f"sigma_range must be (low, high) with 0 <= low <= high pixels; got {sigma_range}")
    if grid_points < 3:
        raise ValueError(f"grid_points must be at least 3 to bracket a minimum; got {grid_points}")
    border = math.ceil(KERNEL_RADIUS_SIGMAS * high / factor) if border is None else border
    if border < 0:
        raise ValueError(f"border must be >= 0 pixels; got {border}")
    problem = _fit_size_problem(tuple(sr.shape), tuple(widefield.shape), border, high) or _non_finite(
        {"output": sr, "input": widefield}
    )
    if problem is not None:
        return _skipped_fit(widefield, border, problem, dtype)
    inner = (slice(border, widefield.shape[0] - border), slice(border, widefield.shape[1] - border))
    target = widefield[inner].flatten()

    def residual(sigma: float) -> float:
        return _fit_scale_offset(redegrade(sr, sigma, factor)[inner].flatten(), target)[2]

    grid = torch.linspace(low, high, grid_points, dtype=torch.float64).tolist()
    best = min(range(grid_points), key=lambda index: residual(grid[index]))
    left, right = grid[max(best - 1, 0)], grid[min(best + 1, grid_points - 1)]
    # Golden-section search: the residual is unimodal within one grid step of the grid's best point.
    inner_left, inner_right = right - GOLDEN * (right - left), left + GOLDEN * (right - left)
    value_left, value_right = residual(inner_left), residual(inner_right)
    while right - left > tolerance:
        if value_left < value_right:
            right, inner_right, value_right = inner_right, inner_left, value_left
            inner_left = right - GOLDEN * (right - left)
            value_left = residual(inner_left)
        else:
            left, inner_left, value_left = inner_left, inner_right, value_right
            inner_right = left + GOLDEN * (right - left)
            value_right = residual(inner_right)
    sigma = min((grid[best], 0.5 * (left + right)), key=residual)

    degraded = redegrade(sr, sigma, factor)
    fitted = degraded[inner].flatten()
    alpha, beta, _ = _fit_scale_offset(fitted, target)
    error_map = (alpha * degraded + beta - widefield).abs()
    rse = float(error_map[inner].pow(2).mean().sqrt())
    notes = _content_notes(fitted, target)
    rsp = None if "rsp" in notes else float(torch.corrcoef(torch.stack([fitted, target]))[0, 1])
    return Consistency(
        error_map.to(dtype), rse, rsp, None if "alpha" in notes else alpha, None if "beta" in notes else beta,
        None if "sigma" in notes else sigma, border, notes,
    )  # fmt: skip


# --- Fourier ring correlation --------------------------------------------------------------------


@dataclass(frozen=True)
class FRC:
    """A Fourier ring correlation and the resolutions where it crosses its thresholds.

    ``correlation``, ``one_seventh``, ``half_bit``, ``pixels``: ``[R]`` per ring ``r = 0 .. N // 2``
    (radius in frequency pixels; ring r holds the frequencies r / (N pixel) cycles per unit length).
    ``*_crossing``: the ring radius (fractional, interpolated) where the curve first falls below that
    threshold, None if it never does up to Nyquist (the images agree at every scale the grid holds).
    ``*_px``: the resolution N / radius in pixels, and ``*_nm`` the same times the pixel size, when one
    was given.

    ``note``: why the FRC is undefined (a 1 x 1 field, a constant image, NaN), None when it is defined.
    An undefined FRC has no crossings and a zero curve; its None crossings do not mean agreement, so
    check ``note`` before reading a None crossing as Nyquist.
    """

    correlation: Tensor
    one_seventh: Tensor
    half_bit: Tensor
    pixels: Tensor
    size: int
    pixel_size_um: float | None
    one_seventh_crossing: float | None
    half_bit_crossing: float | None
    note: str | None = None

    def _resolution(self, crossing: float | None, length: float | None) -> float | None:
        """The period of ``crossing`` in units of ``length`` per pixel."""
        if crossing is None or length is None:
            return None
        return self.size / crossing * length

    def _nm_per_pixel(self) -> float | None:
        return None if self.pixel_size_um is None else 1000.0 * self.pixel_size_um

    @property
    def resolution_px(self) -> float | None:
        """Resolution at the 1/7 threshold, in pixels."""
        return self._resolution(self.one_seventh_crossing, 1.0)

    @property
    def resolution_nm(self) -> float | None:
        """Resolution at the 1/7 threshold, in nm (None without a pixel size)."""
        return self._resolution(self.one_seventh_crossing, self._nm_per_pixel())

    @property
    def half_bit_resolution_px(self) -> float | None:
        return self._resolution(self.half_bit_crossing, 1.0)

    @property
    def half_bit_resolution_nm(self) -> float | None:
        return self._resolution(self.half_bit_crossing, self._nm_per_pixel())


def apodisation(size: int, window: Window, dtype: torch.dtype = torch.float64) -> Tensor:
    """``[size, size]`` separable window that takes the image smoothly to 0 at its edges, so the jump
    across the periodic boundary (the same in both images) does not correlate every ring. ``"tukey"``:
    flat centre, cosine tapers over ``TUKEY_TAPER`` of each side; ``"hann"``: cosine over the whole side;
    ``"none"``: all ones."""
    position = (torch.arange(size, dtype=dtype) + 0.5) / size  # pixel centres in (0, 1)
    if window == "none":
        profile = torch.ones(size, dtype=dtype)
    elif window == "hann":
        profile = torch.sin(math.pi * position) ** 2
    elif window == "tukey":
        edge = torch.minimum(position, 1.0 - position) / TUKEY_TAPER  # < 1 inside a taper
        profile = torch.where(edge < 1.0, torch.sin(0.5 * math.pi * edge) ** 2, torch.ones_like(edge))
    else:
        raise ValueError(f"unknown FRC window {window!r}; choose one of {WINDOWS}")
    return profile[:, None] * profile[None, :]


def half_bit_threshold(pixels: Tensor) -> Tensor:
    """The half-bit threshold of van Heel & Schatz (J. Struct. Biol. 151, 250-262, 2005) for rings of
    ``pixels`` = n Fourier pixels: their information threshold (SNR + (2 sqrt SNR + 1) / sqrt n) / (SNR
    + 1 + 2 sqrt SNR / sqrt n) at SNR = (sqrt 2 - 1) / 2, the SNR of each half of the data when the
    whole holds 1/2 bit (log2(1 + 2 SNR) = 1/2); numerically (0.2071 + 1.9102 / sqrt n) / (1.2071 +
    0.9102 / sqrt n)."""
    root_snr, inverse_root = math.sqrt(HALF_BIT_SNR), pixels.to(torch.float64).clamp(min=1).rsqrt()
    return (HALF_BIT_SNR + (2 * root_snr + 1) * inverse_root) / (1 + HALF_BIT_SNR + 2 * root_snr * inverse_root)


def _first_crossing(curve: Tensor, threshold: Tensor) -> float | None:
    """Fractional ring where ``curve`` first falls below ``threshold``: the first ring r >= 1 below it
    (ring 0, the mean, is skipped), linearly interpolated from ring r - 1, which lies above. When ring 1
    is already below, no ring is resolved and the crossing is 1 (a resolution of the whole field).
    None when the curve stays above up to Nyquist."""
    gap = (curve - threshold).tolist()
    for ring in range(1, len(gap)):
        if gap[ring] < 0:
            return 1.0 if ring == 1 else ring - 1 + gap[ring - 1] / (gap[ring - 1] - gap[ring])
    return None


def _frc_problem(first: Tensor, second: Tensor) -> str | None:
    """Why the FRC of ``first`` and ``second`` ([N, N] each) is undefined, or None: a field with no ring
    beyond the mean, NaN, or a constant image, whose power beyond the mean is 0 (or, windowed, only the
    window's own), so every ring would be 0 / 0 or a correlation of the window with itself."""
    size = first.shape[0]
    if size < 2:
        return f"a field of {size} x {size} px has no ring beyond the mean: FRC undefined"
    non_finite = _non_finite({"first image": first, "second image": second})
    if non_finite is not None:
        return f"{non_finite}: FRC undefined"
    constant = [name for name, image in (("first", first), ("second", second)) if _is_constant(image)]
    if constant:
        return f"the {' and the '.join(constant)} image {'are' if len(constant) > 1 else 'is'} constant: FRC undefined"
    return None


def fourier_ring_correlation(
    first: Tensor, second: Tensor, pixel_size_um: float | None = None, window: Window = "tukey"
) -> FRC:
    """Fourier ring correlation of two images of the same square field (Banterle et al., J. Struct.
    Biol. 183, 363-367, 2013; Nieuwenhuizen et al., Nature Methods 10, 557-562, 2013):

        FRC(r) = Re sum_{|k| in ring r} F1(k) F2*(k) / sqrt(sum |F1(k)|^2 sum |F2(k)|^2),

    ring r holding the DFT frequencies whose radius rounds to r, r = 0 .. N // 2. Both images are
    multiplied by the ``window`` (:func:`apodisation`, Tukey by default) first. The resolution is where
    the curve first falls below the 1/7 threshold (Nieuwenhuizen et al.) and the half-bit threshold
    (:func:`half_bit_threshold`). A ring where either image has no power counts as 0. ``first``,
    ``second``: ``[N, N]``. Returns an :class:`FRC`, undefined (its ``note`` saying why) for a 1 x 1
    field, a constant image or NaN.
    """
    first, second = _plane(first, "first"), _plane(second, "second")
    if first.shape != second.shape or first.shape[0] != first.shape[1]:
        raise ValueError(
            f"FRC needs two square images of one size; got {tuple(first.shape)} and {tuple(second.shape)}: "
            "crop both to the same square"
        )
    if pixel_size_um is not None and not pixel_size_um > 0:
        raise ValueError(f"pixel_size_um must be positive; got {pixel_size_um}")
    size = first.shape[0]
    frequencies = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64, device=first.device)
    rings = torch.sqrt(frequencies[:, None] ** 2 + frequencies[None, :] ** 2).round().long().flatten()
    keep = rings <= size // 2  # the corners beyond Nyquist hold incomplete rings
    rings = rings[keep]

    def ring_sum(values: Tensor) -> Tensor:
        return torch.zeros(size // 2 + 1, dtype=torch.float64, device=first.device).index_add_(
            0, rings, values.flatten()[keep]
        )

    pixels = torch.bincount(rings.cpu(), minlength=size // 2 + 1)
    one_seventh = torch.full((size // 2 + 1,), ONE_SEVENTH, dtype=torch.float64)
    half_bit = half_bit_threshold(pixels)
    note = _frc_problem(first, second)
    if note is not None:
        return FRC(torch.zeros_like(one_seventh), one_seventh, half_bit, pixels, size, pixel_size_um, None, None, note)
    weights = apodisation(size, window).to(first.device)
    spectrum_1, spectrum_2 = torch.fft.fft2(first * weights), torch.fft.fft2(second * weights)
    cross = ring_sum((spectrum_1 * spectrum_2.conj()).real)
    power = ring_sum(spectrum_1.abs() ** 2) * ring_sum(spectrum_2.abs() ** 2)
    correlation = torch.where(power > 0, cross / power.sqrt(), torch.zeros_like(cross)).cpu()
    return FRC(
        correlation, one_seventh, half_bit, pixels, size, pixel_size_um,
        _first_crossing(correlation, one_seventh), _first_crossing(correlation, half_bit),
    )  # fmt: skip
