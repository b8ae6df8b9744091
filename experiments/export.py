"""Export a trained checkpoint as a BioImage Model Zoo package (model spec 0.5) that runs without our code.

    python -m experiments.export --checkpoint runs/demo-.../best.pt --out model.zip [--sampler dpmpp2m] [--sampling-steps 4] [--seed 0]

The package's contents and conventions: :mod:`experiments.inference.bioimage_export`. The package is
validated with ``bioimageio.core.test_model`` offline (``BIOIMAGEIO_PERFORM_IO_CHECKS=false``) unless
``--no-test``; its summary is printed. Needs the optional extra: ``pip install -e '.[export]'``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ddpm.settings import SEEDS, field_range, range_parser
from experiments.command import CommandParser, run_command
from experiments.image_io.ome_tiff import PIXEL_SIZES_UM
from experiments.inference.bioimage_export import (
    DEFAULT_EXPORT_SAMPLER, DEFAULT_SAMPLING_STEPS, EXPORT_SAMPLERS, TEST_SIDE, ExportOptions, build_package, test_package,
)


def _ranged(name: str, flag: str, kind: type = int):
    return range_parser(kind, field_range(ExportOptions, name), flag)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.export", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="a .pt file, or a run folder (its last.pt)")
    parser.add_argument("--out", required=True, type=Path, help="the package to write, e.g. model.zip")
    parser.add_argument("--sampler", choices=EXPORT_SAMPLERS, default=DEFAULT_EXPORT_SAMPLER,
                        help=f"the deterministic sampler fixed in the package (default {DEFAULT_EXPORT_SAMPLER}: as good as "
                             "10-step DDIM in fewer evaluations, docs/sampling.md)")
    parser.add_argument("--sampling-steps", type=_ranged("sampling_steps", "--sampling-steps"), default=DEFAULT_SAMPLING_STEPS,
                        help=f"network evaluations fixed in the package (default {DEFAULT_SAMPLING_STEPS})")
    parser.add_argument("--seed", type=range_parser(int, SEEDS, "--seed"), default=0,
                        help="seed of the hashed initial noise (default 0)")
    parser.add_argument("--pixel-size", type=range_parser(float, PIXEL_SIZES_UM, "--pixel-size"),
                        help="pixel size of the input grid in µm (default: the test TIF's, else the training inputs'); "
                             "the output's is divided by the model's enlargement")
    parser.add_argument("--test-image", type=Path, help="TIF for the test tensor (default: the run's data root test_wf, else the example input shipped "
                             "beside the checkpoint)")
    parser.add_argument("--test-side", type=_ranged("test_side", "--test-side"), default=TEST_SIDE,
                        help=f"largest side of the test tensor's output (a centred crop of the test image; default {TEST_SIDE})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing package at --out")
    parser.add_argument("--no-test", action="store_true", help="skip bioimageio.core's test of the written package")
    return parser


def run(args: argparse.Namespace) -> int:
    options = ExportOptions(
        sampler=args.sampler, sampling_steps=args.sampling_steps, seed=args.seed, pixel_size_um=args.pixel_size,
        test_side=args.test_side, test_image=args.test_image,
    )
    path = build_package(args.checkpoint, args.out, options, overwrite=args.overwrite)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")
    if args.no_test:
        return 0
    summary = test_package(path)
    print(summary.format() if hasattr(summary, "format") else summary)
    return 0 if summary.status == "passed" else 1


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
