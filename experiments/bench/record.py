"""What every benchmark's JSON says of where its figures come from, and its command's entry point.

``write_record(path, figures, device)`` writes the figures with the commit they measured (``git rev-parse
HEAD`` of the checkout, ``+`` when its tracked files had uncommitted changes; None outside a git checkout),
the machine (:class:`~experiments.bench.machine.Machine`) and the paths in them relative to the working
directory (:func:`~experiments.integrity.json_files.portable_path`): a committed record holds no path of the machine
that wrote it. ``benchmark_main(build_parser, run)`` is each benchmark's ``main``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from experiments.bench.machine import read_machine
from experiments.command import run_command
from experiments.integrity.json_files import portable_path, write_json

CHECKOUT = Path(__file__).resolve().parents[2]


def commit_of(checkout: Path = CHECKOUT) -> str | None:
    """The commit ``checkout`` holds, with ``+`` when its tracked files differ from it; None without git."""
    try:
        head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(checkout), "diff", "--quiet", "HEAD", "--"]).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def machine_record(device: torch.device) -> dict[str, Any]:
    """The machine of ``device`` as JSON (its CPU flags left out: long, and summed up by the peak)."""
    return {key: value for key, value in asdict(read_machine(device)).items() if key != "flags"}


def portable(value: Any) -> Any:
    """``value`` with every Path in it, and every string naming an absolute path, made :func:`portable_path`."""
    if isinstance(value, Path) or (isinstance(value, str) and value.startswith("/")):
        return portable_path(value)
    if isinstance(value, Mapping):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item) for item in value]
    return value


def write_record(path: str | Path, figures: Mapping[str, Any], device: torch.device | str = "cpu") -> Path:
    """``figures`` as strict JSON at ``path``, with ``commit`` and ``machine`` and portable paths."""
    return write_json(path, {**portable(dict(figures)), "commit": commit_of(),
                             "machine": machine_record(torch.device(device))})


def benchmark_main(build_parser: Callable[[], Any], run: Callable[[Any], Any]) -> Callable[[list[str] | None], int]:
    """A benchmark command's ``main(argv)``: ``run`` inside the command boundary."""

    def main(argv: list[str] | None = None) -> int:
        return run_command(build_parser(), run, argv)

    return main
