"""Fetch the real BioSR microtubule data (about 12 GB) by cloning the tutorial authors' repository.

    python -m experiments.get_data [--dest biosr_dataset]

Does nothing when ``--dest`` already exists. On failure it says what to do and exits non-zero.
"""

import argparse
import sys
from pathlib import Path

from experiments.command import CommandParser, run_command
from experiments.pairs.biosr_download import BIOSR_URL, fetch


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.get_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=Path("biosr_dataset"))
    parser.add_argument("--url", default=BIOSR_URL)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), lambda args: fetch(args.dest, args.url), argv)


if __name__ == "__main__":
    sys.exit(main())
