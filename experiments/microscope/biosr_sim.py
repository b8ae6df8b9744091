"""Real-structure pairs: windows of nine real BioSR SIM cells, degraded to widefield by physics.

    python -m experiments.make_data --structures biosr-sim --out data/biosr-sim

The nine cells (``experiments/data/real``, BioSR, CC BY 4.0) are split whole, never window by window,
so that validation and test measure cells the model has never seen (``CELL_SPLIT``):

* training: 002, 011, 012, 014, 053, 054: the densest (053, 011) and the sparsest (012) networks;
* validation: 013, of median density;
* test: 003 (a dense bundled region beside a sparse one and an empty corner) and 052 (a dense tangle
  over sparse curved filaments): one cell from each of BioSR's two numbering groups (00x/01x, 05x).

Each window is 2 x ``size`` SIM pixels (256 = 8.0 um) for the tutorial's task and ``size`` SIM pixels
for the native task (:mod:`experiments.data.task`), at a random position, turned by a random
multiple of 90 degrees and flipped at random: exact pixel moves, so the target keeps the SIM's own
pixels (arbitrary angles would interpolate, i.e. blur, the target). Windows are dealt to the cells of
their split in turn (window i to cell i mod n). A window is near-empty, and drawn again, when fewer
than ``min_foreground_fraction`` of its pixels exceed ``foreground_threshold`` times its cell's
99.9th percentile: background outside the cell, which teaches nothing. The target is the window
on a grid of ``size`` (the tutorial's task downscales it 2x, the native task keeps the SIM's grid); the
input is the window degraded by :mod:`experiments.microscope.widefield` onto the camera grid, at a
photon budget relative to the whole cell's brightness, so that a dim region stays dim (and noisy) as it
would under the microscope. ``windows.csv`` beside the images records every window's cell, position,
turn, flip and level.
"""

import csv
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import tifffile

from ddpm.settings import UsageError
from experiments.data.layout import DatasetError
from experiments.microscope.degradation import (
    FIXED,
    GAUSSIAN,
    MEASURED,
    Degradation,
    Draw,
    draw,
    preset_name,
    gaussian_blur,
    illumination_field,
    margin_px,
)
from experiments.microscope.optics import BIOSR_488_OTF, OTF, otf_from_file, read_mrc_otf
from experiments.microscope.widefield import (
    LEVELS,
    WidefieldModel,
    bin_pixels,
    expose,
    input_images,
    target_images,
    widefield_blur,
)
from experiments.microscope.writer import SPLIT_PREFIX, DataSetSize, TEST_LEVELS, clear_output, file_name, image_rng, write_images
from experiments.data.normalization import to_unit_range
from experiments.data.task import TASKS, DataGrid, Task, write_grid
from experiments.integrity.json_files import write_json

CELL_DIR = Path(__file__).parents[1] / "data" / "real"  # shipped with the data room (pyproject package-data)
CELL_SPLIT: dict[str, tuple[str, ...]] = {
    "train": ("Cell_002", "Cell_011", "Cell_012", "Cell_014", "Cell_053", "Cell_054"),
    "validate": ("Cell_013",),
    "test": ("Cell_003", "Cell_052"),
}
MANIFEST = "windows.csv"
DEGRADATION_FILE = "degradation.json"  # the ranges the set's degradation was drawn from, and their preset
MANIFEST_FIELDS = ("split", "file", "cell", "y", "x", "quarter_turns", "flipped", "level")


