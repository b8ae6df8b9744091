"""Evaluate a trained checkpoint on test levels: ``python -m experiments.evaluate --checkpoint RUN_DIR``.

Scores the configured sampler's output (MAE, NRMSE, SSIM, MS-SSIM, PSNR) against the targets of each
level, beside the bicubic input, and writes ``evaluation.json``, ``evaluation.md`` and a sample grid per
level into ``--out`` (default: an ``evaluation`` folder beside the checkpoint). Each level also gets the
trust measures of :mod:`experiments.evaluation.trust_report` (RSE / RSP against the input, FRC resolution against
the target and, with ``--samples`` 2 or more, between samples, and the std map's calibration, its scale
fitted on the validation split, with a ``calibration_<level>.png`` figure).

``--upsample`` scores a tutorial-task model on a native-task data set (:mod:`experiments.data.task`), its
camera-grid inputs enlarged 2x by bicubic interpolation as ``experiments.predict --upsample`` enlarges
them: the route a user of a tutorial-task model takes to reach the SIM grid.

The checkpoint, the data root, the levels, the image sizes and every output path are checked before
the first image is sampled; existing results are replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ddpm import SAMPLERS, VARIANCES
from ddpm.settings import UsageError, field_range, range_parser
from experiments import figures
from experiments.command import CommandParser, run_command
from experiments.config.schema import DataConfig, EvalConfig
from experiments.pairs.dataset import read_pairs
from experiments.data.layout import list_test_levels
from experiments.data.layout import check_levels, resolve_root
from experiments.data.task import read_grid
from experiments.evaluation.loop import bicubic_scores, evaluate
from experiments.evaluation.trust_report import TrustAccumulator, append_section, calibration_report, validation_models
from experiments.evaluation.report import comparison_rows, format_table, levels_table, write_report
from experiments.inference.loading import load_for_inference
from experiments.inference.sampling import sampling_from_flags
from experiments.integrity.json_files import portable_path, write_json
from experiments.integrity.outputs import check_output_folder, check_outputs
from experiments.runtime import DEVICES, autocast, resolve_precision


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.evaluate", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a .pt file, or a run folder (its last.pt)")
    parser.add_argument("--data", "--data-root", dest="data",
                        help="data root to evaluate on, e.g. another data set's held-out cells (default: the run's)")
    parser.add_argument("--upsample", action="store_true",
                        help="score a tutorial-task model on a native-task data set, its inputs enlarged 2x (bicubic)")
    parser.add_argument("--levels", help="comma-separated test levels (level_01,level_09), or 'all' (default: the run's)")
    parser.add_argument("--max-images", type=range_parser(int, field_range(EvalConfig, "max_test_images"), "--max-images"),
                        help="first N images of each level (default: the run's setting)")
    parser.add_argument("--all-images", action="store_true", help="every image of each level")
    parser.add_argument("--sampler", choices=tuple(SAMPLERS))
    parser.add_argument("--variance", choices=VARIANCES)
    parser.add_argument("--sampling-steps", type=int, help="DDIM network evaluations")
    parser.add_argument("--eta", type=float, help="DDIM eta (0: deterministic)")
    parser.add_argument("--samples", type=int, help="samples averaged per image")
    parser.add_argument("--batch-size", type=range_parser(int, field_range(EvalConfig, "batch_size"), "--batch-size"))
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--out", type=Path, help="folder for the results (default: <checkpoint folder>/evaluation)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier evaluation in --out")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _levels(text: str | None, root: str, default: tuple[str, ...]) -> list[str]:
    """The levels ``--levels`` names (``all``: those ``root`` holds), each checked to exist in ``root``."""
    if text == "all":
        return list_test_levels(root)
    levels = [level.strip() for level in text.split(",") if level.strip()] if text is not None else list(default)
    if not levels:
        raise UsageError(f"--levels {text!r} names no test level; give e.g. level_01,level_09 or all")
    check_levels(root, levels)
    return levels


def evaluation_data(data: DataConfig, root: str, upsample: bool, checkpoint: Path) -> DataConfig:
    """How the data at ``root`` are read for a model trained with ``data``: its own task, or with ``upsample``
    a tutorial-task model's on a native-task data set. A data set of the other task is refused, naming the flag."""
    grid = read_grid(resolve_root(root))
    if upsample:
        if data.task != "tutorial":
            raise UsageError(f"--upsample scores a tutorial-task model on native-task data; {checkpoint.name} is a "
                             f"{data.task}-task model already: drop --upsample")
        if grid is None or grid.task != "native":
            raise UsageError(f"--upsample needs a native-task data set (its dataset.json says so); {root} is not one")
        return replace(data, root=str(root), task="native")
    if grid is not None and grid.task != data.task:
        hint = ("; pass --upsample to score it there with its inputs enlarged 2x"
                if (data.task, grid.task) == ("tutorial", "native") else "; pass a data set of its task with --data")
        raise UsageError(f"{root} holds pairs of the {grid.task} task, but {checkpoint.name} is a {data.task}-task "
                         f"model{hint}")
    return replace(data, root=str(root))


