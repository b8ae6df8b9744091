"""Prediction as a library: a user's images in, result files out, with what to tell the user.

    options = PredictOptions(sampling=prediction_sampling(predictor.config.sampling), check=True)
    predict(predictor, [Path("cells.tif")], Path("results"), options, warn=print)

``experiments.predict`` is the command around it (parse, print); the napari widget shares its pixel-size
warning (:func:`pixel_size_warning`) and its provenance record (:func:`provenance`). Nothing here prints:
what the user should know goes to the caller's ``warn``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ddpm.settings import SEEDS, UsageError, UserError, check_value
from experiments import figures
from experiments.config.schema import SamplingConfig
from experiments.image_io.images import Reduce
from experiments.image_io.ome_tiff import PIXEL_SIZES_UM
from experiments.image_io.ome_zarr import is_zarr_path
from experiments.image_io.tif_io import FrameInfo, InputImage, output_path_for, read_input
from experiments.inference.frames import PAIR, ScaledInput, super_resolve
from experiments.image_io.output_files import EXTENSIONS, FrameOutput, OutputFormat, finished_everywhere, open_output
from experiments.inference.predictor import FrameRequest, Predictor, default_overlap
from experiments.inference.scripted_sampler import EXPORT_SAMPLERS
from experiments.inference.tiling import TileLayout
from experiments.integrity.outputs import check_output_folder, check_outputs
from experiments.runtime import Distributed, gather_objects
from experiments.trust import check, figures as trust_figures

# Where the library's messages for the user go: the command prints them, the napari widget shows them.
Warn = Callable[[str], None]

DISTRIBUTION = "diffusion-sr-microscopy"
UNITS = "[0, 1] like the training targets: model output v in [-1, 1] mapped by (v + 1) / 2"
PREVIEW_FRAMES = 3
SHOWN_FRAMES = 4  # the first frames the figures show: the preview its first PREVIEW_FRAMES, the check figure all


class OutputError(OSError):
    """An output file cannot be written; the message names it (an OSError: the boundary prints it as one line)."""


@dataclass(frozen=True)
class PredictOptions:
    """How to process every input (see the command's ``--help`` for each)."""

    sampling: SamplingConfig
    seed: int = 0
    tile: int | None = None  # None: the side of the checkpoint's training images
    overlap: int | None = None  # None: DEFAULT_OVERLAP, at most a quarter of the tile
    batch_size: int = 16
    upsample: bool = False
    write_std: bool = False
    preview: bool = True
    reduce: Reduce = None
    suffix: str = "_sr"
    progress: bool = True
    pixel_size_um: float | None = None  # of the input file; None: read from its metadata
    hashed_noise: bool = False  # x_T from ddpm.hashed_noise, as the exported package
    check: bool = False  # experiments.trust.check: consistency map, sample-to-sample FRC, check.json
    overwrite: bool = False  # replace outputs that exist already (inputs are never replaced)
    output_format: OutputFormat | None = None  # None: like each input (a TIF gives TIFs, an OME-Zarr stores)
    resume: bool = False  # keep the finished frames of outputs written with the same settings


@dataclass(frozen=True)
class OutputPaths:
    mean: Path
    std: Path | None
    preview: Path | None
    consistency: Path | None = None
    check_figure: Path | None = None

    def all(self) -> list[Path]:
        paths = (self.mean, self.std, self.preview, self.consistency, self.check_figure)
        return [path for path in paths if path is not None]


def tile_of(options: PredictOptions, predictor: Predictor) -> int:
    """``--tile``, or the side of the images the checkpoint was trained on."""
    return predictor.tile if options.tile is None else options.tile


def layout_of(options: PredictOptions, predictor: Predictor) -> TileLayout:
    """The tile layout of ``--tile``, ``--overlap`` and ``--batch-size`` (checked by :func:`check_options`)."""
    return predictor.layout(tile_of(options, predictor), overlap_of(options, predictor), options.batch_size)


def overlap_of(options: PredictOptions, predictor: Predictor) -> int:
    """``--overlap``, or :func:`~experiments.inference.predictor.default_overlap` of the tile (as the package's)."""
    return default_overlap(tile_of(options, predictor)) if options.overlap is None else options.overlap


def check_options(options: PredictOptions, predictor: Predictor) -> None:
    """Refuse settings that cannot work, naming the option, before any file is read."""
    if options.write_std and options.sampling.samples < 2 and not predictor.predicts_std:
        raise UsageError("--std needs several samples to measure their spread; add --samples 2 or more (e.g. 8)")
    size_multiple, tile = predictor.size_multiple, tile_of(options, predictor)
    if tile < size_multiple or tile % size_multiple:
        raise UsageError(
            f"--tile must be a positive multiple of {size_multiple} for this network (its size_multiple), got {tile}"
        )
    overlap = overlap_of(options, predictor)
    if not 0 <= overlap < tile:
        raise UsageError(f"--overlap must be within 0..{tile - 1} (less than --tile), got {overlap}")
    if options.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {options.batch_size}")
    if any(separator in options.suffix for separator in ("/", "\\", "\0")):
        raise UsageError(f"--suffix is added to a file name and cannot hold a path separator, got {options.suffix!r}")
    check_value(options.seed, SEEDS, "--seed")
    if options.resume and options.overwrite:
        raise UsageError("--resume keeps finished outputs and --overwrite replaces them: pass one of the two")
    if options.pixel_size_um is not None:
        check_value(options.pixel_size_um, PIXEL_SIZES_UM, "--pixel-size (µm)")
    if options.hashed_noise and (options.sampling.sampler not in EXPORT_SAMPLERS or options.sampling.build().draws_noise):
        raise UsageError("--hashed-noise reproduces an exported package, whose samplers are deterministic: add "
                         f"--sampler {' or '.join(EXPORT_SAMPLERS)} (with --eta 0)")
    if options.upsample and predictor.enlargement != 1:
        raise UsageError(
            f"--upsample is for tutorial-task models; {predictor.checkpoint.name} is a native-task model, which "
            f"enlarges camera-grid inputs {predictor.enlargement}x itself: drop --upsample and pass the camera image"
        )


def output_enlargement(options: PredictOptions, predictor: Predictor) -> int:
    """The output's side over the input file's: the model's task, times 2 with ``--upsample``."""
    return predictor.enlargement * (2 if options.upsample else 1)


def pixel_size_warning(name: str, size_um: float | None, source: str, upsample: bool, predictor: Predictor,
                       stating: str = "--pixel-size") -> str | None:
    """What to tell the user when input ``name``'s pixel (``size_um``, stated by ``source``: "--pixel-size",
    "its metadata", "its scale") is far from the training inputs' (``warning: ...``) or unknown (``note:
    ...``); None when it matches. ``stating`` is how the user states a pixel size where they are (a flag, a
    layer's scale). Prediction and the napari widget both say it."""
    expected = predictor.input_pixel_um(upsample)
    if size_um is None:
        return (f"note: {name} states no pixel size; this model was trained on inputs of {expected * 1000:.1f} nm "
                f"pixels (set {stating} in µm to check it and to label the outputs)")
    if predictor.suits_pixel_size(size_um, upsample):
        return None
    return (f"warning: {name} has {size_um * 1000:.1f} nm pixels ({source}), but this model was trained on inputs "
            f"of {expected * 1000:.1f} nm pixels{' (with --upsample)' if upsample else ''}: it learned "
            f"structures at another scale, so the output may be wrong; resample the image to "
            f"{expected * 1000:.1f} nm pixels, or correct {stating} if the stated size is wrong")


def output_format_of(input_path: Path, options: PredictOptions) -> OutputFormat:
    """``--format``, or the input's own: OME-Zarr stores for an OME-Zarr image, TIFs for a TIF."""
    if options.output_format is not None:
        return options.output_format
    return "ome-zarr" if is_zarr_path(input_path) else "tif"


def output_paths(input_path: Path, out_dir: Path, options: PredictOptions) -> OutputPaths:
    extension = EXTENSIONS[output_format_of(input_path, options)]

    def named(suffix: str, ending: str = extension) -> Path:
        return output_path_for(input_path, out_dir, f"{options.suffix}{suffix}", ending)

    std = named("_std") if options.write_std else None
    preview = named("_preview", ".png") if options.preview else None
    if not options.check:
        return OutputPaths(named(""), std, preview)
    return OutputPaths(named(""), std, preview, named("_consistency"), named("_check", ".png"))


def software_version() -> str:
    try:
        return package_metadata.version(DISTRIBUTION)
    except package_metadata.PackageNotFoundError:
        return "unknown (not installed)"


def sampling_settings(sampling: SamplingConfig, diffusion_steps: int) -> dict:
    """The settings that decide the samples; ``sampling_steps`` is the number of network evaluations."""
    return {
        "sampler": sampling.sampler,
        "variance": sampling.variance,
        "sampling_steps": sampling.network_evaluations(diffusion_steps),
        "eta": sampling.eta,
        "samples": sampling.samples,
    }


def file_source(info: FrameInfo, frames: int) -> dict:
    """The input file a prediction came from, for :func:`provenance`."""
    return {"source": str(info.path.resolve()), "source_dtype": info.dtype, "source_shape": list(info.stored_shape),
            "source_axes": info.axes, "frames": frames}


def provenance(predictor: Predictor, source: dict, options: PredictOptions, colour_reduced: str | None = None) -> dict:
    """What to store with an output so that it can be traced and reproduced, ``source`` saying what it was made
    from (:func:`file_source`, or a napari layer): the one record of prediction, in its files' metadata and in
    the napari widget's output layer."""
    return {
        "software": DISTRIBUTION,
        "version": software_version(),
        **source,
        "checkpoint": str(predictor.checkpoint),
        "checkpoint_sha256": predictor.digest,
        "weights": predictor.weights,
        "seed": options.seed,
        **sampling_settings(options.sampling, predictor.diffusion.steps),
        "normalization": predictor.config.data.normalization,
        "task": predictor.config.data.task,
        "upsample": options.upsample,
        "colour_reduced": colour_reduced,
        "tile": tile_of(options, predictor),
        "overlap": overlap_of(options, predictor),
        "hashed_noise": options.hashed_noise,
        "units": UNITS,
    }


def write_preview(inputs: np.ndarray, outputs: np.ndarray, std: np.ndarray | None, path: Path, title: str) -> Path:
    """PNG of the first frames: input and output (both [N, H, W] in [-1, 1]) side by side, and the standard
    deviation (in [0, 1] units) on its own colour scale when given."""
    rows = min(len(inputs), PREVIEW_FRAMES)
    columns = [("Input", inputs), ("Output", outputs)] + ([("Std", std)] if std is not None else [])
    # About one screen pixel per image pixel, within limits, so fine detail stays visible in the preview.
    side = float(np.clip(max(outputs.shape[1:]) / figures.DPI, 2.5, 6.0))
    figure = figures.new_figure(side * len(columns), side * rows + 0.4)
    grid = figure.subplots(rows, len(columns), squeeze=False)
    for column, (name, images) in enumerate(columns):
        grid[0, column].set_title(name)
        for row in range(rows):
            if name == "Std":
                shown = figures.show_image(grid[row, column], images[row], (0.0, float(images[:rows].max())), "magma")
                figure.colorbar(shown, ax=grid[row, column], fraction=0.046, pad=0.04)
            else:
                figures.show_image(grid[row, column], images[row])
    figure.suptitle(title)
    return figures.save_figure(figure, path)


def input_pixel_size(info: FrameInfo, options: PredictOptions) -> float | None:
    """The input's pixel size in µm: ``--pixel-size``, else its TIF metadata (None: unknown)."""
    return options.pixel_size_um if options.pixel_size_um is not None else info.pixel_size_um


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """An OSError while writing ``path`` becomes an :class:`OutputError` naming it."""
    try:
        yield
    except OSError as error:
        raise OutputError(f"{path}: cannot be written ({error.strerror or error}); check the output folder") from error


def std_content(predictor: Predictor, sampling: SamplingConfig) -> str:
    """What the ``--std`` output holds, as its metadata says: the calibrated std of the output's error where the
    checkpoint ships an error model for this sampling (:meth:`Predictor.calibrated_by`), else the samples' std."""
    calibration = predictor.calibrated_by(sampling)
    if calibration is not None:
        return calibration.describe().replace("in [-1, 1] units", "in the output's [0, 1] units (x 0.5)")
    if predictor.predicts_std:
        return ("the model's predicted std of its output's error (a Laplace scale x sqrt 2), uncalibrated: its "
                "checkpoint ships no error model (docs/trust.md)")
    return ("standard deviation of samples, uncalibrated: not an error bar (only a shipped model sampled as its "
            "calibration was fitted writes one, docs/trust.md)")


def open_outputs(outputs: OutputPaths, source: InputImage, metadata: dict, options: PredictOptions,
                 enlargement: int, pixel_size: float | None, input_size: float | None,
                 std: str) -> dict[str, FrameOutput]:
    """The result files of one input, each a TIF or an OME-Zarr store (by its path), opened to resume
    with ``--resume``: the mean, the std (``--std``, described by ``std``) and the consistency maps (``--check``,
    on the input's grid)."""
    count, (height, width) = len(source.frames), source.plane
    wanted = {"mean": (outputs.mean, enlargement, pixel_size, "mean of samples"),
              "std": (outputs.std, enlargement, pixel_size, std),
              "consistency": (outputs.consistency, 1, input_size, "re-degradation consistency |error|")}
    opened = {}
    for name, (path, factor, size, content) in wanted.items():
        if path is not None:
            plane = (height * factor, width * factor)
            with writing(path):
                opened[name] = open_output(path, count, source.stack, plane, size, {**metadata, "content": content},
                                           options.resume)
    return opened


def predict_file(predictor: Predictor, path: Path, outputs: OutputPaths, options: PredictOptions, *,
                 warn: Warn, on_tiles: Callable[[int, int], None] | None = None) -> list[dict]:
    """Super-resolve every frame of the image at ``path`` and write ``outputs``, each frame as it finishes
    where the output is an OME-Zarr store; returns the entries of ``check.json`` (one per frame; none
    without ``--check``). What the user should know (the input's pixel size or values far from the model's)
    goes to ``warn``; ``on_tiles`` is called after every network call (:meth:`Predictor.sample_frames`)."""
    scaled = scaled_input(predictor, path, options)
    source = scaled.source
    info, count = source.info, len(source.frames)
    if info.content_note:
        warn(f"note: {path}: {info.content_note}")
    if info.pixel_size_note and options.pixel_size_um is None:
        warn(f"warning: {path}: {info.pixel_size_note}; the outputs state no pixel size (pass --pixel-size)")
    input_size = input_pixel_size(info, options)
    source_note = "--pixel-size" if options.pixel_size_um is not None else "its metadata"
    warning = None if info.pixel_size_note and options.pixel_size_um is None else \
        pixel_size_warning(str(path), input_size, source_note, options.upsample, predictor)
    if warning:
        warn(warning)
    enlargement = output_enlargement(options, predictor)
    pixel_size = None if input_size is None else input_size / enlargement
    record = provenance(predictor, file_source(info, count), options, info.colour_reduced)
    files = open_outputs(outputs, source, record, options,
                         enlargement, pixel_size, input_size, std_content(predictor, options.sampling))
    mean_file = files["mean"]
    done = finished_everywhere(list(files.values()))
    if options.check:  # a frame whose check entry was not stored before an interruption is done again
        done = {index for index in done if mean_file.check_entry(index) is not None}
    todo = [index for index in range(count) if index not in done]
    if done and options.progress:
        warn(f"{path}: {len(done)} of {count} frames already written; sampling the other {len(todo)}")

    request = FrameRequest(options.sampling, layout_of(options, predictor),
                           hashed_noise_seed=options.seed if options.hashed_noise else None,
                           keep=PAIR if options.check else 0, progress=options.progress, desc=path.name,
                           on_tiles=on_tiles)
    frames = super_resolve(predictor, scaled, todo, request, options.seed, warn=warn)
    for index, result in frames:
        entry = None
        if options.check:
            trust = check.check_result(result.mean, result.pair, scaled.native(index), pixel_size)
            entry = trust.summary()
            with writing(outputs.consistency):
                files["consistency"].write(index, trust.consistency.error_map.float().numpy())
        if result.std is not None and "std" in files:
            with writing(outputs.std):
                files["std"].write(index, result.std)
        with writing(outputs.mean):  # last: its check entry marks the frame done
            mean_file.write(index, result.mean, entry)
    for output in files.values():
        with writing(output.path):
            output.close()
    shown = range(min(count, SHOWN_FRAMES))
    inputs_shown = np.concatenate([scaled.model(index) for index in shown])
    means_shown = np.stack([mean_file.read(index) for index in shown]) * 2 - 1
    std_shown = np.stack([files["std"].read(index) for index in shown]) if "std" in files else None
    if outputs.preview is not None:
        write_preview(inputs_shown, means_shown, std_shown, outputs.preview, f"{path.name} ({predictor.checkpoint.name})")
    if options.check:
        maps = np.stack([files["consistency"].read(index) for index in shown])
        native_shown = np.stack([scaled.native(index) for index in shown]) * 2 - 1
        trust_figures.plot_check(native_shown, means_shown, std_shown, maps, outputs.check_figure,
                                   f"{path.name}: can this output be trusted?", max_images=SHOWN_FRAMES)
        return check.summary_entries(path, outputs.mean, [mean_file.check_entry(index) for index in range(count)])
    return []


def scaled_input(predictor: Predictor, path: Path, options: PredictOptions) -> ScaledInput:
    """The frames of the image at ``path`` as this prediction feeds them to ``predictor``."""
    return ScaledInput(read_input(path, options.reduce), predictor.config.data.normalization, options.upsample,
                       min_max=options.hashed_noise)


def check_pixels(predictor: Predictor, path: Path, options: PredictOptions) -> None:
    """Read and scale every frame of ``path`` as prediction will (a TIF whole, a store frame by frame), so that a
    damaged chunk, a NaN or a value that overflows when scaled, in any frame of any input, is refused before
    the first output is written."""
    scaled = scaled_input(predictor, path, options)
    for index in tqdm(range(len(scaled)), desc=f"checking {path.name}", unit="frame", leave=False,
                      disable=not options.progress or isinstance(scaled.source.frames, np.ndarray)):
        scaled.model(index)


def plan_outputs(predictor: Predictor, inputs: list[Path], out_dir: Path, options: PredictOptions) -> list[OutputPaths]:
    """The outputs of every input, after checking the options, every input's header (readable, a supported
    type, its channels), every output path (:func:`check_outputs`) and every input's pixels (:func:`check_pixels`)."""
    check_options(options, predictor)
    for path in inputs:
        read_input(path, options.reduce, pixels=False)
    planned = [output_paths(path, out_dir, options) for path in inputs]
    summary = [out_dir / check.SUMMARY_NAME] if options.check else []
    check_output_folder(out_dir, inputs)
    # Resumed, an existing output is checked against its settings when its input's turn comes.
    check_outputs([path for outputs in planned for path in outputs.all()] + summary,
                  [*inputs, predictor.checkpoint], options.overwrite or options.resume, "--overwrite or --resume")
    for path in inputs:  # last: the slowest check, of the pixels, after every quick one
        check_pixels(predictor, path, options)
    return planned


def predict(predictor: Predictor, inputs: list[Path], out_dir: Path, options: PredictOptions, *, warn: Warn,
            place: Distributed = Distributed()) -> list[OutputPaths]:
    """Process ``inputs`` one after another, telling ``warn`` what the user should know. Before the first frame
    is sampled, everything is checked (:func:`plan_outputs`), so a bad file or path at the end of a long list
    fails at once.

    Under ``torchrun`` (``place``), rank r of W takes files r, r + W, ...; each file is seeded on its own,
    so every output is the one a single process writes, and rank 0 writes ``check.json`` in input order."""
    try:
        planned, problem = plan_outputs(predictor, inputs, out_dir, options), None
    except UserError as error:
        planned, problem = [], error
    # Every rank checks, and all stop if one finds a problem, before any writes: a rank that wrote first
    # would make another's check see its new outputs as old ones.
    found = [message for message in gather_objects(problem and str(problem), place) if message]
    if problem is not None:
        raise problem
    if found:
        raise UserError(found[0])
    share = list(zip(inputs, planned))[place.rank :: place.world_size]
    entries = [predict_file(predictor, path, outputs, options, warn=warn)
               for path, outputs in tqdm(share, desc="images", unit="image", disable=not options.progress)]
    if options.check:
        by_rank = gather_objects(entries, place)  # file k lies on rank k % W, at place k // W
        ordered = [entry for index in range(len(inputs))
                   for entry in by_rank[index % place.world_size][index // place.world_size]]
        if place.is_main:
            check.write_summary(out_dir / check.SUMMARY_NAME, ordered)
    return planned


