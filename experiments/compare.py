"""Evaluations of several models on one test set, side by side, and their training curves.

    python -m experiments.compare --out docs/native --title "Native task, held-out cells" \\
        --evaluation "native, 1 sample=runs/native/evaluation-1" --evaluation "native, mean of 4=runs/native/evaluation-4" \\
        --evaluation "tutorial-task L1, --upsample=runs/l1/evaluation-native" --curve "native=runs/native"

writes ``<out>/comparison.md`` (per level: the bicubic input and each evaluation in both protocols, the
fitted gain over the bicubic input image by image with its 95 % interval), ``<out>/comparison.png`` (PSNR
and SSIM against the level) and, with ``--curve``, ``<out>/epochs.png``: the fitted PSNR gain over the
bicubic input against the epoch, on the images each run evaluated while training
(:mod:`experiments.studies.comparison`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ddpm.settings import UsageError
from experiments.command import CommandParser, run_command
from experiments.config.schema import RunConfig
from experiments.pairs.dataset import read_pairs
from experiments.evaluation.loop import bicubic_baseline
from experiments.evaluation.report import read_named_evaluations
from experiments.integrity.atomic import atomic_path
from experiments.integrity.json_files import portable_path, write_json
from experiments.integrity.outputs import check_outputs
from experiments.studies.comparison import level_table, plot_curves, plot_levels, read_curve


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for comparison.md / .json / .png")
    parser.add_argument("--evaluation", action="append", default=[], metavar="NAME=FOLDER",
                        help="an evaluation folder of experiments.evaluate; the first gives the bicubic input")
    parser.add_argument("--curve", action="append", default=[], metavar="NAME=RUN",
                        help="a run folder whose metrics.csv gives a training curve")
    parser.add_argument("--title", default="Held-out cells")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in --out")
    return parser


def named(entries: list[str], flag: str) -> dict[str, Path]:
    pairs = {}
    for entry in entries:
        name, separator, folder = entry.partition("=")
        if not separator or not name.strip():
            raise UsageError(f"{flag} takes NAME=FOLDER, got {entry!r}")
        pairs[name.strip()] = Path(folder)
    return pairs


def read_evaluations(entries: list[str]) -> dict[str, dict]:
    """The ``--evaluation`` folders' evaluation.json, each with per-image scores, all on the same levels."""
    evaluations = read_named_evaluations(entries, "--evaluation")
    for name, evaluation in evaluations.items():
        if any("per_image" not in result for result in evaluation["levels"].values()):
            raise UsageError(f"--evaluation {name}: its evaluation.json holds no per-image scores; "
                             "evaluate again with this version of experiments.evaluate")
    levels = [list(evaluation["levels"]) for evaluation in evaluations.values()]
    if any(other != levels[0] for other in levels):
        raise UsageError(f"the evaluations cover different levels ({levels}); evaluate them on the same ones")
    return evaluations


def curve_baselines(run: Path, levels: list[str]) -> dict[str, float]:
    """The bicubic input's fitted PSNR on the test images the run evaluated while training."""
    config = RunConfig.load(run / "config.json")
    return {level: bicubic_baseline(read_pairs(config.data, "test", level=level), config.eval.max_test_images)["psnr_fit"]
            for level in levels}


def run(args: argparse.Namespace) -> None:
    evaluations = read_evaluations(args.evaluation)
    if not evaluations:
        raise UsageError("pass at least one --evaluation NAME=FOLDER")
    runs = named(args.curve, "--curve")
    outputs = [args.out / name for name in ("comparison.md", "comparison.json", "comparison.png")]
    check_outputs(outputs + ([args.out / "epochs.png"] if runs else []), overwrite=args.overwrite)
    text = [f"# {args.title}\n", "Evaluations (`evaluation.json`):\n"]
    text += [f"- {name}: `{portable_path(evaluation['checkpoint'])}` ({evaluation['sampling']['sampler']}, "
             f"{evaluation['sampling']['samples']} sample(s), task {evaluation.get('task', 'tutorial')}"
             f"{', inputs enlarged 2x (--upsample)' if evaluation.get('upsample') else ''})"
             for name, evaluation in evaluations.items()]
    for metric in ("psnr", "ssim"):
        text += [f"\n## {metric.upper()}\n", level_table(evaluations, metric)]
    plot_levels(evaluations, args.out / "comparison.png", args.title)
    curves = {}
    if runs:
        levels = sorted({level for run in runs.values() for level in RunConfig.load(run / "config.json").eval.levels})
        baselines = curve_baselines(next(iter(runs.values())), levels)
        curves = {name: {level: read_curve(run, level) for level in levels} for name, run in runs.items()}
        plot_curves(curves, baselines, args.out / "epochs.png", "training: fitted PSNR gain over bicubic")
        text += ["\n## Training curves\n", "| run | level | epoch: fitted PSNR gain over bicubic (dB) |", "|---|---|---|"]
        text += [f"| {name} | {level} | " + ", ".join(f"{epoch}: {value - baselines[level]:+.2f}" for epoch, value in points)
                 + " |" for name, levels_ in curves.items() for level, points in levels_.items()]
    with atomic_path(args.out / "comparison.md") as temporary:
        temporary.write_text("\n".join(text) + "\n")
    write_json(args.out / "comparison.json", {"evaluations": {name: {"checkpoint": portable_path(e["checkpoint"]), "levels": {
        level: {"model": r["model"], "bicubic": r["bicubic"]} for level, r in e["levels"].items()}}
        for name, e in evaluations.items()}, "curves": curves})
    print(f"wrote {', '.join(str(path) for path in outputs)}" + (f" and {args.out / 'epochs.png'}" if runs else ""))


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
