"""Quality against network evaluations: DDIM and DPM-Solver++(2M) on the held-out real-structure cells.

    python -m experiments.bench.solvers --checkpoint l1=studies/cpu/runs/l1-seed0/last.pt \\
        --checkpoint native=pretrained/native/model.pt --out docs/bench/solvers.json

For each checkpoint and level, the first ``--images`` test images of the checkpoint's own data set are
sampled ``--samples`` times with each sampler on each count of ``--evaluations``, every configuration from
the *same* starts x_T (the samplers are deterministic), so the comparison is paired. Scored against the
SIM target: fitted PSNR and SSIM (CARE's protocol, :func:`experiments.evaluation.metrics.affine_fit`) of
one sample and of the mean of all samples, the tutorial protocol's PSNR of one sample, and the
sample-to-sample FRC (:func:`experiments.trust.check.square_frc` of samples 0 and 1, median over
images, in output pixels). Written as JSON with a figure beside it (``.png``); the summary line names,
per checkpoint, the fewest DPM-Solver++ evaluations whose one-sample fitted PSNR and SSIM at every level are
within ``--tolerance-db`` and 0.01 of the reference, today's 10-step DDIM.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ddpm.samplers import initial_noise
from ddpm.settings import UsageError, at_least
from experiments.bench.record import benchmark_main, write_record
from experiments.build import base_of
from experiments.command import CommandParser
from experiments.config.schema import SamplingConfig
from experiments.pairs.dataset import read_pairs
from experiments.trust.check import square_frc
from experiments.evaluation.metrics import affine_fit, batch_metrics, image_metrics
from experiments.evaluation.report import parse_named
from experiments.inference.loading import load_for_inference
from experiments.inference.predictor import Predictor
from experiments.inference.sampling import Sampling
from experiments.inference.tiling import tiled_network
from experiments.integrity.outputs import check_outputs
from experiments.runtime import seed_everything

SAMPLERS = ("ddim", "dpmpp2m")
EVALUATIONS = (1, 2, 3, 4, 5, 10, 20)
LEVELS = ("level_01", "level_09")
REFERENCE = ("ddim", 10)  # today's default: 10-step DDIM
TOLERANCE_DB = 0.2
TOLERANCE_SSIM = 0.01


@dataclass(frozen=True)
class QualityRow:
    """One (checkpoint, level, sampler, evaluations) configuration, scored over ``images`` images."""

    model: str
    level: str
    sampler: str
    evaluations: int
    images: int
    samples: int
    psnr_fit: float  # one sample, fitted protocol, mean over images
    ssim_fit: float
    psnr_fit_mean: float  # the mean of all samples
    ssim_fit_mean: float
    psnr_tutorial: float  # one sample, the tutorial's per-batch protocol
    frc_px: float | None  # median sample-to-sample FRC resolution (output pixels); None: agree to Nyquist


def fitted(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean fitted PSNR and SSIM over the images of ``pred`` [B, 1, H, W]."""
    scores = image_metrics(affine_fit(pred, target), target)
    return {"psnr": float(scores["psnr"].mean()), "ssim": float(scores["ssim"].mean())}


def median_frc(first: torch.Tensor, second: torch.Tensor) -> float | None:
    """The median FRC resolution (px) of image pairs [B, 1, H, W]; pairs that agree to Nyquist are left out."""
    values = [square_frc(a[0].double(), b[0].double(), None).resolution_px for a, b in zip(first, second)]
    values = [value for value in values if value is not None and math.isfinite(value)]
    return statistics.median(values) if values else None