@dataclass(frozen=True)
class RealStructureConfig:
    """Task, window geometry, the near-empty criterion, the widefield model and the degradation's ranges."""

    size: int = 128  # target side in px; windows are 2 * size SIM pixels (tutorial: 256 -> 128) or size (native)
    task: Task = "tutorial"
    foreground_threshold: float = 0.1  # of the cell's 99.9th percentile
    min_foreground_fraction: float = 0.05  # of the window's pixels above the threshold
    max_draws: int = 200  # positions tried per window before giving up on a cell
    model: WidefieldModel = field(default_factory=WidefieldModel)
    degradation: Degradation = FIXED

    def __post_init__(self) -> None:
        if self.size < 4 or self.size % 2:
            raise UsageError(f"size must be even and at least 4 (the input is downscaled to size / 2), got {self.size}")
        if self.task not in TASKS:
            raise UsageError(f"unknown task {self.task!r}; choose one of {TASKS}")
        if self.model.camera_binning != 2:
            raise UsageError("both tasks need the camera image at half the window's side: camera_binning 2")
        if not 0 <= self.foreground_threshold < 1 or not 0 <= self.min_foreground_fraction < 1:
            raise UsageError("foreground_threshold and min_foreground_fraction must lie in [0, 1)")

    @property
    def window(self) -> int:
        return 2 * self.size if self.task == "tutorial" else self.size

    @property
    def optics(self) -> OTF:
        """The widefield OTF the degradation is drawn around (:data:`experiments.microscope.degradation.GAUSSIAN`,
        ``MEASURED`` or a file)."""
        source = self.degradation.optics
        if source == GAUSSIAN:
            return self.model.optics
        return read_mrc_otf(BIOSR_488_OTF) if source == MEASURED else otf_from_file(source)

    @property
    def margin(self) -> int:
        """SIM pixels of surroundings a window needs for the widest drawn blur (extra blur or haze)."""
        pixel_um, ranges = self.model.sim_pixel_nm / 1000, self.degradation
        haze = margin_px(1000 * ranges.haze_fwhm_um[1], pixel_um) if ranges.structured_share[1] > 0 else 0
        return max(margin_px(ranges.extra_blur_fwhm_nm[1], pixel_um), haze)


@dataclass(frozen=True)
class Cell:
    """One SIM cell, its widefield blur (computed once for all its windows) and its brightness scales."""

    name: str
    sim: np.ndarray  # [H, W] float32 in [0, 1]
    blurred: np.ndarray  # [H + 2 margin, W + 2 margin] float32: widefield_blur of sim, mirrored by margin
    margin: int  # the surroundings each window's own blurs need
    sim_reference: float  # reference percentile of sim (the near-empty criterion)
    camera_reference: float  # reference percentile of the binned blurred image (the photon budget)


@dataclass(frozen=True)
class Window:
    cell: str
    y: int
    x: int
    quarter_turns: int
    flipped: bool


def load_cells(names: tuple[str, ...], folder: Path = CELL_DIR) -> dict[str, np.ndarray]:
    """The SIM images ``<folder>/<name>_SIM_gt.tif`` as float32 [H, W] in [0, 1] (uint16 / 65535)."""
    cells = {}
    for name in names:
        path = folder / f"{name}_SIM_gt.tif"
        if not path.is_file():
            raise DatasetError(f"missing {path}: the real BioSR cells ship with the project; restore them from git")
        cells[name] = to_unit_range(tifffile.imread(path))
    return cells


