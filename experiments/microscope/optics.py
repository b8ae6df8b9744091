"""The microscope's optics as one forward model: a radially symmetric optical transfer function (OTF) and
the blur it makes, used by the simulation of training data (:mod:`experiments.microscope.degradation`)
and by the re-degradation of ``predict --check`` (:func:`experiments.trust.measures.redegrade`).

Three sources of the widefield OTF, each a function of the spatial frequency ``k`` in cycles per µm:

* :class:`MeasuredOTF`: a measured radial OTF, sampled on a uniform grid of ``k``; read from the BioSR
  microscope's ``.mrc`` files (:func:`read_mrc_otf`, shipped in ``experiments/microscope/otf``) or from a
  user's bead image (:func:`otf_from_psf_image`);
* :class:`GaussianOTF`: the transfer of a Gaussian PSF of a given full width at half maximum;
* :class:`BroadenedOTF`: any OTF times a Gaussian, a PSF convolved with extra blur (focus drift, a
  thicker sample), whose width adds in quadrature to a Gaussian's.

The PSF of a radial OTF is its Hankel transform, ``PSF(r) = 2 pi int OTF(k) J0(2 pi k r) k dk``
(:func:`point_spread`), normalised so that it integrates to ``OTF(0) = 1``: a blur conserves the light.

A SIM image already carries a resolution of its own, so a SIM image is blurred to widefield by the *part*
of the widefield transfer it does not carry: ``OTF_widefield(k) / OTF_SIM(k)`` (:func:`relative_transfer`).
The choice stated here: the SIM image's own transfer is a Gaussian of half the widefield FWHM (SIM about
doubles the resolution; Gustafsson 2000). For Gaussians this is the familiar ``sigma_rel^2 = sigma_wf^2 -
sigma_sim^2``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ddpm.settings import UsageError

OTF_DIR = Path(__file__).parent / "otf"
# The measured OTF of BioSR's 488 nm channel, the microtubules' (their raw files are labelled c18-488).
BIOSR_488_OTF = OTF_DIR / "TIRF488_cam1_0_z30_OTF2d.mrc"
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
MRC_HEADER_BYTES = 1024
MRC_COMPLEX64 = 4
# Radii (µm) on which a PSF is evaluated: out to 3 µm, where the measured PSF's wings are below 1e-5 of
# its peak, in 1 nm steps (the FWHM to well under 1 nm).
PSF_RADII_UM = np.arange(0.0, 3.0, 0.001)
# The blur's reach: beyond it the PSF stays below this fraction of its peak (3.7 sigma for a Gaussian, about
# 1 µm for BioSR's measured PSF, whose wings fall as a power of r: 5 % of its light lies beyond 2 µm).
REACH_LEVEL = 1e-3


class OTF(Protocol):
    """A radial OTF: ``otf(k)`` for frequencies ``k`` (cycles / µm, any shape), 1 at ``k = 0``."""

    def __call__(self, k: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class GaussianOTF:
    """The OTF of a Gaussian PSF of full width at half maximum ``fwhm_nm``: ``exp(-2 pi^2 sigma^2 k^2)``."""

    fwhm_nm: float

    def __post_init__(self) -> None:
        if not self.fwhm_nm >= 0:
            raise UsageError(f"a Gaussian PSF's FWHM must be >= 0 nm, got {self.fwhm_nm}")

    @property
    def sigma_um(self) -> float:
        return self.fwhm_nm / FWHM_PER_SIGMA / 1000

    def __call__(self, k: np.ndarray) -> np.ndarray:
        return np.exp(-2 * np.pi**2 * self.sigma_um**2 * np.square(k))


@dataclass(frozen=True)
class MeasuredOTF:
    """A measured radial OTF: ``values[i]`` at ``k = i * step`` (cycles / µm), linearly interpolated
    between samples and 0 beyond the last (the objective passes nothing beyond its cut-off)."""

    step: float
    values: tuple[float, ...]
    source: str

    def __post_init__(self) -> None:
        if not self.step > 0 or len(self.values) < 2:
            raise UsageError(f"{self.source}: an OTF needs a positive frequency step and at least 2 samples")
        if not all(math.isfinite(v) for v in self.values) or not self.values[0] > 0:
            raise UsageError(f"{self.source}: the OTF holds non-finite values or is not positive at k = 0")

    @property
    def cutoff(self) -> float:
        """The last sampled frequency (cycles / µm)."""
        return self.step * (len(self.values) - 1)

    def __call__(self, k: np.ndarray) -> np.ndarray:
        grid = self.step * np.arange(len(self.values))
        values = np.asarray(self.values) / self.values[0]
        return np.interp(np.abs(k), grid, values, right=0.0)


@dataclass(frozen=True)
class BroadenedOTF:
    """``otf`` times a Gaussian of ``extra_fwhm_nm``: the PSF convolved with that much more blur."""

    otf: OTF
    extra_fwhm_nm: float

    def __call__(self, k: np.ndarray) -> np.ndarray:
        return self.otf(k) * GaussianOTF(self.extra_fwhm_nm)(k)


def read_mrc_otf(path: str | Path) -> MeasuredOTF:
    """The radial OTF of an ``.mrc`` file as the BioSR authors publish it (rDL-SIM): a 1024-byte header
    (int32 words 0..3 ``nx, ny, nz, mode`` = ``n, 1, 1, 4``, complex64; float32 word 10 the frequency step in
    cycles / µm), then ``n`` complex64 values, the OTF at ``k = 0, step, ...``; its modulus is used."""
    path = Path(path)
    raw = path.read_bytes() if path.is_file() else None
    if raw is None:
        raise UsageError(f"{path}: no such OTF file; give an .mrc radial OTF (experiments/microscope/otf holds BioSR's)")
    if len(raw) < MRC_HEADER_BYTES:
        raise UsageError(f"{path}: {len(raw)} bytes is shorter than an MRC header ({MRC_HEADER_BYTES} bytes)")
    nx, ny, nz, mode = np.frombuffer(raw[:16], "<i4")
    step = float(np.frombuffer(raw[40:44], "<f4")[0])
    extended = int(np.frombuffer(raw[92:96], "<i4")[0])
    if (ny, nz, mode) != (1, 1, MRC_COMPLEX64):
        raise UsageError(f"{path}: expected a radial OTF (ny = nz = 1, mode 4 complex64), found ny={ny}, "
                         f"nz={nz}, mode={mode}")
    data = raw[MRC_HEADER_BYTES + extended:]
    if len(data) != 8 * nx:
        raise UsageError(f"{path}: the header promises {nx} complex values, the file holds {len(data)} bytes of data")
    values = np.abs(np.frombuffer(data, "<c8")).astype(float)
    return MeasuredOTF(step, tuple(values.tolist()), path.name)


def otf_from_psf_image(image: np.ndarray, pixel_um: float, source: str = "PSF image") -> MeasuredOTF:
    """The radial OTF of a 2-D bead image [H, W] (a point source recorded by the microscope) with square
    pixels of ``pixel_um``.

    The reader makes it a PSF: the background (median of the outer ring of pixels) subtracted, then the
    image centred on the centroid of its light above the background by a Fourier phase ramp (so that the transfer is real), normalised to
    unit sum. The OTF is the real part of its Fourier transform averaged on rings one frequency step
    wide (noise averages out), cut to 0 from its first non-positive ring on. A bead smaller than a
    quarter of the PSF's width (100 nm beads for a 215 nm PSF) adds little blur of its own and is not
    deconvolved.
    """
    psf = np.asarray(image, dtype=np.float64)
    if psf.ndim != 2 or min(psf.shape) < 8:
        raise UsageError(f"{source}: a PSF image must be one 2-D bead image of at least 8 x 8 px, got {psf.shape}")
    if not np.isfinite(psf).all():
        raise UsageError(f"{source}: the PSF image holds NaN or infinite pixels")
    ring = np.concatenate([psf[0], psf[-1], psf[1:-1, 0], psf[1:-1, -1]])
    # The background's noise is kept, not clipped: clipping would leave its positive half as a pedestal,
    # a false spike of the OTF at k = 0.
    psf = psf - np.median(ring)
    total = psf.sum()
    if not total > 0:
        raise UsageError(f"{source}: no bead above the background; record a bright, isolated bead")
    psf /= total
    height, width = psf.shape
    ys, xs = np.arange(height)[:, None], np.arange(width)[None, :]
    weight = np.clip(psf, 0.0, None)  # the centroid from the light above the background
    centre_y, centre_x = float((weight * ys).sum() / weight.sum()), float((weight * xs).sum() / weight.sum())
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]
    spectrum = np.fft.fft2(psf) * np.exp(2j * np.pi * (fy * centre_y + fx * centre_x))
    k = np.hypot(fy, fx) / pixel_um  # cycles / µm
    step = 1.0 / (pixel_um * max(height, width))
    rings = np.rint(k / step).astype(int).ravel()
    counts = np.bincount(rings)
    means = np.bincount(rings, spectrum.real.ravel()) / np.maximum(counts, 1)
    nyquist = int(0.5 / pixel_um / step)
    values = means[: nyquist + 1]
    first_zero = np.flatnonzero(values <= 0)
    if len(first_zero):
        values[first_zero[0]:] = 0.0
    return MeasuredOTF(step, tuple((values / values[0]).tolist()), source)


def otf_from_file(path: str | Path, pixel_um: float | None = None) -> OTF:
    """The widefield OTF of a file: an ``.mrc`` radial OTF, or a bead image (``.tif``) with ``pixel_um``
    (from the argument or the TIF's own resolution tags)."""
    path = Path(path)
    if path.suffix.lower() == ".mrc":
        return read_mrc_otf(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise UsageError(f"{path}: give a radial OTF (.mrc) or a bead image (.tif)")
    from experiments.image_io.images import read_frames

    frames, info = read_frames(path)
    pixel = pixel_um if pixel_um is not None else info.pixel_size_um
    if pixel is None:
        raise UsageError(f"{path}: the bead image states no pixel size; save it with its pixel size (ImageJ or "
                         "OME metadata, e.g. tifffile.imwrite(..., resolution=(1 / um, 1 / um), metadata={'unit': 'um'}))")
    if len(frames) != 1:
        raise UsageError(f"{path}: a bead image must be one 2-D plane, this file holds {len(frames)}; "
                         "save the in-focus plane alone")
    return otf_from_psf_image(frames[0], pixel, path.name)


def point_spread(otf: OTF, radii_um: np.ndarray = PSF_RADII_UM, k_max: float | None = None) -> np.ndarray:
    """The PSF at ``radii_um`` (per µm², integrating to ``otf(0)``): the Hankel transform ``2 pi int OTF(k)
    J0(2 pi k r) k dk``, by the trapezoid rule on 1 / 256 cycle / µm steps up to ``k_max`` (default: where the
    OTF has fallen below 1e-6, or its measured cut-off)."""
    if k_max is None:
        probe = np.arange(0.0, 64.0, 0.01)
        alive = np.flatnonzero(np.abs(otf(probe)) > 1e-6)
        k_max = float(probe[alive[-1]]) + 0.01 if len(alive) else 0.01
    k = np.linspace(0.0, k_max, int(k_max * 256) + 2)
    weights = np.full(len(k), k[1] - k[0])
    weights[[0, -1]] *= 0.5
    radial = torch.from_numpy(otf(k) * k * weights)
    bessel = torch.special.bessel_j0(2 * np.pi * torch.from_numpy(np.outer(radii_um, k)))
    return 2 * np.pi * (bessel @ radial).numpy()


@functools.lru_cache(maxsize=64)
def fwhm_nm(otf: OTF) -> float:
    """The full width at half maximum of the PSF of ``otf`` (nm), interpolated between 1 nm radii."""
    psf = point_spread(otf)
    below = np.flatnonzero(psf < 0.5 * psf[0])
    if not len(below):
        raise ValueError("the PSF does not fall to half its peak within 3 µm")
    i = below[0]
    r0, r1 = PSF_RADII_UM[i - 1], PSF_RADII_UM[i]
    half = r0 + (0.5 * psf[0] - psf[i - 1]) / (psf[i] - psf[i - 1]) * (r1 - r0)
    return 2000.0 * half


@functools.lru_cache(maxsize=64)
def reach_um(otf: OTF) -> float:
    """The radius (µm) beyond which the PSF stays below :data:`REACH_LEVEL` of its peak: how far the blur
    carries light, so how wide a border a blurred window needs (for a Gaussian, in closed form)."""
    if isinstance(otf, GaussianOTF):
        return otf.sigma_um * math.sqrt(2 * math.log(1 / REACH_LEVEL))
    psf = np.abs(point_spread(otf))
    above = np.flatnonzero(psf >= REACH_LEVEL * psf[0])
    return float(PSF_RADII_UM[min(above[-1] + 1, len(PSF_RADII_UM) - 1)])


def sim_otf(widefield: OTF, sim_to_widefield_fwhm: float = 0.5) -> GaussianOTF:
    """The SIM image's own transfer: a Gaussian of ``sim_to_widefield_fwhm`` times the widefield FWHM."""
    width = widefield.fwhm_nm if isinstance(widefield, GaussianOTF) else fwhm_nm(widefield)
    return GaussianOTF(sim_to_widefield_fwhm * width)


@dataclass(frozen=True)
class RelativeTransfer:
    """``widefield(k) / sim(k)``: the blur that takes a SIM image to widefield (0 where the widefield is)."""

    widefield: OTF
    sim: OTF

    def __call__(self, k: np.ndarray) -> np.ndarray:
        return self.widefield(k) / np.maximum(self.sim(k), 1e-300)


def relative_transfer(widefield: OTF, sim_to_widefield_fwhm: float = 0.5) -> RelativeTransfer:
    """The part of ``widefield`` a SIM image does not carry (:func:`sim_otf`)."""
    return RelativeTransfer(widefield, sim_otf(widefield, sim_to_widefield_fwhm))


def frequency_radius(shape: tuple[int, int], pixel_um: float) -> np.ndarray:
    """``|k|`` (cycles / µm) of each bin of a real 2-D FFT of ``shape`` (``rfft2``'s half plane)."""
    return np.hypot(np.fft.fftfreq(shape[0], pixel_um)[:, None], np.fft.rfftfreq(shape[1], pixel_um)[None, :])


def apply_transfer(images: torch.Tensor, transfer: OTF, pixel_um: float, border: int) -> torch.Tensor:
    """``images`` [..., H, W] blurred by the radial ``transfer`` (pixels of ``pixel_um``), in their dtype and
    on their device: mirrored by ``border`` px at each edge (light from beyond the edge is taken to be
    like the light inside it), multiplied by the transfer in Fourier space, cut back to [..., H, W]."""
    height, width = images.shape[-2:]
    if border >= min(height, width):
        raise ValueError(f"a blur border of {border} px needs images wider than {border} px; got {height} x {width}")
    flat = images.reshape(-1, 1, height, width)
    padded = torch.nn.functional.pad(flat, (border,) * 4, mode="reflect")[:, 0] if border else flat[:, 0]
    gain = transfer(frequency_radius(tuple(padded.shape[-2:]), pixel_um))
    spectrum = torch.fft.rfft2(padded) * torch.from_numpy(gain).to(padded.dtype).to(padded.device)
    blurred = torch.fft.irfft2(spectrum, s=tuple(padded.shape[-2:]))
    return blurred[:, border : border + height, border : border + width].reshape(images.shape)


def border_px(transfer: OTF, pixel_um: float) -> int:
    """The mirrored border :func:`apply_transfer` needs for ``transfer``: its reach in pixels, rounded up."""
    return math.ceil(reach_um(transfer) / pixel_um)
