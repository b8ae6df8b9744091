"""Export a trained checkpoint as a BioImage Model Zoo package (model spec 0.5) that runs without our code.

    python -m experiments.export --checkpoint runs/demo-.../best.pt --out model.zip [--sampling-steps 10] [--seed 0]

The package's contents and conventions: :mod:`experiments.inference.bioimage_export`. The package is
validated with ``bioimageio.core.test_model`` offline (``BIOIMAGEIO_PERFORM_IO_CHECKS=false``) unless
``--no-test``; its summary is printed. Needs the optional extra: ``pip install -e '.[export]'``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.inference.bioimage_export import (
    DEFAULT_HALO, DEFAULT_SAMPLING_STEPS, TEST_SIDE, ExportError, ExportOptions, build_package, test_package,
)
from experiments.inference.loading import InferenceError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.export", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="a .pt file, or a run folder (its last.pt)")
    parser.add_argument("--out", required=True, type=Path, help="the package to write, e.g. model.zip")
    parser.add_argument("--sampling-steps", type=int, default=DEFAULT_SAMPLING_STEPS,
                        help=f"DDIM steps (network evaluations) fixed in the package (default {DEFAULT_SAMPLING_STEPS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hashed initial noise (default 0)")
    parser.add_argument("--halo", type=int, default=DEFAULT_HALO, help=f"pixels cropped per side when tiling (default {DEFAULT_HALO})")
    parser.add_argument("--pixel-size", type=float, help="pixel size of the input (= output) grid in µm (default: the test TIF's)")
    parser.add_argument("--test-image", type=Path, help="TIF for the test tensor (default: the run's data root test_wf)")
    parser.add_argument("--test-side", type=int, default=TEST_SIDE,
                        help=f"largest side of the test tensor, a centred crop of the test image (default {TEST_SIDE})")
    parser.add_argument("--no-test", action="store_true", help="skip bioimageio.core's test of the written package")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = ExportOptions(
        sampling_steps=args.sampling_steps, seed=args.seed, halo=args.halo, pixel_size_um=args.pixel_size,
        test_side=args.test_side, test_image=args.test_image,
    )
    try:
        path = build_package(args.checkpoint, args.out, options)
    except (ExportError, InferenceError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")
    if args.no_test:
        return 0
    summary = test_package(path)
    print(summary.format() if hasattr(summary, "format") else summary)
    return 0 if summary.status == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