def run(args: argparse.Namespace) -> None:
    predictor = load_for_inference(args.checkpoint, args.device)
    config = predictor.config
    sampling = sampling_from_flags(config.sampling, config.diffusion.steps, sampler=args.sampler,
                                   variance=args.variance, sampling_steps=args.sampling_steps, eta=args.eta,
                                   samples=args.samples)
    schedule = config.eval
    if args.batch_size is not None:
        schedule = replace(schedule, batch_size=args.batch_size)
    if args.all_images or args.max_images is not None:
        schedule = replace(schedule, max_test_images=None if args.all_images else args.max_images)
    root = args.data or config.data.root
    data = evaluation_data(config.data, root, args.upsample, predictor.checkpoint)
    levels = _levels(args.levels, root, schedule.levels)
    out = args.out if args.out else predictor.checkpoint.parent / "evaluation"
    outputs = [out / "evaluation.json", out / "evaluation.md"] + [out / f"samples_{level}.png" for level in levels]
    has_std = sampling.samples > 1 or predictor.predicts_std  # a spread of samples, or a predicted std
    outputs += [out / f"calibration_{level}.png" for level in levels] if has_std else []
    check_output_folder(out, [predictor.checkpoint, root])
    check_outputs(outputs, [predictor.checkpoint], args.overwrite)
    for level in levels:  # the sampler runs on whole images; headers only, before anything is cached
        shape = read_pairs(data, "test", level=level, cache=False).image_shape
        if any(side % predictor.size_multiple for side in shape):
            raise UsageError(
                f"{root} {level}: images of {shape} px are not a multiple of {predictor.size_multiple} (this "
                "network's size_multiple); crop them, or super-resolve them with experiments.predict, which pads"
            )
    datasets = {level: read_pairs(data, "test", level=level) for level in levels}
    out.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision(config.train.precision, predictor.device)

    results = {}
    with autocast(predictor.device, precision):  # the std map's calibration: fitted on validation, never test
        models = validation_models(predictor, data, sampling, schedule, not args.no_progress) if has_std else None
    for level, dataset in datasets.items():
        quality = TrustAccumulator()
        with autocast(predictor.device, precision):
            result = evaluate(predictor.model, predictor.diffusion, dataset, sampling, schedule, schedule.max_test_images,
                              progress=not args.no_progress, description=f"test {level}", observe=quality.update)
        bicubic = bicubic_scores(dataset, schedule.max_test_images)
        baseline = bicubic.compute()
        results[level] = {"model": result.metrics, "bicubic": baseline, "quality": quality.metrics(),
                          # image by image, in the same order: the paired per-image gains
                          "per_image": {"model": result.per_image, "bicubic": bicubic.per_image()}}
        if has_std:
            results[level]["calibration"] = calibration_report(quality, models, out / f"calibration_{level}.png")
        figures.plot_sample_grid(result.inputs, result.outputs, result.targets, out / f"samples_{level}.png",
                                 title=f"{predictor.checkpoint.name}, test {level}")
        rows = comparison_rows(result.metrics, baseline, paper_key=config.eval.paper_comparison)
        print(f"\n{level} ({int(result.metrics['images'])} images)\n{format_table(rows)}")
        results[level]["rows"] = rows

    write_json(out / "evaluation.json", {
        "checkpoint": portable_path(predictor.checkpoint), "digest": predictor.digest, "weights": predictor.weights,
        "sampling": {**asdict(sampling), "seed": schedule.seed}, "data": portable_path(data.root), "task": data.task,
        "upsample": args.upsample, "predicted_std": predictor.predicts_std, "calibration": models,
        "levels": {level: {k: v for k, v in r.items() if k != "rows"} for level, r in results.items()}})
    summary = {"checkpoint": predictor.checkpoint, "weights": predictor.weights, "sampler": sampling.sampler,
               "sampling steps": sampling.network_evaluations(config.diffusion.steps), "samples": sampling.samples}
    tables = levels_table({level: r["rows"] for level, r in results.items()})
    write_report(out / "evaluation.md", f"Evaluation of {predictor.checkpoint}", summary, tables,
                 ["Metrics on [-1, 1] images with data range 2.0."])
    append_section(out / "evaluation.md", results, models)
    print(f"\nwrote {out / 'evaluation.json'} and {out / 'evaluation.md'}")


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
