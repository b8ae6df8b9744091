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
import json
import sys
from pathlib import Path

from ddpm.settings import UsageError
from experiments.command import CommandParser, run_command
from experiments.config.schema import RunConfig
from experiments.pairs.dataset import read_pairs
from experiments.evaluation.loop import bicubic_baseline
from experiments.evaluation.report import parse_named, read_named_evaluations
from experiments.integrity.atomic import atomic_path
from experiments.integrity.json_files import portable_path, write_json
from experiments.integrity.outputs import check_outputs
from experiments.studies.summary import trust_values
from experiments.studies.comparison import (BICUBIC, error_bar_table, level_table, paired_table, plot_curves,
                                            plot_levels, read_curve, spectra, spectrum_table)
from experiments.trust.figures import plot_spectra


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for comparison.md / .json / .png")
    parser.add_argument("--evaluation", action="append", default=[], metavar="NAME=FOLDER",
                        help="an evaluation folder of experiments.evaluate; the first gives the bicubic input")
    parser.add_argument("--curve", action="append", default=[], metavar="NAME=RUN",
                        help="a run folder whose metrics.csv gives a training curve")
    parser.add_argument("--paired", action="append", default=[], metavar="FIRST=SECOND",
                        help="also tabulate FIRST minus SECOND (two --evaluation names), image by image, with its interval")
    parser.add_argument("--title", default="Held-out cells")
    parser.add_argument("--mixed-test-sets", action="store_true",
                        help="set evaluations of different test sets (data, task, image count) side by side, said so")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in --out")
    return parser


def test_set(evaluation: dict) -> dict:
    """What an evaluation was scored on: its data root, task, levels and images per level."""
    return {"data": evaluation.get("data"), "task": evaluation.get("task", "tutorial"),
            "levels": list(evaluation["levels"]),
            "images": [int(result["model"]["images"]) for result in evaluation["levels"].values()]}


def read_evaluations(entries: list[str], mixed: bool = False) -> dict[str, dict]:
    """The ``--evaluation`` folders' evaluation.json, each with per-image scores, all on the same levels and,
    unless ``mixed``, on one test set (:func:`test_set`): side by side under one bicubic input otherwise."""
    evaluations = read_named_evaluations(entries, "--evaluation")
    for name, evaluation in evaluations.items():
        if any("per_image" not in result for result in evaluation["levels"].values()):
            raise UsageError(f"--evaluation {name}: its evaluation.json holds no per-image scores; "
                             "evaluate again with this version of experiments.evaluate")
    sets = {name: test_set(evaluation) for name, evaluation in evaluations.items()}
    first = next(iter(sets), None)
    for name, found in sets.items():
        if found["levels"] != sets[first]["levels"]:
            raise UsageError(f"the evaluations cover different levels ({first}: {sets[first]['levels']}, {name}: "
                             f"{found['levels']}); evaluate them on the same ones")
        differ = [key for key in ("data", "task", "images") if found[key] != sets[first][key]]
        if differ and not mixed:
            shown = "; ".join(f"{key} {sets[first][key]} against {found[key]}" for key in differ)
            raise UsageError(f"--evaluation {first!r} and {name!r} were scored on different test sets ({shown}): one "
                             "bicubic column and one image count would misdescribe one of them; evaluate both on one "
                             "test set, or pass --mixed-test-sets to set them side by side anyway, said in the report")
    return evaluations


def curve_baselines(run: Path, levels: list[str]) -> dict[str, float]:
    """The bicubic input's fitted PSNR on the test images the run evaluated while training."""
    config = RunConfig.load(run / "config.json")
    return {level: bicubic_baseline(read_pairs(config.data, "test", level=level), config.eval.max_test_images)["psnr_fit"]
            for level in levels}


def detail(result: dict) -> dict[str, float]:
    """A level's high-frequency power relative to the target's (dB), where its evaluation measured it."""
    quality = result.get("quality", {})
    if "spectrum" not in quality:
        return {}
    return {"output": quality["model"]["hf_power_db"], "one_sample": quality["model"]["hf_power_sample_db"],
            "bicubic": quality["bicubic"]["hf_power_db"]}


