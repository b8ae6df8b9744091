"""The widefield degradation: from a SIM image at 31.3 nm to a BioSR-like widefield input.

BioSR's widefield image of a cell is the average of its nine raw SIM frames (3 angles x 3 phases,
uniform illumination in sum), recorded on a camera of 62.6 nm pixels; the SIM reconstruction of the
same cell has 31.3 nm pixels and about twice the resolution. Starting from a real SIM image, the
widefield image is, in order:

1. the SIM image blurred by the part of the widefield PSF the SIM image does not already carry
   (:mod:`experiments.microscope.optics`): by default a Gaussian of ``sigma_rel = sqrt(sigma_wf^2 -
   sigma_sim^2)`` (Gaussians compose by adding variances), or BioSR's measured OTF, or a user's;
2. integrated onto the camera grid: 2 x 2 SIM pixels summed into one 62.6 nm pixel;
3. scaled to a photon budget (photoelectrons of the cell's bright structures, summed over the nine
   frames) plus a background, then Poisson photon noise and Gaussian read noise (the background, the
   read noise and their ranges: :mod:`experiments.microscope.degradation`);
4. each image scaled to [0, 1] by its own minimum and maximum; for the tutorial's task (tutorial
   summary, "Task"; :mod:`experiments.data.task`) the input is then downscaled 128 -> 64 and
   bicubic-upsampled back to 128 and the target downscaled 256 -> 128; for the native task the input
   stays on the camera grid and the target on the SIM grid.

Min-max scaling, not percentiles, because that is how the BioSR files are scaled: every SIM file
spans exactly 0..65535 (checked on the nine cells in ``experiments/data/real``), and min-max keeps
every value, where percentile scaling would saturate the brightest bundles.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ddpm.settings import UsageError, bounded, check_ranges
from experiments.data.task import Task, enlarge
from experiments.microscope.optics import FWHM_PER_SIGMA, OTF, GaussianOTF, apply_transfer, border_px, relative_transfer

LEVELS = 9  # BioSR records every cell at nine excitation powers, level_01 the dimmest


@dataclass(frozen=True)
class WidefieldModel:
    """Physical parameters of the widefield degradation; lengths in nm, counts in photoelectrons.

    Which values are facts and which are assumptions is said beside each.
    """

    # Fact: the pixel of BioSR's SIM reconstructions (the TIF resolution tags of experiments/data/real).
    sim_pixel_nm: float = bounded(31.3, 0, low_open=True)
    # Fact: the raw frames and widefield images have 62.6 nm pixels, 2 x 2 SIM pixels.
    camera_binning: int = bounded(2, 1)
    # Assumption: centre of a standard GFP emission band (525/50 nm); the microtubule label is
    # excited at 488 nm (a raw file's label reads c18-488), the exact emission filter is not checked.
    emission_wavelength_nm: float = bounded(525.0, 0, low_open=True)
    # Assumption: a 100x / 1.49 oil TIRF objective, the usual high-NA TIRF objective; the BioSR
    # paper's Methods were not at hand to confirm it.
    numerical_aperture: float = bounded(1.49, 0, low_open=True)
    # Choice: widefield FWHM = 0.61 lambda / NA (the Rayleigh distance, 215 nm here), about 20 %
    # wider than the ideal aberration-free Airy FWHM (0.51 lambda / NA, 180 nm): real high-NA TIRF
    # widefield images resolve roughly 200-250 nm, about twice the SIM's, not the ideal.
    fwhm_per_wavelength_over_na: float = bounded(0.61, 0, low_open=True)
    # Fact of SIM (Gustafsson 2000) and of BioSR's description: SIM about doubles the resolution.
    sim_to_widefield_fwhm: float = bounded(0.5, 0, 1, low_open=True, high_open=True)
    # Fact: BioSR's widefield image is the average of the 9 raw SIM frames; their read noise adds up.
    frames_averaged: int = bounded(9, 1)
    # Choice: photoelectrons (sum of the 9 frames) at the cell's bright structures for level_01 and
    # level_09, geometric in between: 20 leaves a filament barely above the noise, 2,000 gives a
    # clean image (a signal-to-noise ratio of about 40 at the brightest pixels).
    photons: tuple[float, float] = bounded((20.0, 2000.0), 0, low_open=True)
    # Choice: "bright structures" = this percentile of the cell's noise-free camera image, so that one
    # hot pixel does not set the scale.
    reference_percentile: float = bounded(99.9, 50, 100, low_open=True)

    def __post_init__(self) -> None:
        check_ranges(self, "WidefieldModel.")
        if len(self.photons) != 2 or not self.photons[0] < self.photons[1]:
            raise UsageError(f"WidefieldModel.photons must be (level_01, level_09) with low < high, got {self.photons}")

    @property
    def camera_pixel_nm(self) -> float:
        return self.sim_pixel_nm * self.camera_binning

    @property
    def widefield_fwhm_nm(self) -> float:
        """FWHM of the widefield PSF: ``fwhm_per_wavelength_over_na * lambda / NA`` (215 nm by default)."""
        return self.fwhm_per_wavelength_over_na * self.emission_wavelength_nm / self.numerical_aperture

    @property
    def sim_fwhm_nm(self) -> float:
        return self.sim_to_widefield_fwhm * self.widefield_fwhm_nm

    @property
    def blur_sigma_px(self) -> float:
        """sigma_rel = sqrt(sigma_wf^2 - sigma_sim^2) in SIM pixels (2.52 px = 79 nm by default)."""
        sigma_nm = math.sqrt(self.widefield_fwhm_nm**2 - self.sim_fwhm_nm**2) / FWHM_PER_SIGMA
        return sigma_nm / self.sim_pixel_nm

    def read_noise(self, per_frame: float) -> float:
        """rms read noise of the sum of the averaged frames: independent per frame, so sqrt(frames) times one."""
        return math.sqrt(self.frames_averaged) * per_frame

    @property
    def optics(self) -> GaussianOTF:
        """The widefield PSF this model assumes: a Gaussian of :attr:`widefield_fwhm_nm`."""
        return GaussianOTF(self.widefield_fwhm_nm)

    def level_photons(self, level: int) -> float:
        """Photon budget of level ``level`` (1..9), geometric from photons[0] to photons[1]."""
        if not 1 <= level <= LEVELS:
            raise UsageError(f"level must lie in 1..{LEVELS}, got {level}")
        low, high = self.photons
        return low * (high / low) ** ((level - 1) / (LEVELS - 1))


def gaussian_blur_fft(images: np.ndarray, sigmas: tuple[float, ...]) -> list[np.ndarray]:
    """Blur a batch [B, H, W] (float32) by Gaussians of each ``sigma`` (px), via one FFT (periodic edges):
    the drawn-filament look-alike's blur, whose fields are drawn with room for light from outside them.

    numpy rather than torch: its float32 inverse real FFT is several times faster on CPU.
    """
    height, width = images.shape[-2:]
    spectrum = np.fft.rfft2(images)
    radius2 = np.fft.fftfreq(height)[:, None] ** 2 + np.fft.rfftfreq(width)[None, :] ** 2
    # Fourier transform of a unit-area Gaussian: exp(-2 pi^2 sigma^2 |f|^2)
    return [
        np.fft.irfft2(spectrum * np.exp(-2 * np.pi**2 * s**2 * radius2).astype(np.float32), s=(height, width))
        for s in sigmas
    ]


def widefield_blur(sim: np.ndarray, model: WidefieldModel, optics: OTF | None = None) -> np.ndarray:
    """Step 1: SIM images [B, H, W] (any scale) blurred to widefield by the part of ``optics`` (the
    widefield OTF; default the model's Gaussian) that the SIM image does not carry
    (:func:`~experiments.microscope.optics.relative_transfer`); mirrored edges, not periodic ones.

    The blur conserves the total intensity (OTF(0) = 1) up to the light mirrored in at the edges.
    """
    transfer = relative_transfer(optics or model.optics, model.sim_to_widefield_fwhm)
    images = torch.from_numpy(np.ascontiguousarray(sim, dtype=np.float32))
    return apply_transfer(images, transfer, model.sim_pixel_nm / 1000, border_px(transfer, model.sim_pixel_nm / 1000)).numpy()


def bin_pixels(images: np.ndarray, factor: int) -> np.ndarray:
    """Step 2: sum ``factor`` x ``factor`` blocks, [..., H, W] -> [..., H / factor, W / factor].

    A camera pixel collects the light of its whole area, so the sum (not the mean) conserves the
    total intensity. H and W must be multiples of ``factor``.
    """
    *batch, height, width = images.shape
    if height % factor or width % factor:
        raise UsageError(f"image of {height} x {width} px does not bin by {factor}: crop it to a multiple of {factor}")
    blocks = images.reshape(*batch, height // factor, factor, width // factor, factor)
    return blocks.sum(axis=(-3, -1))


def camera_image(sim: np.ndarray, model: WidefieldModel, optics: OTF | None = None) -> np.ndarray:
    """Steps 1-2: the noise-free widefield image [B, H/b, W/b] of SIM images [B, H, W] (b: camera_binning)."""
    return bin_pixels(widefield_blur(sim, model, optics), model.camera_binning)


def add_noise(relative: np.ndarray, photons: float, rng: np.random.Generator, read_noise: float) -> np.ndarray:
    """Poisson-Gaussian noise: ``(Poisson(photons v) + N(0, read_noise^2)) / photons`` for intensities v.

    ``v = 1`` is worth ``photons`` photoelectrons; the result is in the same relative units (float32).
    """
    counts = rng.poisson(photons * relative) + rng.normal(0.0, read_noise, relative.shape)
    return (counts / photons).astype(np.float32)


def expose(camera: np.ndarray, reference: float, photons: float, rng: np.random.Generator,
           background: float, read_noise: float) -> np.ndarray:
    """Step 3: a noise-free camera image [..., h, w] recorded with ``photons`` at intensity ``reference``.

    Returns photoelectrons / ``photons`` (float32): signal ``camera / reference`` plus the flat
    ``background`` (a fraction of the signal at ``reference``), with Poisson noise and Gaussian
    ``read_noise`` (e- rms, of the sum of the averaged frames: :meth:`WidefieldModel.read_noise`).
    """
    relative = np.clip(camera / reference, 0.0, None) + background
    return add_noise(relative, photons, rng, read_noise)


def min_max_scale(images: np.ndarray) -> np.ndarray:
    """Each image of [..., H, W] scaled to [0, 1] by its own minimum and maximum (float32)."""
    low = images.min(axis=(-2, -1), keepdims=True)
    high = images.max(axis=(-2, -1), keepdims=True)
    return ((images - low) / np.maximum(high - low, 1e-12)).astype(np.float32)


def downscale(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bicubic downscaling [B, s, s] -> [B, size, size] (the tutorial's 256 -> 128 and 128 -> 64)."""
    return F.interpolate(images[:, None], size=(size, size), mode="bicubic", antialias=True, align_corners=False)[:, 0]


def upsample(wf_low: torch.Tensor, size: int) -> torch.Tensor:
    """[B, s, s] -> [B, size, size] (size a multiple of s) by :func:`~experiments.data.task.enlarge`, clipped
    to [0, 1] (``clip="unit"``), as the BioSR inputs were made."""
    scale, rest = divmod(size, wf_low.shape[-1])
    if rest:
        raise ValueError(f"upsample: {size} px is not a multiple of the input's {wf_low.shape[-1]} px")
    return enlarge(wf_low[:, None], scale, clip="unit")[:, 0]


def target_images(sim: np.ndarray, task: Task = "tutorial") -> np.ndarray:
    """Step 4, target: SIM windows [B, S, S] in [0, 1] by min-max; the tutorial's task first downscales them to S/2."""
    sim = np.asarray(sim, dtype=np.float32)
    if task == "tutorial":
        sim = downscale(torch.from_numpy(sim), sim.shape[-1] // 2).numpy()
    return min_max_scale(sim)


def input_images(recorded: np.ndarray, task: Task = "tutorial") -> np.ndarray:
    """Step 4, input: noisy camera images [B, s, s] in [0, 1] by min-max; the tutorial's task then takes
    them to s/2 and bicubic back to s (its inputs' resampling)."""
    scaled = min_max_scale(recorded)
    if task == "native":
        return scaled
    size = recorded.shape[-1]
    return upsample(downscale(torch.from_numpy(scaled), size // 2), size).numpy()
