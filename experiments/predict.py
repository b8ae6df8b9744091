"""Super-resolve your own widefield TIFs and OME-Zarr images with a trained checkpoint.

    python -m experiments.predict --checkpoint pretrained/native/model.pt --input cells/ extra.tif --output results
    python -m experiments.predict ... --pixel-size 0.0626 --samples 8 --std --check --seed 1
    python -m experiments.predict ... --sampler ddim --sampling-steps 50
    python -m experiments.predict ... --input big.ome.zarr --resume       # continue an interrupted run

Inputs are TIF files, OME-Zarr stores (:mod:`experiments.data.ome_zarr`) or folders of them (not
recursive); a stack (time, z, ...) is processed frame by frame, each frame sampled from its own stream of
the seed (:func:`~experiments.inference.predictor.frame_generator`). uint8, uint16 and float images are scaled exactly as the training data were (the checkpoint's
``data.normalization``). Any 2-D size works: each frame is sampled as one image with one noise field, the
network running on overlapping tiles of the training size (``--tile``) at every step and its predictions
blended with a smooth window (:mod:`experiments.inference.tiling`), so no tile grid appears.

The checkpoint's task (:mod:`experiments.data.task`) says which grid the inputs lie on: pass the camera
image itself. A native-task model enlarges it 2x onto the SIM grid and returns an image of twice the side
and half the pixel size; a tutorial-task model returns an image on the input's own grid. ``--upsample``
(tutorial-task models only) first enlarges the input 2x by bicubic interpolation, so that the output lies
on a grid twice as fine; it holds no finer detail than the tutorial task's targets, which lie on the
camera grid. An input whose pixel size (``--pixel-size`` or its metadata) differs from the training
inputs' by more than a quarter gets a warning naming both: the model learned structures at that scale.

For each input ``<stem>.tif`` the output folder receives:

* ``<stem>_sr.tif``: float32 OME-TIFF (PhysicalSizeX / Y: the input's pixel size from ``--pixel-size`` in µm
  or the input's OME / ImageJ / resolution tags, halved by a native-task model or ``--upsample``; none when
  unknown), one page per input frame, in the units of the training targets, [0, 1]:
  the model's output ``v`` in [-1, 1] mapped back by ``(v + 1) / 2``. With ``--samples N`` it is the mean
  of N samples.
* ``<stem>_sr_std.tif`` (``--std``, needs ``--samples`` > 1): the per-pixel standard deviation of those
  samples, in the same units: where it is high the model is unsure.
* ``<stem>_sr_preview.png``: input and output side by side (first frames of a stack).
* with ``--check`` (:mod:`experiments.trust.check`): ``<stem>_sr_consistency.tif``, the re-degradation
  consistency map per frame (on the native input's grid, its pixel size), ``<stem>_sr_check.png`` (input,
  output, std, consistency map), the numbers (RSE, RSP, alpha, beta, sigma, sample-to-sample FRC
  resolution) under ``"check"`` in the output's metadata, and one entry per frame in ``check.json``.

An OME-Zarr input gives OME-Zarr outputs (``<stem>_sr.ome.zarr``, ``_sr_std``, ``_sr_consistency``; ``--format``
chooses either for any input), each frame written as it finishes (:mod:`experiments.inference.output_files`),
so an interrupted run keeps its finished frames; ``--resume`` skips them, and the inputs whose TIFs are done.

Each TIF carries JSON metadata (checkpoint path and SHA-256, seed, sampler settings, source file, frame
count, software version); read it with :func:`experiments.data.tif_io.read_metadata`. The same seed, checkpoint,
settings and device give the same output. No input is ever overwritten, an existing output only with
``--overwrite``, and every error names the file and the reason.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ddpm import SAMPLERS, VARIANCES
from ddpm.ddim import DEFAULT_DDIM_STEPS
from ddpm.settings import SEEDS, UsageError, UserError, check_value, range_parser
from experiments import figures
from experiments.command import INTERRUPTED_NOTE, CommandParser, run_command
from experiments.config.schema import SamplingConfig
from experiments.data.images import REDUCTIONS, Reduce
from experiments.data.ome_tiff import PIXEL_SIZES_UM
from experiments.trust import check, figures as trust_figures
from experiments.inference.loading import load_for_inference
from experiments.inference.output_files import (EXTENSIONS, OUTPUT_FORMATS, FrameOutput, OutputFormat,
                                                 finished_everywhere, open_output)
from experiments.inference.frames import ScaledInput, super_resolve
from experiments.inference.predictor import DEFAULT_OVERLAP, Predictor, default_overlap
from experiments.inference.sampling import PREDICTION_SAMPLING, prediction_sampling, sampling_from_flags
from experiments.inference.scripted_sampler import EXPORT_SAMPLERS
from experiments.inference.tiling import TileLayout
from experiments.runtime import DEVICES, Distributed, gather_objects, init_distributed, leave_distributed, pick_device
from experiments.data.tif_io import FrameInfo, InputImage, find_inputs, output_path_for, read_input
from experiments.data.ome_zarr import is_zarr_path
from experiments.integrity import check_output_folder, check_outputs

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
    if options.write_std and options.sampling.samples < 2:
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
    if options.upsample and predictor.scale != 1:
        raise UsageError(
            f"--upsample is for tutorial-task models; {predictor.checkpoint.name} is a native-task model, which "
            f"enlarges camera-grid inputs {predictor.scale}x itself: drop --upsample and pass the camera image"
        )


def enlargement(options: PredictOptions, predictor: Predictor) -> int:
    """The output's side over the input file's: the model's task, times 2 with ``--upsample``."""
    return predictor.scale * (2 if options.upsample else 1)


