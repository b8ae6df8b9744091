"""Generated BioSR-like microtubule data, in exactly its folder layout.

    python -m experiments.synthetic --out data/synthetic [--train 4096 --validate 256 --test-per-level 150
                                                           --size 128 --seed 0]
    python -m experiments.synthetic --structures biosr-sim --out data/biosr-sim

The data and the physics: :mod:`experiments.data.synthetic` (drawn filaments) and
:mod:`experiments.data.biosr_sim` (real SIM cells degraded to widefield).
"""

import argparse
import time
from pathlib import Path

from experiments.data import biosr_sim
from experiments.data.synthetic import STRUCTURES, SyntheticConfig, generate, save_preview


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the BioSR layout into")
    parser.add_argument("--structures", choices=STRUCTURES, default="filaments",
                        help="drawn filaments (default) or windows of the nine real BioSR SIM cells (biosr-sim)")
    parser.add_argument("--train", type=int, default=4096, help="training pairs (default 4096)")
    parser.add_argument("--validate", type=int, default=256, help="validation pairs (default 256)")
    parser.add_argument("--test-per-level", type=int, default=150, help="test fields, each at 9 levels (default 150)")
    parser.add_argument("--size", type=int, default=128, help="image side in px, even (default 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, help="preview figure path (default OUT/synthetic_preview.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing data set in --out")
    args = parser.parse_args(argv)
    if args.size % 2:
        parser.error(f"--size must be even (inputs are rendered at half size), got {args.size}")
    counts = (args.train, args.validate, args.test_per_level)
    started = time.perf_counter()
    if args.structures == "biosr-sim":
        config = biosr_sim.RealStructureConfig(size=args.size)
        print(biosr_sim.describe(config))
        biosr_sim.generate(args.out, *counts, args.seed, config, overwrite=args.overwrite)
    else:
        generate(args.out, *counts, args.seed, SyntheticConfig(size=args.size), overwrite=args.overwrite)
    print(f"wrote {args.train} training, {args.validate} validation and {args.test_per_level} x 9 test pairs "
          f"({args.structures}) to {args.out} in {time.perf_counter() - started:.1f} s")
    figure = args.figure or args.out / "synthetic_preview.png"
    save_preview(args.out, figure)
    print(f"preview: {figure}")


if __name__ == "__main__":
    main()