def score_level(name: str, predictor: Predictor, level: str, args: argparse.Namespace) -> list[QualityRow]:
    """Every sampler x evaluation count on the first ``--images`` test images of ``level``."""
    dataset = read_pairs(predictor.config.data, "test", level)
    count = min(args.images, len(dataset))
    wf, gt = dataset.get_batch(range(count))
    wf = wf.to(predictor.device)
    generator = torch.Generator(predictor.device).manual_seed(args.seed)
    x_T = torch.cat([initial_noise(predictor.diffusion, tuple(gt.shape), None, generator) for _ in range(args.samples)])
    # As prediction runs the network: in calls of 16 tiles (the test images are one tile each), on CPU about
    # twice as fast per image as one call on all samples x images.
    network = tiled_network(predictor.model, predictor.layout(gt.shape[-1], overlap=0))
    base = base_of(predictor.model, wf)
    rows = []
    for sampler in SAMPLERS:
        for evaluations in args.evaluations:
            sampling = SamplingConfig(sampler=sampler, sampling_steps=evaluations, samples=args.samples)
            drawn = Sampling(sampling, predictor.diffusion).draw(network, wf, x_T=x_T, base=base).cpu()
            one, mean = fitted(drawn[0], gt), fitted(drawn.mean(0), gt)
            rows.append(QualityRow(
                name, level, sampler, evaluations, count, args.samples, one["psnr"], one["ssim"], mean["psnr"],
                mean["ssim"], float(batch_metrics(drawn[0], gt)["psnr"]),
                median_frc(drawn[0], drawn[1]) if args.samples > 1 else None,
            ))
            row = rows[-1]
            print(f"{name} {level} {sampler:8s} {evaluations:3d} evaluations: fitted PSNR {row.psnr_fit:.3f} dB "
                  f"(mean of {args.samples}: {row.psnr_fit_mean:.3f}), SSIM {row.ssim_fit:.4f}, tutorial PSNR "
                  f"{row.psnr_tutorial:.3f} dB, FRC {row.frc_px if row.frc_px is None else round(row.frc_px, 3)} px",
                  flush=True)
    return rows


def fewest_matching(rows: list[QualityRow], model: str, tolerance_db: float,
                    tolerance_ssim: float = TOLERANCE_SSIM) -> int | None:
    """The fewest DPM-Solver++ evaluations whose one-sample fitted PSNR and SSIM are, at every level, at least
    the reference's minus ``tolerance_db`` and ``tolerance_ssim``; None when no count does or the reference was
    not run."""
    mine = [row for row in rows if row.model == model]
    reference = {row.level: row for row in mine if (row.sampler, row.evaluations) == REFERENCE}
    if not reference:
        return None
    for count in sorted({row.evaluations for row in mine if row.sampler == "dpmpp2m"}):
        candidates = {row.level: row for row in mine if (row.sampler, row.evaluations) == ("dpmpp2m", count)}
        if all(candidates[level].psnr_fit >= best.psnr_fit - tolerance_db
               and candidates[level].ssim_fit >= best.ssim_fit - tolerance_ssim for level, best in reference.items()):
            return count
    return None