def prepare_cell(name: str, sim: np.ndarray, config: RealStructureConfig) -> Cell:
    """Blur ``sim`` [H, W] once by the config's optics and measure its brightness scales on the SIM and the
    camera grid."""
    model = config.model
    blurred = widefield_blur(sim[None], model, config.optics)[0]
    b = model.camera_binning
    camera = bin_pixels(blurred[: blurred.shape[0] // b * b, : blurred.shape[1] // b * b], b)
    q = model.reference_percentile / 100
    margin = config.margin
    padded = np.pad(blurred, margin, mode="reflect") if margin else blurred
    cell = Cell(name, sim, padded, margin, float(np.quantile(sim, q)), float(np.quantile(camera, q)))
    if not cell.camera_reference > 0:
        raise DatasetError(f"{name} holds no light (its {model.reference_percentile}th percentile is 0): leave it out")
    return cell


def near_empty(window: np.ndarray, reference: float, config: RealStructureConfig) -> bool:
    """True when fewer than ``min_foreground_fraction`` of the pixels exceed ``foreground_threshold * reference``."""
    return float((window > config.foreground_threshold * reference).mean()) < config.min_foreground_fraction


def dihedral(image: np.ndarray, quarter_turns: int, flipped: bool) -> np.ndarray:
    """``image`` [..., H, W] turned by ``quarter_turns`` x 90 degrees, then mirrored left-right if ``flipped``."""
    turned = np.rot90(image, quarter_turns, axes=(-2, -1))
    return np.ascontiguousarray(turned[..., ::-1] if flipped else turned)


def draw_window(cell: Cell, rng: np.random.Generator, config: RealStructureConfig) -> Window:
    """A random window of ``cell`` that is not near-empty (position, turn and flip from ``rng``)."""
    height, width = cell.sim.shape
    side = config.window
    if side > min(height, width):
        raise DatasetError(f"{cell.name} ({height} x {width} px) is smaller than a window of {side} px; lower --size")
    for _ in range(config.max_draws):
        y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        turns, flipped = int(rng.integers(4)), bool(rng.integers(2))
        if not near_empty(cell.sim[y : y + side, x : x + side], cell.sim_reference, config):
            return Window(cell.name, y, x, turns, flipped)
    raise DatasetError(
        f"{cell.name}: no window of {side} px with {config.min_foreground_fraction:.0%} of its pixels above "
        f"{config.foreground_threshold} of the cell's brightness in {config.max_draws} draws; lower the criterion"
    )


def crop(image: np.ndarray, window: Window, side: int) -> np.ndarray:
    return dihedral(image[window.y : window.y + side, window.x : window.x + side], window.quarter_turns, window.flipped)


def crop_blurred(cell: Cell, window: Window, side: int, margin: int) -> np.ndarray:
    """The window of the cell's widefield blur with ``margin`` px of its surroundings on each side."""
    y, x, reach = window.y + cell.margin - margin, window.x + cell.margin - margin, side + 2 * margin
    return dihedral(cell.blurred[y : y + reach, x : x + reach], window.quarter_turns, window.flipped)


def camera_window(cell: Cell, window: Window, degradation: Draw, rng: np.random.Generator,
                  config: RealStructureConfig) -> tuple[np.ndarray, float]:
    """The noise-free camera image [s, s] of ``window`` under one drawn degradation, in the cell's camera
    units, and its flat background (a fraction of the cell's bright structures): the window's own blur
    broadened by the drawn extra blur, plus out-of-focus structure (another window of the cell under
    the drawn defocus blur, its mean the structured share of the background), times the uneven
    illumination. ``rng`` draws the out-of-focus window."""
    model, side = config.model, config.window
    pixel_um, b = model.sim_pixel_nm / 1000, model.camera_binning
    margin = margin_px(degradation.extra_blur_fwhm_nm, pixel_um)
    focus = gaussian_blur(crop_blurred(cell, window, side, margin), degradation.extra_blur_fwhm_nm, pixel_um, margin)
    camera = bin_pixels(focus, b)
    structured, hazy = degradation.background * degradation.structured_share, 0.0
    if structured > 0:
        height, width = cell.sim.shape
        elsewhere = Window(cell.name, int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1)),
                           int(rng.integers(4)), bool(rng.integers(2)))
        haze_nm = 1000 * degradation.haze_fwhm_um
        margin = margin_px(haze_nm, pixel_um)
        haze = bin_pixels(gaussian_blur(crop_blurred(cell, elsewhere, side, margin), haze_nm, pixel_um, margin), b)
        mean = float(haze.mean())
        if mean > 0:  # an empty stretch of the cell adds no structure: its share stays flat
            camera, hazy = camera + haze * (structured * cell.camera_reference / mean), structured
    if degradation.illumination > 0:
        camera = camera * illumination_field(camera.shape[-1], degradation.illumination, degradation.illumination_wave)
    return camera.astype(np.float32), degradation.background - hazy


