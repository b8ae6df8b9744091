"""Run a study: arms x seeds of ordinary runs, summarised over seeds with 95 % intervals in both protocols.

    python -m experiments.study --preset cpu                # MSE, L1, L1 + min-SNR, regression x 3 seeds (make study)
    python -m experiments.study --preset full               # the tutorial's mse and l1 x 3 seeds, on a GPU
    python -m experiments.study --preset residual           # predict and refine against its rivals x 3 seeds
    python -m experiments.study --preset cpu --summary-only # the tables and figure of what has run so far

Each run is a run folder under ``<out>/runs``, trained by ``experiments.train`` and scored on all nine
test levels by ``experiments.evaluate``; running the command again skips what is done and resumes an
interrupted run. The study folder (default ``studies/<preset>``) receives ``study.md``, ``study.json``,
``study_levels.png``, ``study_spectra.png``, ``timings.json`` and the logs: see :mod:`experiments.studies`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ddpm.settings import UsageError
from experiments.bench.machine import read_machine
from experiments.command import CommandParser, run_command
from experiments.integrity.json_files import write_json
from experiments.integrity.outputs import check_output_folder
from experiments.runtime import DEVICES, pick_device
from experiments.studies.config import STUDIES
from experiments.studies.runner import read_timings, run_study
from experiments.studies.summary import SUMMARY_MD, write_summary


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.study", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=tuple(STUDIES), default="cpu", help="the study to run (default cpu)")
    parser.add_argument("--out", type=Path, help="study folder (default studies/<preset>)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--summary-only", action="store_true", help="write the tables and figure of the runs done so far")
    return parser


def run(args: argparse.Namespace) -> None:
    config = STUDIES[args.preset]
    out = args.out or Path("studies") / config.name
    check_output_folder(out)
    if args.summary_only and not read_timings(out):  # a summary of nothing would link a figure never drawn
        raise UsageError(f"--summary-only: {out} holds no finished run of the study yet; run python -m experiments.study "
                         f"--preset {args.preset}{f' --out {out}' if args.out else ''} first")
    device = pick_device(args.device)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config.to_dict())
    timings = read_timings(out) if args.summary_only else run_study(config, out, args.device)
    machine = read_machine(torch.device(device)).describe().splitlines()[0]
    write_summary(config, out, timings, machine)
    print(f"wrote {out / SUMMARY_MD}")


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
