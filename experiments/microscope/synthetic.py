"""Generated BioSR-like microtubule data, in exactly its folder layout (the library of
``python -m experiments.make_data``).

The ``biosr-sim`` structures cut windows from nine real BioSR SIM cells and degrade them by a
physical widefield model (:mod:`experiments.microscope.biosr_sim`, :mod:`experiments.microscope.widefield`). The
default, ``filaments``, is the procedural look-alike this module draws:

Each field holds a few to a few dozen long, gently curving filaments (random walks whose curvature
varies slowly) of varying brightness, crossing each other, like microtubules. The physics, per field:

* target (``*_gt``): the filaments blurred by a narrow Gaussian PSF (SIM-like, sigma 1 px at 128 px),
  scaled so that its 99.9th percentile is 1, clipped to [0, 1];
* input (``*_wf``): the same filaments blurred by a PSF twice as wide (widefield) plus out-of-focus
  haze and a dim background, bicubic-downsampled (antialiased) to half size, scaled to a peak of
  ``photons`` counts, Poisson noise plus Gaussian read noise, back to [0, 1], bicubic-upsampled to
  full size and clipped to [0, 1]: the processing of the tutorial's BioSR inputs. For the native task
  (:mod:`experiments.data.task`) the input stays at half size, the camera's grid.

Noise levels: ``level_01`` has about 15 photons at the brightest pixels (very noisy), ``level_09``
about 600, geometrically spaced. Training and validation pairs draw their level at random; the test
split renders the same 150 fields at all nine levels, with ``test_gt`` shared. Every image draws from
its own child seed ``(seed, split, index[, level])``, so the output is the same for any batch size.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import tifffile
import torch

from ddpm.settings import UsageError, bounded, check_ranges
from experiments.data.task import BIOSR_CAMERA_PIXEL_UM, TASKS, DataGrid, Task, write_grid
from experiments.microscope.widefield import add_noise, downscale, gaussian_blur_fft, upsample
from experiments.microscope.writer import TEST_LEVELS, DataSetSize, clear_output, file_name, image_rng, write_images

# What the fields are made of: drawn filaments (this module) or windows of real BioSR SIM cells.
Structures = Literal["filaments", "biosr-sim"]
STRUCTURES: tuple[str, ...] = get_args(Structures)


@dataclass(frozen=True)
class SyntheticConfig:
    """Physical and geometric settings of the look-alike; lengths in pixels of the full-size image."""

    size: int = bounded(128, 4)  # even: inputs are rendered at half size
    task: Task = "tutorial"
    gt_sigma: float = 1.0  # SIM-like PSF
    wf_sigma: float = 2.0  # widefield PSF, about twice as wide
    haze_sigma: float = 10.0  # out-of-focus light
    haze_fraction: float = 0.25
    background: float = 0.03  # dim widefield background, relative to the brightest filament
    filaments: tuple[int, int] = (4, 30)  # inclusive range per field
    brightness: tuple[float, float] = (0.35, 1.0)
    step: float = 0.5  # sampling step along a filament
    max_curvature: float = 0.02  # rad / px: radius of curvature >= 50 px, gently curving
    photons: tuple[float, float] = (15.0, 600.0)  # peak counts at level_01 and level_09
    read_noise: float = 1.0  # Gaussian camera noise, in photons
    gt_percentile: float = 99.9

    def __post_init__(self) -> None:
        check_ranges(self, "--")
        if self.size % 2:
            raise UsageError(f"--size must be even (inputs are rendered at half size), got {self.size}")
        if self.task not in TASKS:
            raise UsageError(f"unknown task {self.task!r}; choose one of {TASKS}")

    def level_photons(self, level: int) -> float:
        """Peak photon count of test level ``level`` (1..9), geometric from photons[0] to photons[1]."""
        low, high = self.photons
        return low * (high / low) ** ((level - 1) / 8)


def filament_points(rng: np.random.Generator, config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """Points along the filaments of one field: positions [F, P, 2] (x, y in px) and weights [F, P].

    Each filament is a random walk of fixed step whose heading turns at a slowly varying curvature
    (a constant plus a slow sine); it is centred at a random point and may leave the field. A weight
    is the filament's brightness times the step (zero beyond the filament's own length), so that the
    rendered intensity per unit length does not depend on the step.
    """
    size, step = config.size, config.step
    count = int(rng.integers(config.filaments[0], config.filaments[1] + 1))
    points = int(2.5 * size / step)
    arc = (np.arange(points) - points / 2) * step  # [P], signed arc length from the centre
    centre = rng.uniform(0.0, size, (count, 1, 2))
    heading = rng.uniform(0.0, 2 * np.pi, (count, 1))
    bend = rng.uniform(-0.5, 0.5, (count, 1)) * config.max_curvature
    wiggle = rng.uniform(0.0, 0.5, (count, 1)) * config.max_curvature
    wavelength = rng.uniform(40.0, 200.0, (count, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (count, 1))
    # theta(s) = theta0 + integral of (bend + wiggle sin(2 pi s / lambda + phase)) ds
    k = 2 * np.pi / wavelength
    angle = heading + bend * arc - wiggle / k * (np.cos(k * arc + phase) - np.cos(phase))
    steps = step * np.stack([np.cos(angle), np.sin(angle)], axis=-1)  # [F, P, 2]
    positions = centre + np.cumsum(steps, axis=1) - np.cumsum(steps, axis=1)[:, points // 2 : points // 2 + 1]
    length = rng.uniform(0.4, 2.5, (count, 1)) * size
    brightness = rng.uniform(*config.brightness, (count, 1))
    weights = np.where(np.abs(arc) <= length / 2, brightness * step, 0.0)
    return positions, weights


def splat(positions: list[np.ndarray], weights: list[np.ndarray], canvas: int, offset: float) -> np.ndarray:
    """Bilinear splatting of weighted points onto a batch of canvases [B, canvas, canvas] (float32).

    ``positions[b]`` [..., 2] (x, y) are shifted by ``offset`` into the canvas; points outside are dropped.
    """
    flat_index, flat_weight = [], []
    for b, (xy, w) in enumerate(zip(positions, weights)):
        xy, w = xy.reshape(-1, 2) + offset, w.reshape(-1)
        base = np.floor(xy).astype(np.int64)
        frac = xy - base
        for dx in (0, 1):
            for dy in (0, 1):
                x, y = base[:, 0] + dx, base[:, 1] + dy
                share = w * np.abs(1 - dx - frac[:, 0]) * np.abs(1 - dy - frac[:, 1])
                inside = (x >= 0) & (x < canvas) & (y >= 0) & (y < canvas) & (share > 0)
                flat_index.append((b * canvas + y[inside]) * canvas + x[inside])
                flat_weight.append(share[inside])
    density = np.bincount(
        np.concatenate(flat_index), np.concatenate(flat_weight), minlength=len(positions) * canvas * canvas
    )
    return density.reshape(len(positions), canvas, canvas).astype(np.float32)


def render_clean(rngs: list[np.random.Generator], config: SyntheticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets [B, S, S] in [0, 1] and noise-free widefield images [B, S/2, S/2] with peak about 1."""
    size = config.size
    # Room for light from outside the field, rounded up to a multiple of 32: FFTs of such sizes are fast.
    canvas = -(-(size + 2 * int(np.ceil(3 * config.haze_sigma))) // 32) * 32
    pad = (canvas - size) // 2
    drawn = [filament_points(rng, config) for rng in rngs]
    density = splat([d[0] for d in drawn], [d[1] for d in drawn], canvas, offset=pad)
    gt, wf, haze = (
        torch.from_numpy(image[:, pad : pad + size, pad : pad + size])
        for image in gaussian_blur_fft(density, (config.gt_sigma, config.wf_sigma, config.haze_sigma))
    )
    gt_scale = torch.quantile(gt.reshape(len(gt), -1), config.gt_percentile / 100, dim=1).clamp_min(1e-12)
    gt = (gt / gt_scale[:, None, None]).clamp(0, 1)
    wf = wf + config.haze_fraction * haze
    wf_low = downscale(wf, size // 2).clamp_min(0)
    wf_peak = wf_low.reshape(len(wf_low), -1).amax(dim=1).clamp_min(1e-12)
    wf_low = wf_low / wf_peak[:, None, None] * (1 - config.background) + config.background
    return gt, wf_low


def noisy_inputs(
    wf_low: np.ndarray, photons: list[float], rngs: list[np.random.Generator], config: SyntheticConfig
) -> np.ndarray:
    """Noise each clean half-size input [N, s, s] at its own photon count, then (tutorial's task) upsample
    it to [N, S, S]."""
    noisy = np.stack([add_noise(w, p, r, config.read_noise) for w, p, r in zip(wf_low, photons, rngs)])
    if config.task == "native":
        return noisy.clip(0, 1)
    return upsample(torch.from_numpy(noisy), config.size).numpy()


def render_pairs(
    split: str, indices: range, seed: int, config: SyntheticConfig, levels: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets [N, S, S], inputs [N, S, S] and the level (1..9) of each, for images ``indices`` of ``split``.

    With ``levels`` given, every field is rendered at each of those levels: inputs [L, N, S, S].
    Without, each pair draws its own level uniformly from 1..9.
    """
    structure_rngs = [image_rng(seed, split, i) for i in indices]
    gt, wf_low = render_clean(structure_rngs, config)
    gt, wf_low = gt.numpy(), wf_low.numpy()
    if levels is None:
        drawn = np.array([int(rng.integers(1, 10)) for rng in structure_rngs])
        photons = [config.level_photons(level) for level in drawn]
        return gt, noisy_inputs(wf_low, photons, [image_rng(seed, split, i, 0) for i in indices], config), drawn
    inputs = [
        noisy_inputs(wf_low, [config.level_photons(level)] * len(indices),
                     [image_rng(seed, split, i, level) for i in indices], config)
        for level in levels
    ]
    return gt, np.stack(inputs), np.array(levels)


def generate(
    out: Path,
    train: int = 4096,
    validate: int = 256,
    test_per_level: int = 150,
    seed: int = 0,
    config: SyntheticConfig = SyntheticConfig(),
    batch: int = 256,
    overwrite: bool = False,
) -> None:
    """Write the BioSR layout under ``out`` (training_*, validate_*, test_wf/level_01..09, test_gt)."""
    DataSetSize(train, validate, test_per_level, seed)
    out = Path(out)
    clear_output(out, overwrite)
    with ThreadPoolExecutor(4) as pool:
        for split, prefix, count in (("train", "training", train), ("validate", "validate", validate)):
            for start in range(0, count, batch):
                gt, wf, _ = render_pairs(split, range(start, min(start + batch, count)), seed, config)
                write_images(out / f"{prefix}_gt", split, start, gt, pool)
                write_images(out / f"{prefix}_wf", split, start, wf, pool)
        for start in range(0, test_per_level, batch):
            indices = range(start, min(start + batch, test_per_level))
            gt, wf_levels, _ = render_pairs("test", indices, seed, config, levels=list(range(1, 10)))
            write_images(out / "test_gt", "test", start, gt, pool)
            for level_name, wf in zip(TEST_LEVELS, wf_levels):
                write_images(out / "test_wf" / level_name, "test", start, wf, pool)
    # The look-alike draws fields of BioSR's images, so its pixel is stated as theirs.
    write_grid(out, DataGrid(config.task, BIOSR_CAMERA_PIXEL_UM))

def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` [H, W] at points (x, y), clamped to the image."""
    x = np.clip(x, 0, image.shape[1] - 1.001)
    y = np.clip(y, 0, image.shape[0] - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    return ((1 - fx) * (1 - fy) * image[y0, x0] + fx * (1 - fy) * image[y0, x0 + 1]
            + (1 - fx) * fy * image[y0 + 1, x0] + fx * fy * image[y0 + 1, x0 + 1])


def cross_section(target: np.ndarray, half_length: int = 12, candidates: int = 64) -> np.ndarray:
    """A line across an isolated filament of ``target``: (x, y) sample points [2, 2 * half_length + 1].

    Among up to ``candidates`` bright pixels away from the border, the one whose narrowest profile
    (over 36 directions) is narrowest overall: a single filament crossed at a right angle, not a crossing.
    """
    margin = half_length + 1
    inner = target[margin:-margin, margin:-margin]
    bright = np.flatnonzero(inner >= np.quantile(inner, 0.99))
    bright = bright[np.linspace(0, len(bright) - 1, min(candidates, len(bright))).astype(int)]
    offsets = np.arange(-half_length, half_length + 1, dtype=float)
    angles = np.linspace(0, np.pi, 36, endpoint=False)

    def line(flat: int, angle: float) -> np.ndarray:
        cy, cx = np.unravel_index(flat, inner.shape)
        return np.stack([cx + margin + offsets * np.cos(angle), cy + margin + offsets * np.sin(angle)])

    def width(points: np.ndarray) -> float:
        profile = _bilinear(target, *points)
        return float((profile * offsets**2).sum() / max(profile.sum(), 1e-12))

    return min((line(flat, angle) for flat in bright for angle in angles), key=width)


def save_preview(root: Path, figure: Path, index: int = 0) -> None:
    """Figure: one test field at all nine levels, its target, and line profiles across a filament."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    name = file_name("test", index)
    target = tifffile.imread(root / "test_gt" / name)
    # A native data set's inputs lie on a grid twice as coarse: shown enlarged onto the target's.
    inputs = {level: upsample(torch.from_numpy(tifffile.imread(root / "test_wf" / level / name))[None],
                              target.shape[-1])[0].numpy() for level in TEST_LEVELS}
    line = cross_section(target)
    panels = [(f"input, {level}", image) for level, image in inputs.items()]
    panels.append(("target (SIM)", target))
    fig, axes = plt.subplots(2, 6, figsize=(19, 7))
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.08, wspace=0.06, hspace=0.12)
    for ax, (title, image) in zip(axes.flat, panels):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.plot(*line[:, [0, -1]], color="tab:orange", lw=1.2)
        ax.set_title(title)
        ax.axis("off")
    # The profile takes the last two panels of the second row, less room for its axis labels.
    left, right = axes[1, 4].get_position(), axes[1, 5].get_position()
    axes[1, 4].remove()
    profile = axes[1, 5]
    profile.set_position([left.x0 + 0.035, left.y0, right.x1 - left.x0 - 0.035, left.height])
    distance = np.hypot(*(line - line[:, :1]))
    distance -= distance[len(distance) // 2]
    for (title, image), style in zip((panels[0], panels[4], panels[8], panels[9]), (":", "-.", "--", "-")):
        profile.plot(distance, _bilinear(image, *line), style, label=title)
    profile.set_xlabel("distance across the filament (px)")
    profile.set_ylabel("intensity")
    profile.set_title("line profile (orange line)")
    profile.legend(fontsize=8)
    Path(figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=90)
    plt.close(fig)