def render_pairs(
    split: str, indices: range, seed: int, cells: list[Cell], config: RealStructureConfig,
    levels: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Window]]:
    """Targets [N, S, S], inputs [N, s, s] (or [L, N, s, s] with ``levels``), levels and windows; s = S for
    the tutorial's task, S / 2 (the camera grid) for the native one.

    Image i of ``split`` comes from ``cells[i % len(cells)]`` and draws everything from its own child
    seeds, so the output does not depend on how the indices are batched: its window, its level, its
    degradation (:func:`~experiments.microscope.degradation.draw`, one for all levels of a test field) and
    its noise. Without ``levels`` each pair draws its level uniformly from 1..9, or its photon budget from
    the degradation's range when it has one.
    """
    model, side = config.model, config.window
    rngs = [image_rng(seed, split, i) for i in indices]
    owners = [cells[i % len(cells)] for i in indices]
    windows = [draw_window(cell, rng, config) for cell, rng in zip(owners, rngs)]
    targets = target_images(np.stack([crop(cell.sim, w, side) for cell, w in zip(owners, windows)]), config.task)
    degradation_rngs = [image_rng(seed, split, i, LEVELS + 1) for i in indices]
    draws = [draw(config.degradation, rng) for rng in degradation_rngs]
    cameras = [camera_window(cell, w, d, rng, config)
               for cell, w, d, rng in zip(owners, windows, draws, degradation_rngs)]

    def inputs(photons: list[float], noise_rngs: list[np.random.Generator]) -> np.ndarray:
        recorded = [expose(camera, cell.camera_reference, p, r, flat, model.read_noise(d.read_noise_per_frame))
                    for (camera, flat), cell, d, p, r in zip(cameras, owners, draws, photons, noise_rngs)]
        return input_images(np.stack(recorded), config.task)

    if levels is None:
        drawn = np.array([int(rng.integers(1, LEVELS + 1)) for rng in rngs])
        photons = [model.level_photons(level) if d.photons is None else d.photons for level, d in zip(drawn, draws)]
        noisy = inputs(photons, [image_rng(seed, split, i, 0) for i in indices])
        return targets, noisy, drawn, windows
    stacked = np.stack([
        inputs([model.level_photons(level)] * len(indices), [image_rng(seed, split, i, level) for i in indices])
        for level in levels
    ])
    return targets, stacked, np.array(levels), windows


def check_split(cell_split: Mapping[str, tuple[str, ...]]) -> None:
    """Every split names at least one cell, and no cell serves two splits."""
    seen: dict[str, str] = {}
    for split in ("train", "validate", "test"):
        if not cell_split.get(split):
            raise UsageError(f"the cell split names no cell for {split!r}")
        for name in cell_split[split]:
            if name in seen:
                raise UsageError(f"{name} is in both {seen[name]!r} and {split!r}: hold out whole cells")
            seen[name] = split


def generate(
    out: Path,
    train: int = 4096,
    validate: int = 256,
    test_per_level: int = 150,
    seed: int = 0,
    config: RealStructureConfig = RealStructureConfig(),
    cell_split: Mapping[str, tuple[str, ...]] = CELL_SPLIT,
    cell_images: Mapping[str, np.ndarray] | None = None,
    batch: int = 256,
    overwrite: bool = False,
) -> None:
    """Write the BioSR layout and ``windows.csv`` under ``out`` from the cells of ``cell_split``.

    ``cell_images`` (name -> [H, W] in [0, 1]) replaces the shipped cells, e.g. in tests.
    """
    check_split(cell_split)
    DataSetSize(train, validate, test_per_level, seed)
    out = Path(out)
    clear_output(out, overwrite, extra=(MANIFEST, DEGRADATION_FILE))
    names = tuple(name for split in ("train", "validate", "test") for name in cell_split[split])
    images = cell_images if cell_images is not None else load_cells(names)
    cells = {name: prepare_cell(name, np.asarray(images[name], dtype=np.float32), config) for name in names}
    rows = []
    with ThreadPoolExecutor(4) as pool:
        for split, count in (("train", train), ("validate", validate), ("test", test_per_level)):
            split_cells = [cells[name] for name in cell_split[split]]
            for start in range(0, count, batch):
                indices = range(start, min(start + batch, count))
                if split == "test":
                    gt, wf_levels, _, windows = render_pairs(split, indices, seed, split_cells, config,
                                                             levels=list(range(1, LEVELS + 1)))
                    write_images(out / "test_gt", split, start, gt, pool)
                    for level_name, wf in zip(TEST_LEVELS, wf_levels):
                        write_images(out / "test_wf" / level_name, split, start, wf, pool)
                    levels = ["all"] * len(indices)
                else:
                    gt, wf, levels, windows = render_pairs(split, indices, seed, split_cells, config)
                    write_images(out / f"{SPLIT_PREFIX[split]}_gt", split, start, gt, pool)
                    write_images(out / f"{SPLIT_PREFIX[split]}_wf", split, start, wf, pool)
                rows += [(split, file_name(split, i), w.cell, w.y, w.x, w.quarter_turns, int(w.flipped), level)
                         for i, w, level in zip(indices, windows, levels)]
    write_grid(out, DataGrid(config.task, config.model.camera_pixel_nm / 1000))
    write_json(out / DEGRADATION_FILE, {"preset": preset_name(config.degradation), **asdict(config.degradation)})
    with open(out / MANIFEST, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_FIELDS)
        writer.writerows(rows)