def run(args: argparse.Namespace) -> None:
    evaluations = read_evaluations(args.evaluation, args.mixed_test_sets)
    if not evaluations:
        raise UsageError("pass at least one --evaluation NAME=FOLDER")
    runs = parse_named(args.curve, "--curve", "'native=runs/native'")
    outputs = [args.out / name for name in ("comparison.md", "comparison.json", "comparison.png")]
    extra = [args.out / "epochs.png"] if runs else []
    extra += [args.out / "spectra.png"] if spectra(evaluations) else []
    check_outputs(outputs + extra, overwrite=args.overwrite)
    text = [f"# {args.title}\n", "Evaluations (`evaluation.json`):\n"]
    text += [f"- {name}: `{portable_path(evaluation['checkpoint'])}` ({evaluation['sampling']['sampler']}, "
             f"{evaluation['sampling']['samples']} sample(s), task {evaluation.get('task', 'tutorial')}"
             f"{', inputs enlarged 2x (--upsample)' if evaluation.get('upsample') else ''})"
             for name, evaluation in evaluations.items()]
    if len({json.dumps(test_set(evaluation)) for evaluation in evaluations.values()}) > 1:
        text += ["\n**Mixed test sets** (`--mixed-test-sets`): the bicubic input and the image counts are those of the "
                 "first evaluation; each gain is against its own evaluation's bicubic input.\n"]
    for metric in ("psnr", "ssim"):
        text += [f"\n## {metric.upper()}\n", level_table(evaluations, metric)]
    pairs = [entry.partition("=")[::2] for entry in args.paired]
    for entry, pair in zip(args.paired, pairs):
        if not all(name in evaluations for name in pair):
            raise UsageError(f"--paired {entry}: name two --evaluation entries as FIRST=SECOND "
                             f"(known: {', '.join(evaluations)})")
    paired = paired_table(evaluations, pairs)
    if paired:
        text += ["\n## Paired differences, fitted PSNR\n", "Image by image on the same windows (dB), with the 95 % "
                 "interval of the mean difference: an interval clear of 0 is a difference the images resolve.\n",
                 "| level | " + " | ".join(paired) + " |", "|" + "---|" * (1 + len(paired))]
        text += [f"| {level} | " + " | ".join(rows[level].format() for rows in paired.values()) + " |"
                 for level in next(iter(paired.values()))]
    error_bars = error_bar_table(evaluations)
    if error_bars:
        text += ["\n## Error bars\n", "The std map as an error bar (`docs/trust.md`): the posterior check's dispersion "
                 "(1: samples spread as posterior draws, 0: copies; – for a predicted std), the share of pixels inside "
                 "+-1.645 std raw and with the error model fitted on the validation split, the calibrated interval's "
                 "mean width ([-1, 1] units) and the rank correlation of std and abs. error.\n", error_bars]
    spectrum_rows = spectrum_table(evaluations)
    if spectrum_rows:
        text += ["\n## Detail: power spectra\n", "The power above a quarter cycle per pixel relative to the target's "
                 "(dB; `docs/trust.md`): 0 holds the target's detail, below 0 is blurred. One sample of a posterior "
                 "keeps it; the mean of samples and a regression lose it. Spectra: `spectra.png`.\n", spectrum_rows]
        plot_spectra({name: {level: quality["spectrum"] for level, quality in levels.items()}
                      for name, levels in spectra(evaluations).items()},
                     args.out / "spectra.png", f"{args.title}: power spectra over the target's", BICUBIC)
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
        level: {"model": r["model"], "bicubic": r["bicubic"], "error_bars": trust_values(r), "detail": detail(r)}
        for level, r in e["levels"].items()}}
        for name, e in evaluations.items()}, "curves": curves,
        "paired": {pair: {level: interval.to_json() for level, interval in rows.items()} for pair, rows in paired.items()}})
    print(f"wrote {', '.join(str(path) for path in outputs + extra)}")


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