def plot(rows: list[QualityRow], path: Path) -> Path:
    """Fitted PSNR, fitted SSIM and FRC against network evaluations: one row of panels per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(row.model for row in rows))
    levels = list(dict.fromkeys(row.level for row in rows))
    figure, axes = plt.subplots(len(models), 3, figsize=(13, 3.4 * len(models)), squeeze=False)
    colours = dict(zip(levels, ("tab:red", "tab:blue", "tab:green", "tab:orange")))
    styles = {"ddim": dict(marker="o", linestyle="-"), "dpmpp2m": dict(marker="s", linestyle="-")}
    for model, panels in zip(models, axes):
        for level in levels:
            for sampler in SAMPLERS:
                chosen = sorted((row for row in rows if (row.model, row.level, row.sampler) == (model, level, sampler)),
                                key=lambda row: row.evaluations)
                x = [row.evaluations for row in chosen]
                label = f"{level}, {'DPM-Solver++(2M)' if sampler == 'dpmpp2m' else 'DDIM'}"
                style = dict(color=colours[level], alpha=1.0 if sampler == "dpmpp2m" else 0.55, **styles[sampler])
                panels[0].plot(x, [row.psnr_fit for row in chosen], label=label, **style)
                panels[0].plot(x, [row.psnr_fit_mean for row in chosen], color=colours[level], linestyle=":",
                               alpha=style["alpha"])
                panels[1].plot(x, [row.ssim_fit for row in chosen], **style)
                panels[2].plot(x, [math.nan if row.frc_px is None else row.frc_px for row in chosen], **style)
        titles = ("PSNR (dB), fitted: one sample (dotted: mean of samples)", "SSIM, fitted, one sample",
                  "sample-to-sample FRC (px), lower: samples agree finer")
        for panel, title in zip(panels, titles):
            panel.set_xscale("log")
            panel.set_xticks(sorted({row.evaluations for row in rows}))
            panel.set_xticklabels([str(n) for n in sorted({row.evaluations for row in rows})])
            panel.set_title(f"{model}: {title}", fontsize=9)
            panel.set_xlabel("network evaluations per sample")
            panel.grid(alpha=0.3)
        panels[0].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.bench.solvers", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="a checkpoint to score, named; repeat for several")
    parser.add_argument("--merge", nargs="+", type=Path, default=[], metavar="JSON",
                        help="instead of sampling: put the rows of earlier runs' JSON files into one JSON and figure")
    parser.add_argument("--levels", type=lambda text: tuple(text.split(",")), default=LEVELS,
                        help="test levels, e.g. level_01,level_09")
    parser.add_argument("--images", type=at_least(1, "--images"), default=16, help="test images per level")
    parser.add_argument("--samples", type=at_least(2, "--samples"), default=8, help="samples per image")
    parser.add_argument("--evaluations", type=lambda text: tuple(int(part) for part in text.split(",")),
                        default=EVALUATIONS, help="network evaluations per sample, e.g. 1,2,3,4,5,10,20")
    parser.add_argument("--tolerance-db", type=float, default=TOLERANCE_DB,
                        help="how far below 10-step DDIM's fitted PSNR the chosen count may be")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write; the figure goes beside it (.png)")
    parser.add_argument("--overwrite", action="store_true")
    return parser


def merged_rows(paths: list[Path]) -> tuple[dict[str, str], list[QualityRow]]:
    """The checkpoints and rows of earlier runs' JSON files, in order; a model named twice is refused."""
    checkpoints, rows = {}, []
    for path in paths:
        try:
            result = json.loads(path.read_text())
            named, more = result["checkpoints"], [QualityRow(**row) for row in result["rows"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UsageError(f"--merge {path}: not a JSON written by experiments.bench.solvers ({error})") from None
        repeated = set(named) & set(checkpoints)
        if repeated:
            raise UsageError(f"--merge {path}: {sorted(repeated)} already come from an earlier file; rename one")
        checkpoints.update(named)
        rows.extend(more)
    return checkpoints, rows


def run_benchmark(args: argparse.Namespace) -> dict:
    if bool(args.checkpoint) == bool(args.merge):
        raise UsageError("give --checkpoint NAME=PATH (to sample) or --merge JSON... (to combine earlier runs)")
    named = parse_named(args.checkpoint, "--checkpoint", "l1=studies/cpu/runs/l1-seed0/last.pt")
    figure_path = args.out.with_suffix(".png")
    check_outputs([args.out, figure_path], [*named.values(), *args.merge], args.overwrite)
    seed_everything(args.seed)
    rows: list[QualityRow] = []
    if args.merge:
        named, rows = merged_rows(args.merge)
    for name, checkpoint in named.items() if not args.merge else ():
        predictor = load_for_inference(checkpoint, args.device)
        for level in args.levels:
            rows.extend(score_level(name, predictor, level, args))
    choice = {name: fewest_matching(rows, name, args.tolerance_db) for name in named}
    for name, count in choice.items():
        print(f"{name}: fewest DPM-Solver++(2M) evaluations within {args.tolerance_db} dB and {TOLERANCE_SSIM} SSIM of "
              f"10-step DDIM's, fitted, at every level: {count}")
    result = {"checkpoints": {name: str(path) for name, path in named.items()}, "reference": list(REFERENCE),
              "tolerance_db": args.tolerance_db, "fewest_matching": choice, "rows": [asdict(row) for row in rows]}
    write_record(args.out, result, args.device)
    print(f"wrote {args.out} and {plot(rows, figure_path)}")
    return result


main = benchmark_main(build_parser, run_benchmark)


if __name__ == "__main__":
    sys.exit(main())