def read_degradation(root: Path) -> dict | None:
    """The ``degradation.json`` of a real-structure set (None for a set made before it was written)."""
    path = Path(root) / DEGRADATION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def read_manifest(root: Path) -> list[dict[str, str]]:
    """The rows of ``<root>/windows.csv`` as dictionaries keyed by ``MANIFEST_FIELDS``."""
    with open(Path(root) / MANIFEST, newline="") as handle:
        return list(csv.DictReader(handle))


def describe(config: RealStructureConfig = RealStructureConfig()) -> str:
    """One paragraph with the physical parameters, for the command line."""
    m, d = config.model, config.degradation

    def span(values: tuple[float, float], unit: str = "", scale: float = 1.0, digits: int = 0) -> str:
        low, high = (scale * v for v in values)
        return f"{low:.{digits}f}{unit}" if low == high else f"{low:.{digits}f} to {high:.{digits}f}{unit}"

    optics = {GAUSSIAN: f"a Gaussian PSF of {m.widefield_fwhm_nm:.0f} nm FWHM (lambda {m.emission_wavelength_nm:.0f} "
                          f"nm, NA {m.numerical_aperture})", MEASURED: f"BioSR's measured OTF ({BIOSR_488_OTF.name})"}
    photons = (f"{m.photons[0]:.0f} to {m.photons[1]:.0f} photoelectrons by level (level_01..09)" if d.photons is None
               else f"{span(d.photons)} photoelectrons (test split: by level, {m.photons[0]:.0f} to {m.photons[1]:.0f})")
    return (f"widefield: {optics.get(d.optics, d.optics)}, broadened by {span(d.extra_blur_fwhm_nm, ' nm')} of extra "
            f"blur; SIM FWHM {m.sim_to_widefield_fwhm:g} x the widefield's; camera pixel {m.camera_pixel_nm:.1f} nm; "
            f"{photons}; background {span(d.background, ' %', 100)} of the bright structures, "
            f"{span(d.structured_share, ' %', 100)} of it out-of-focus structure ({span(d.haze_fwhm_um, ' um', digits=1)} "
            f"defocus), illumination uneven by {span(d.illumination, ' %', 100)}; read noise "
            f"{span(d.read_noise_per_frame, ' e-', digits=1)} per frame ({m.frames_averaged} frames); "
            f"windows of {config.window} px = {config.window * m.sim_pixel_nm / 1000:.1f} um; {config.task} task: "
            f"input on the {m.camera_pixel_nm:.1f} nm camera grid, target on the "
            f"{m.camera_pixel_nm if config.task == 'tutorial' else m.sim_pixel_nm:.1f} nm grid")


def example_widefield(cell: str, side: int, level: int, seed: int = 0,
                      config: RealStructureConfig = RealStructureConfig(task="native")) -> np.ndarray:
    """One camera-grid widefield image [side / 2, side / 2] in [0, 1] of a window of ``side`` SIM pixels of
    the shipped ``cell`` at ``level``, made as the native task's inputs are (an example input for users),
    with the low ends of the config's degradation ranges."""
    config = replace(config, size=side, task="native")
    image = load_cells((cell,))[cell]
    prepared = prepare_cell(cell, image, config)
    rng = np.random.default_rng([seed, level])
    window = draw_window(prepared, rng, config)
    camera = bin_pixels(crop_blurred(prepared, window, config.window, 0), config.model.camera_binning)
    degradation = config.degradation
    recorded = expose(camera, prepared.camera_reference, config.model.level_photons(level), rng,
                      degradation.background[0], config.model.read_noise(degradation.read_noise_per_frame[0]))
    return input_images(recorded[None], "native")[0]
