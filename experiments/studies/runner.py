"""Running a study: each run is an ordinary run folder, trained by ``python -m experiments.train`` and scored
by ``python -m experiments.evaluate``, each in its own process with its output in a log beside it.

Re-running a study does only what is missing: a run whose ``last.pt`` has all its epochs is not trained
again, one with fewer is resumed (``--resume``), an evaluation whose ``evaluation.json`` exists is kept.
The wall time of every command is written to ``<study>/timings.json`` as it finishes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ddpm.settings import UserError
from experiments.checkpoint import LAST
from experiments.config.presets import preset
from experiments.integrity.json_files import write_json
from experiments.records import read_records
from experiments.studies.config import Arm, StudyConfig

TIMINGS = "timings.json"
SINGLE, MEAN = "evaluation-1", "evaluation-mean"  # the evaluation folders in each run folder


class StudyError(UserError):
    """A command of the study failed; the message names the run and its log."""


@dataclass(frozen=True)
class Run:
    arm: Arm
    seed: int
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name


def plan(config: StudyConfig, out: Path) -> list[Run]:
    """Every run of the study, seed-major (all arms of seed 0 first), so that an early stop still
    leaves complete pairs to compare."""
    return [Run(arm, seed, out / "runs" / f"{arm.name}-seed{seed}") for seed in config.seeds for arm in config.arms]


def epochs_done(folder: Path) -> int:
    """Epochs the run folder's ``last.pt`` holds (from its ``metrics.json``; 0 when there is none)."""
    if not (folder / LAST).is_file():
        return 0
    try:
        return max((record.epoch for record in read_records(folder)), default=0)
    except (OSError, ValueError):
        return 0


def planned_epochs(config: StudyConfig, arm: Arm) -> int:
    """The ``--train.epochs`` the study gives (the preset's when it gives none)."""
    flags = [*config.train_flags, *arm.flags]
    given = [flags[i + 1] for i in range(len(flags) - 1) if flags[i] in ("--train.epochs", "--epochs")]
    return int(given[-1]) if given else preset(arm.preset).train.epochs


def train_command(config: StudyConfig, run: Run, device: str) -> list[str]:
    """The train command of ``run``: a resume when the run has a checkpoint, else a new run."""
    if (run.folder / LAST).is_file():
        return ["-m", "experiments.train", "--resume", str(run.folder), "--no-progress"]
    base = [] if run.arm.base is None else ["--train.base", str(run.folder.parent / f"{run.arm.base}-seed{run.seed}" / LAST)]
    return ["-m", "experiments.train", "--preset", run.arm.preset, *config.train_flags, *run.arm.flags, *base,
            "--name", run.name, "--train.seed", str(run.seed), "--train.device", device,
            "--run-dir", str(run.folder), "--no-progress"]


def evaluate_commands(config: StudyConfig, run: Run, device: str) -> dict[str, list[str]]:
    """The evaluations of ``run``: one sample, and (diffusion arms, ``mean_samples`` > 0) the mean of N."""
    common = ["-m", "experiments.evaluate", "--checkpoint", str(run.folder / LAST), "--levels", "all",
              "--device", device, "--no-progress", "--overwrite"]

    def images(count: int | None) -> list[str]:
        return ["--all-images"] if count is None else ["--max-images", str(count)]

    commands = {SINGLE: [*common, *images(config.images), "--samples", "1", "--out", str(run.folder / SINGLE)]}
    if config.mean_samples > 0 and not run.arm.regression:
        commands[MEAN] = [*common, *images(config.mean_images), "--samples", str(config.mean_samples),
                          "--out", str(run.folder / MEAN)]
    return commands


def _execute(arguments: list[str], log: Path, what: str) -> float:
    """Run ``python <arguments>`` with its output in ``log``; returns its wall time in seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "a", encoding="utf-8") as stream:
        stream.write(f"\n$ {sys.executable} {' '.join(arguments)}\n")
        stream.flush()
        completed = subprocess.run([sys.executable, *arguments], stdout=stream, stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        tail = log.read_text(encoding="utf-8").strip().splitlines()[-1:]
        raise StudyError(f"{what} failed (exit {completed.returncode}): {' '.join(tail)}; the whole output is in {log}")
    return time.perf_counter() - started


def read_timings(out: Path) -> dict[str, dict[str, float]]:
    """``<out>/timings.json`` (run -> step -> seconds), empty before the first command finished."""
    path = out / TIMINGS
    return json.loads(path.read_text()) if path.is_file() else {}


def run_study(config: StudyConfig, out: Path, device: str = "auto") -> dict[str, dict[str, float]]:
    """Train and evaluate every run of ``config`` under ``out`` that is not done yet; returns the timings
    (run -> step -> seconds), also in ``out/timings.json``. A run interrupted by Ctrl-C resumes next time."""
    timings_path, timings = out / TIMINGS, read_timings(out)
    runs = plan(config, out)
    for index, run in enumerate(runs, 1):
        steps = timings.setdefault(run.name, {})
        if epochs_done(run.folder) < planned_epochs(config, run.arm):
            action = "resuming" if (run.folder / LAST).is_file() else "training"
            print(f"[{index}/{len(runs)}] {run.name}: {action}", flush=True)
            steps["train_seconds"] = steps.get("train_seconds", 0.0) + _execute(
                train_command(config, run, device), run.folder.parent / f"{run.name}.train.log", f"training {run.name}")
            write_json(timings_path, timings)
        for name, command in evaluate_commands(config, run, device).items():
            if (run.folder / name / "evaluation.json").is_file():
                continue
            print(f"[{index}/{len(runs)}] {run.name}: {name}", flush=True)
            steps[f"{name}_seconds"] = _execute(command, run.folder.parent / f"{run.name}.{name}.log",
                                                f"{name} of {run.name}")
            write_json(timings_path, timings)
    return timings
