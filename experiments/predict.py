"""Super-resolve your own widefield TIFs and OME-Zarr images with a trained checkpoint.

    python -m experiments.predict --checkpoint pretrained/native/model.pt --input cells/ extra.tif --output results
    python -m experiments.predict ... --pixel-size 0.0626 --samples 8 --std --check --seed 1
    python -m experiments.predict ... --sampler ddim --sampling-steps 50
    python -m experiments.predict ... --input big.ome.zarr --resume       # continue an interrupted run

Inputs are TIF files, OME-Zarr stores (:mod:`experiments.image_io.ome_zarr`) or folders of them (not
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
chooses either for any input), each frame written as it finishes (:mod:`experiments.image_io.output_files`),
so an interrupted run keeps its finished frames; ``--resume`` skips them, and the inputs whose TIFs are done.

Each TIF carries JSON metadata (checkpoint path and SHA-256, seed, sampler settings, source file, frame
count, software version); read it with :func:`experiments.image_io.tif_io.read_metadata`. The same seed, checkpoint,
settings and device give the same output. No input is ever overwritten, an existing output only with
``--overwrite``, and every error names the file and the reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ddpm import SAMPLERS, VARIANCES
from ddpm.ddim import DEFAULT_DDIM_STEPS
from ddpm.settings import SEEDS, range_parser
from experiments.command import INTERRUPTED_NOTE, CommandParser, run_command
from experiments.image_io.images import REDUCTIONS
from experiments.image_io.ome_tiff import PIXEL_SIZES_UM
from experiments.image_io.tif_io import find_inputs
from experiments.inference.loading import load_for_inference
from experiments.image_io.output_files import OUTPUT_FORMATS
from experiments.inference.prediction import PredictOptions, predict, sampling_settings
from experiments.inference.predictor import DEFAULT_OVERLAP
from experiments.inference.sampling import PREDICTION_SAMPLING, prediction_sampling, sampling_from_flags
from experiments.inference.scripted_sampler import EXPORT_SAMPLERS
from experiments.runtime import DEVICES, Distributed, init_distributed, leave_distributed, pick_device


def warn(message: str) -> None:
    """The library's messages for the user, one line each on stderr."""
    print(message, file=sys.stderr)


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
    predict(predictor, inputs, args.output, options, warn=warn, place=place)


def main(argv: list[str] | None = None) -> int:
    """Run the command (:func:`experiments.command.run_command`: one line and exit status 1 for an error
    the user can fix)."""
    return run_command(build_parser(), run, argv, interrupted_note=f"{INTERRUPTED_NOTE}; OME-Zarr outputs keep "
                       "their finished frames: run the same command with --resume to complete them")


if __name__ == "__main__":
    sys.exit(main())