def pixel_size_warning(path: Path, size_um: float | None, source: str, options: PredictOptions,
                       predictor: Predictor) -> str | None:
    """A warning when the input's pixel (``size_um``, stated by ``source``) is far from what the model was
    trained on, or a note when it is unknown; None when it matches."""
    expected = predictor.input_pixel_um(options.upsample)
    if size_um is None:
        return (f"note: {path} states no pixel size; this model was trained on inputs of {expected * 1000:.1f} nm "
                "pixels (pass --pixel-size in µm to check it and to label the outputs)")
    if predictor.suits_pixel_size(size_um, options.upsample):
        return None
    return (f"warning: {path} has {size_um * 1000:.1f} nm pixels ({source}), but this model was trained on inputs "
            f"of {expected * 1000:.1f} nm pixels{' (with --upsample)' if options.upsample else ''}: it learned "
            f"structures at another scale, so the output may be wrong; resample the image to "
            f"{expected * 1000:.1f} nm pixels, or correct --pixel-size if the stated size is wrong")


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


def prediction_metadata(predictor: Predictor, info: FrameInfo, frames: int, options: PredictOptions) -> dict:
    """What to store with an output so that it can be traced and reproduced."""
    return {
        "software": DISTRIBUTION,
        "version": software_version(),
        "source": str(info.path.resolve()),
        "source_dtype": info.dtype,
        "source_shape": list(info.stored_shape),
        "source_axes": info.axes,
        "frames": frames,
        "checkpoint": str(predictor.checkpoint),
        "checkpoint_sha256": predictor.digest,
        "weights": predictor.weights,
        "seed": options.seed,
        **sampling_settings(options.sampling, predictor.diffusion.steps),
        "normalization": predictor.config.data.normalization,
        "task": predictor.config.data.task,
        "upsample": options.upsample,
        "colour_reduced": info.colour_reduced,
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


def open_outputs(outputs: OutputPaths, source: InputImage, metadata: dict, options: PredictOptions,
                 scale: int, pixel_size: float | None, input_size: float | None) -> dict[str, FrameOutput]:
    """The result files of one input, each a TIF or an OME-Zarr store (by its path), opened to resume
    with ``--resume``: the mean, the std (``--std``) and the consistency maps (``--check``, on the input's grid)."""
    count, (height, width) = len(source.frames), source.plane
    wanted = {"mean": (outputs.mean, scale, pixel_size, "mean of samples"),
              "std": (outputs.std, scale, pixel_size, "standard deviation of samples"),
              "consistency": (outputs.consistency, 1, input_size, "re-degradation consistency |error|")}
    opened = {}
    for name, (path, factor, size, content) in wanted.items():
        if path is not None:
            plane = (height * factor, width * factor)
            with writing(path):
                opened[name] = open_output(path, count, source.stack, plane, size, {**metadata, "content": content},
                                           options.resume)
    return opened


def predict_file(predictor: Predictor, path: Path, outputs: OutputPaths, options: PredictOptions,
                 on_tiles: Callable[[int, int], None] | None = None) -> list[dict]:
    """Super-resolve every frame of the image at ``path`` and write ``outputs``, each frame as it finishes
    where the output is an OME-Zarr store; returns the entries of ``check.json`` (one per frame; none
    without ``--check``). ``on_tiles`` is called after every network call (:meth:`Predictor.sample_frames`)."""
    source = read_input(path, options.reduce)
    info, count = source.info, len(source.frames)

    normalization = predictor.config.data.normalization
    scaled = ScaledInput(source, normalization, options.upsample, min_max=options.hashed_noise)
    if info.pixel_size_note and options.pixel_size_um is None:
        print(f"warning: {path}: {info.pixel_size_note}; the outputs state no pixel size (pass --pixel-size)",
              file=sys.stderr)
    input_size = input_pixel_size(info, options)
    source_note = "--pixel-size" if options.pixel_size_um is not None else "its metadata"
    warning = None if info.pixel_size_note and options.pixel_size_um is None else \
        pixel_size_warning(path, input_size, source_note, options, predictor)
    if warning:
        print(warning, file=sys.stderr)
    scale = enlargement(options, predictor)
    pixel_size = None if input_size is None else input_size / scale
    files = open_outputs(outputs, source, prediction_metadata(predictor, info, count, options), options,
                         scale, pixel_size, input_size)
    mean_file = files["mean"]
    done = finished_everywhere(list(files.values()))
    if options.check:  # a frame whose check entry was not stored before an interruption is done again
        done = {index for index in done if mean_file.check_entry(index) is not None}
    todo = [index for index in range(count) if index not in done]
    if done and options.progress:
        print(f"{path}: {len(done)} of {count} frames already written; sampling the other {len(todo)}",
              file=sys.stderr)

    frames = super_resolve(predictor, scaled, todo, options.sampling, options.seed, layout_of(options, predictor),
                           options.hashed_noise, options.check, options.progress, path.name, on_tiles)
    for index, result in frames:
        entry = None
        if options.check:
            trust = check.check_result(result, scaled.native(index), pixel_size)
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


def plan_outputs(predictor: Predictor, inputs: list[Path], out_dir: Path, options: PredictOptions) -> list[OutputPaths]:
    """The outputs of every input, after checking the options, every input's header (readable, a supported
    type, its channels) and every output path (:func:`check_outputs`)."""
    check_options(options, predictor)
    for path in inputs:
        read_input(path, options.reduce, pixels=False)
    planned = [output_paths(path, out_dir, options) for path in inputs]
    summary = [out_dir / check.SUMMARY_NAME] if options.check else []
    check_output_folder(out_dir, inputs)
    # Resumed, an existing output is checked against its settings when its input's turn comes.
    check_outputs([path for outputs in planned for path in outputs.all()] + summary,
                  [*inputs, predictor.checkpoint], options.overwrite or options.resume, "--overwrite or --resume")
    return planned


def predict(predictor: Predictor, inputs: list[Path], out_dir: Path, options: PredictOptions,
            place: Distributed = Distributed()) -> list[OutputPaths]:
    """Process ``inputs`` one after another. Before the first frame is sampled, everything is checked
    (:func:`plan_outputs`), so a bad file or path at the end of a long list fails at once.

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
    entries = [predict_file(predictor, path, outputs, options)
               for path, outputs in tqdm(share, desc="images", unit="image", disable=not options.progress)]
    if options.check:
        by_rank = gather_objects(entries, place)  # file k lies on rank k % W, at place k // W
        ordered = [entry for index in range(len(inputs))
                   for entry in by_rank[index % place.world_size][index // place.world_size]]
        if place.is_main:
            check.write_summary(out_dir / check.SUMMARY_NAME, ordered)
    return planned


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="python -m experiments.predict",
        description="Super-resolve widefield TIFs (files, folders, stacks) with a trained checkpoint.",
    )
    parser.add_argument("--checkpoint", required=True, help="a .pt file, or a run folder (its last.pt)")
    parser.add_argument("--input", required=True, nargs="+",
                        help="TIF files, OME-Zarr stores (.zarr) and/or folders of them")
    parser.add_argument("--output", required=True, type=Path, help="folder for the results (created if missing)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    sampling = parser.add_argument_group(
        f"sampling (default: {PREDICTION_SAMPLING.sampler} on {PREDICTION_SAMPLING.sampling_steps} network evaluations, "
        "docs/sampling.md; a regression baseline: its one evaluation)")
    sampling.add_argument("--sampler", choices=tuple(SAMPLERS))
    sampling.add_argument("--variance", choices=VARIANCES, help="simple / x0 samplers only")
    sampling.add_argument(
        "--sampling-steps", type=int, help=f"ddim / dpmpp2m: network evaluations (ddim's default {DEFAULT_DDIM_STEPS})"
    )
    sampling.add_argument("--eta", type=float, help="DDIM only: 0 deterministic (default) .. 1 DDPM-like")
    sampling.add_argument("--samples", type=int, help="samples averaged per image (default 1)")
    sampling.add_argument("--std", action="store_true", help="also write the samples' per-pixel standard deviation")
    sampling.add_argument("--seed", type=range_parser(int, SEEDS, "--seed"), default=0,
                          help="seed of the sampling noise (default 0)")
    sampling.add_argument(
        "--hashed-noise", action="store_true",
        help="reproduce an exported package: each frame scaled by its min / max and each chain started from the "
             f"seed's position-hashed noise, as the package does (its samplers: {', '.join(EXPORT_SAMPLERS)}, deterministic)",
    )
    layout = parser.add_argument_group("images")
    layout.add_argument("--upsample", action="store_true",
                        help="tutorial-task models only: bicubic x2 first, so the output lies on a grid twice as fine "
                             "(a native-task model enlarges its inputs itself)")
    layout.add_argument(
        "--pixel-size", type=range_parser(float, PIXEL_SIZES_UM, "--pixel-size"),
        help="input pixel size in µm (default: from the TIF's OME / ImageJ / resolution tags); the OME-TIFF "
        "outputs get it, divided by the model's enlargement",
    )
    layout.add_argument(
        "--tile", type=int, help="tile side in pixels (default: the side of the images the checkpoint was trained on)"
    )
    layout.add_argument("--overlap", type=int,
                        help=f"pixels shared by neighbouring tiles (default {DEFAULT_OVERLAP}, at most a quarter of --tile)")
    layout.add_argument("--batch-size", type=int, default=16, help="tiles per network call (default 16)")
    layout.add_argument(
        "--reduce", choices=[r for r in REDUCTIONS if r], help="how to make RGB(A) or multichannel inputs grey"
    )
    layout.add_argument("--suffix", default="_sr", help="added to each input's name (default _sr)")
    layout.add_argument("--no-preview", action="store_true", help="skip the PNG previews")
    layout.add_argument(
        "--check", action="store_true",
        help="also measure trust: consistency map TIF, sample-to-sample FRC (2 extra samples), figure, check.json",
    )
    layout.add_argument("--format", choices=OUTPUT_FORMATS,
                        help="outputs as OME-TIFF or OME-Zarr stores, written frame by frame (default: like each input)")
    layout.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    layout.add_argument("--resume", action="store_true",
                        help="continue an interrupted run with the same settings: skip the frames its OME-Zarr "
                             "stores hold, and the inputs whose TIFs it finished")
    layout.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> None:
    inputs = find_inputs(args.input)
    place = init_distributed(pick_device(args.device).type)  # one process unless launched by torchrun
    try:
        predict_here(args, inputs, place)
    finally:
        leave_distributed(place)


def predict_here(args: argparse.Namespace, inputs: list[Path], place: Distributed) -> None:
    """This process's part of :func:`run`: its device (its own GPU under torchrun), the options, its files."""
    predictor = load_for_inference(args.checkpoint, args.device)  # "cuda" is this rank's GPU (init_distributed)
    steps = predictor.diffusion.steps
    sampling = sampling_from_flags(prediction_sampling(predictor.config.sampling), steps, sampler=args.sampler, variance=args.variance,
                                   sampling_steps=args.sampling_steps, eta=args.eta, samples=args.samples)
    options = PredictOptions(
        sampling=sampling,
        seed=args.seed,
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        upsample=args.upsample,
        write_std=args.std,
        preview=not args.no_preview,
        reduce=args.reduce,
        suffix=args.suffix,
        progress=not args.quiet and place.is_main,
        pixel_size_um=args.pixel_size,
        hashed_noise=args.hashed_noise,
        check=args.check,
        overwrite=args.overwrite,
        output_format=args.format,
        resume=args.resume,
    )
    if options.progress:
        print(
            f"{predictor.checkpoint} (sha256 {predictor.digest}, {predictor.weights} weights) on {predictor.device}; "
            f"{len(inputs)} file(s){f' over {place.world_size} processes' if place.enabled else ''}; "
            f"{sampling_settings(sampling, steps)}",
            file=sys.stderr,
        )
    predict(predictor, inputs, args.output, options, place)


def main(argv: list[str] | None = None) -> int:
    """Run the command (:func:`experiments.command.run_command`: one line and exit status 1 for an error
    the user can fix)."""
    return run_command(build_parser(), run, argv, interrupted_note=f"{INTERRUPTED_NOTE}; OME-Zarr outputs keep "
                       "their finished frames: run the same command with --resume to complete them")


if __name__ == "__main__":
    sys.exit(main())
