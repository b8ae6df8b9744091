"""Train a conditional DDPM for super-resolution: ``python -m experiments.train --preset l1``.

Any configuration field can be overridden (``--epochs 5``, ``--train.lr 2e-4``; see ``--help``).
``--resume RUN_DIR`` continues a stopped run. Under ``torchrun --nproc_per_node N`` it trains with
DistributedDataParallel, the global batch split across the N processes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ddpm.settings import UsageError
from experiments.command import INTERRUPTED, CommandParser, run_command
from experiments.config.command_line import add_config_arguments, config_from_args, config_overrides
from experiments.integrity.outputs import check_output_folder
from experiments.training.run_folder import new_run_dir
from experiments.training.trainer import Trainer, TrainingInterrupted


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.train", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in this folder (its checkpoint defines the run; config.json may change "
                        "what can change, e.g. train.lr or train.epochs)")
    parser.add_argument("--run-dir", help="write into this folder instead of <out_dir>/<name>-<timestamp>")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    add_config_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    overrides = sorted(f"--{section}.{name}" for section, values in config_overrides(args).items() for name in values)
    # the run folder, its name and its preset are the resumed run's own: a flag for them would look obeyed
    fixed = [flag for flag, value in (("--preset", args.preset), ("--name", args.name), ("--out-dir", args.out_dir),
                                      ("--run-dir", args.run_dir)) if value is not None]
    if args.resume and (overrides or fixed):
        raise UsageError(f"--resume continues the run in {args.resume} with its own config.json; drop "
                         f"{', '.join(fixed + overrides)} (edit its config.json to change what can change)")
    if args.resume:
        run_dir, config = Path(args.resume), None
    else:
        config = config_from_args(args)
        check_output_folder(args.run_dir or config.out_dir, [config.data.root])
        run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(config)
    trainer = Trainer(config, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    if trainer.place.is_main:
        print(f"run folder: {trainer.run_dir}  (device {trainer.device}, {trainer.place.world_size} process(es))")
    try:
        trainer.fit()
    except TrainingInterrupted as stop:
        print(stop, file=sys.stderr)
        return INTERRUPTED
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command; an error the user can fix (a diverged run included) prints one line, exit status 1."""
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
