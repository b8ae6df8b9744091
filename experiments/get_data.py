"""Fetch the real BioSR microtubule data (about 12 GB) by cloning the tutorial authors' repository.

    python -m experiments.get_data [--dest biosr_dataset]

Does nothing when ``--dest`` already exists. On failure it says what to do and exits non-zero.
"""

import argparse
import sys
from pathlib import Path

from experiments.data.biosr_download import BIOSR_URL, fetch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=Path("biosr_dataset"))
    parser.add_argument("--url", default=BIOSR_URL)
    args = parser.parse_args(argv)
    sys.exit(fetch(args.dest, args.url))


if __name__ == "__main__":
    main()
