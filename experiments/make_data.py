"""Generated BioSR-like microtubule data, in exactly its folder layout.

    python -m experiments.make_data --out data/synthetic [--train 4096 --validate 256 --test-per-level 150
                                                           --size 128 --seed 0]
    python -m experiments.make_data --structures biosr-sim --out data/biosr-sim [--degradation randomized]
                                    [--psf my_beads.tif]

The data and the physics: :mod:`experiments.microscope.synthetic` (drawn filaments) and
:mod:`experiments.microscope.biosr_sim` (real SIM cells degraded to widefield).
"""

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from ddpm.settings import UsageError, field_range, range_parser
from experiments.command import CommandParser, run_command
from experiments.microscope import biosr_sim
from experiments.microscope.degradation import DEGRADATIONS, degradation_preset
from experiments.microscope.optics import otf_from_file
from experiments.microscope.synthetic import STRUCTURES, SyntheticConfig, generate, save_preview
from experiments.data.task import TASKS
from experiments.microscope.writer import DataSetSize
from experiments.integrity.outputs import check_output_folder, check_outputs


def _count(name: str, flag: str):
    return range_parser(int, field_range(DataSetSize, name), flag)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.make_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the BioSR layout into")
    parser.add_argument("--structures", choices=STRUCTURES, default="filaments",
                        help="drawn filaments (default) or windows of the nine real BioSR SIM cells (biosr-sim)")
    parser.add_argument("--train", type=_count("train", "--train"), default=4096, help="training pairs (default 4096)")
    parser.add_argument("--validate", type=_count("validate", "--validate"), default=256,
                        help="validation pairs, 0 for none (default 256)")
    parser.add_argument("--test-per-level", type=_count("test_per_level", "--test-per-level"), default=150,
                        help="test fields, each at 9 levels (default 150)")
    parser.add_argument("--task", choices=TASKS, default="tutorial",
                        help="tutorial: input and target on the camera grid (default); native: input on the camera "
                             "grid at half the target's side, target on the SIM grid (experiments.data.task)")
    parser.add_argument("--size", type=range_parser(int, field_range(SyntheticConfig, "size"), "--size"), default=128,
                        help="target side in px, even (default 128)")
    parser.add_argument("--seed", type=_count("seed", "--seed"), default=0)
    parser.add_argument("--degradation", choices=DEGRADATIONS, default="fixed",
                        help="biosr-sim only: the widefield degradation's ranges (experiments.microscope.degradation): "
                             "fixed (a 215 nm Gaussian PSF, flat 5 %% background; default), measured (BioSR's measured "
                             "OTF) or randomized (drawn per window around it: PSF width, structured background, "
                             "photons, read noise)")
    parser.add_argument("--psf", type=Path,
                        help="biosr-sim only: your microscope's widefield PSF in place of the preset's, as a radial "
                             "OTF (.mrc) or a bead image (.tif stating its pixel size in its ImageJ or OME metadata)")
    parser.add_argument("--figure", type=Path, help="preview figure path (default OUT/synthetic_preview.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing data set in --out")
    return parser


def run(args: argparse.Namespace) -> None:
    counts = DataSetSize(args.train, args.validate, args.test_per_level, args.seed)
    # Both configurations are built (and so checked) before anything is written.
    if args.structures == "biosr-sim":
        degradation = degradation_preset(args.degradation)
        if args.psf is not None:
            otf_from_file(args.psf)  # read (and so checked) before anything is written
            degradation = replace(degradation, optics=str(args.psf))
        config = biosr_sim.RealStructureConfig(size=args.size, task=args.task, degradation=degradation)
    elif args.degradation != "fixed" or args.psf is not None:
        raise UsageError("--degradation and --psf degrade real SIM cells: add --structures biosr-sim")
    else:
        config = SyntheticConfig(size=args.size, task=args.task)
    figure = args.figure or args.out / "synthetic_preview.png"
    check_output_folder(args.out)
    check_outputs([figure], overwrite=args.overwrite)
    started = time.perf_counter()
    sizes = (counts.train, counts.validate, counts.test_per_level, counts.seed)
    if args.structures == "biosr-sim":
        print(biosr_sim.describe(config))
        biosr_sim.generate(args.out, *sizes, config, overwrite=args.overwrite)
    else:
        generate(args.out, *sizes, config, overwrite=args.overwrite)
    print(f"wrote {counts.train} training, {counts.validate} validation and {counts.test_per_level} x 9 test pairs "
          f"({args.structures}) to {args.out} in {time.perf_counter() - started:.1f} s")
    save_preview(args.out, figure)
    print(f"preview: {figure}")


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
