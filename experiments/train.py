"""Train a conditional DDPM for super-resolution: ``python -m experiments.train --preset l1``.

Any configuration field can be overridden (``--epochs 5``, ``--train.lr 2e-4``; see ``--help``).
``--resume RUN_DIR`` continues a stopped run. Under ``torchrun --nproc_per_node N`` it trains with
DistributedDataParallel, the global batch split across the N processes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.config import add_config_arguments, config_from_args, config_overrides
from experiments.training.run_folder import new_run_dir
from experiments.training.trainer import Trainer, TrainingDiverged, TrainingInterrupted


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in this folder (its config.json wins)")
    parser.add_argument("--run-dir", help="write into this folder instead of <out_dir>/<name>-<timestamp>")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    add_config_arguments(parser)
    return parser.parse_args(argv)


# Errors whose message names the file or flag and what to do: one line is all the user needs.
USER_ERRORS = (ValueError, OSError)


def main(argv: list[str] | None = None) -> int:
    """Run the command; a user error prints one line (the traceback with ``--debug``) and returns 1."""
    args = parse_args(argv)
    try:
        return _run(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    overrides = sorted(f"{section}.{name}" for section, values in config_overrides(args).items() for name in values)
    if args.resume and overrides:
        print(f"error: --resume continues a run with its own config.json; drop {overrides}", file=sys.stderr)
        return 2
    if args.resume:
        run_dir, config = Path(args.resume), None
    else:
        config = config_from_args(args)
        run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(config)
    trainer = Trainer(config, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    if trainer.place.is_main:
        print(f"run folder: {trainer.run_dir}  (device {trainer.device}, {trainer.place.world_size} process(es))")
    try:
        trainer.fit()
    except TrainingInterrupted as stop:
        print(stop, file=sys.stderr)
        return 130
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
