"""Fetch the real BioSR microtubule data (about 12 GB) by cloning the tutorial authors' repository
(the library of ``python -m experiments.get_data``).
"""

import shutil
import subprocess
import sys
from pathlib import Path

BIOSR_URL = "https://github.com/DeepTrackAI/biosr_dataset"
NEEDED_BYTES = 13 * 10**9  # the clone's size plus git's own files


def fetch(dest: Path, url: str = BIOSR_URL) -> int:
    """Clone ``url`` into ``dest`` unless ``dest`` exists; returns a process exit status."""
    if dest.exists() and not dest.is_dir():
        print(f"error: {dest} is a file, not a data folder; choose another --dest", file=sys.stderr)
        return 1
    if dest.exists():
        print(f"{dest} already exists; nothing to do (delete it to download again)")
        return 0
    if shutil.which("git") is None:
        print("error: git is not installed; install git, or download the repository's files from "
              f"{url} into {dest}", file=sys.stderr)
        return 1
    free = shutil.disk_usage(dest.resolve().parent).free
    if free < NEEDED_BYTES:
        print(f"warning: only {free / 1e9:.1f} GB free next to {dest}; the clone needs about 12 GB", file=sys.stderr)
    print(f"cloning {url} into {dest}: about 12 GB, this takes a while (and that much free disk)")
    result = subprocess.run(["git", "clone", url, str(dest)])
    if result.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)  # a partial clone would pass the 'exists' check next time
        print(
            f"error: `git clone {url} {dest}` failed (exit {result.returncode}). Check your internet "
            "connection and free disk space (about 12 GB), then run `make data` again; or download the "
            f"repository by other means into {dest}. Without the real data, `make synthetic-data` writes "
            "a small look-alike in the same layout.",
            file=sys.stderr,
        )
        return 1
    print(f"done: the loader takes {dest} (or {dest}/BioSR/Microtubules) as its root")
    return 0
