"""Which sampler's samples make error bars that hold: the posterior check and the std map's calibration, per sampler.

    python -m experiments.bench.uncertainty --checkpoint pretrained/native/model.pt [--candidate ddim-eta1-25 ...]

For each candidate sampler (:data:`CANDIDATES`), ``--samples`` samples of each of the first ``--images``
validation windows fit the two calibration factors of :mod:`experiments.trust.calibration`; then, on as
many test windows of each level: the posterior check (:mod:`experiments.trust.posterior`: dispersion 1 for
draws from the posterior, 0 for copies), the share of pixels inside the 90 % interval raw and calibrated,
its mean width, the calibration curve's worst bin, the rank correlation of the std map with the error,
the high-frequency power of one sample over the target's (:mod:`experiments.trust.spectrum`: 0 dB for a draw
that keeps the target's detail) and the sampler's seconds. The sampler ``--std`` uses is the cheapest that passes the posterior check at
every level (docs/trust.md). Writes JSON and prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from ddpm.settings import UsageError
from experiments.bench.record import benchmark_main, write_record
from experiments.command import CommandParser
from experiments.config.schema import SamplingConfig
from experiments.evaluation.loop import evaluate
from experiments.evaluation.trust_report import TrustAccumulator
from experiments.inference.loading import load_for_inference
from experiments.integrity.outputs import check_outputs
from experiments.pairs.dataset import read_pairs

CANDIDATES: dict[str, SamplingConfig] = {
    "dpmpp2m-4": SamplingConfig(sampler="dpmpp2m", sampling_steps=4),  # predict's single output
    "ddim-eta1-10": SamplingConfig(sampler="ddim", sampling_steps=10, eta=1.0),
    "ddim-eta1-25": SamplingConfig(sampler="ddim", sampling_steps=25, eta=1.0),
    "ddim-eta1-50": SamplingConfig(sampler="ddim", sampling_steps=50, eta=1.0),
    "ancestral": SamplingConfig(sampler="x0"),  # Appendix B on every trained step
}
DEFAULT_LEVELS = ("level_01", "level_05", "level_09")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.bench.uncertainty", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", help="data root (default: the checkpoint's)")
    parser.add_argument("--candidate", action="append", choices=tuple(CANDIDATES),
                        help="a sampler to measure (repeat; default all)")
    parser.add_argument("--levels", default=",".join(DEFAULT_LEVELS), help="comma-separated test levels")
    parser.add_argument("--images", type=int, default=8, help="validation and test windows per level (default 8)")
    parser.add_argument("--samples", type=int, default=8, help="samples per window (default 8)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/uncertainty.json"))
    parser.add_argument("--overwrite", action="store_true")
    return parser


def observed(predictor, data, split: str, level: str | None, sampling: SamplingConfig, images: int,
             calibration_only: bool = True) -> TrustAccumulator:
    """The samples of the first ``images`` windows of a split (and level), kept for the check and the calibration
    (and, unless ``calibration_only``, measured as evaluate measures them: the detail of one sample among them)."""
    seen = TrustAccumulator(calibration_only=calibration_only)
    evaluate(predictor.model, predictor.diffusion, read_pairs(data, split, level=level), sampling,
             predictor.config.eval, images, progress=False, observe=seen.update)
    return seen


def measure(predictor, data, sampling: SamplingConfig, levels: list[str], images: int) -> dict:
    started = time.perf_counter()
    models = observed(predictor, data, "validate", None, sampling, images).fit_models()
    rows = {}
    for level in levels:
        seen = observed(predictor, data, "test", level, sampling, images, calibration_only=False)
        rows[level] = {"posterior": seen.posterior_check(), "rank_correlation": seen.rank_correlation(),
                       "hf_power_sample_db": seen.metrics()["model"]["hf_power_sample_db"],
                       "raw": seen.calibration_row(), **{method: seen.calibration_row(model) for method, model in models.items()}}
    return {"sampler": sampling.sampler, "evaluations": sampling.network_evaluations(predictor.diffusion.steps),
            "eta": sampling.eta, "models": {method: asdict(model) for method, model in models.items()},
            "levels": rows, "seconds": time.perf_counter() - started,
            "passes": all(row["posterior"]["passes"] for row in rows.values())}


def run(args: argparse.Namespace) -> None:
    if args.images < 1 or args.samples < 2:
        raise UsageError("--images must be at least 1 and --samples at least 2 (a spread needs two samples)")
    check_outputs([args.out], inputs=[args.checkpoint], overwrite=args.overwrite)
    predictor = load_for_inference(args.checkpoint, device="cpu")
    data = replace(predictor.config.data, root=args.data or predictor.config.data.root)
    levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    results = {}
    for name in args.candidate or tuple(CANDIDATES):
        sampling = replace(CANDIDATES[name], samples=args.samples).resolved(predictor.diffusion.steps)
        result = results[name] = measure(predictor, data, sampling, levels, args.images)
        for level, row in result["levels"].items():
            posterior = row["posterior"]
            print(f"{name:>14} {level}: dispersion {posterior['dispersion']:.2f} ± {posterior['dispersion_ci95'] or 0:.2f} "
                  f"({'passes' if posterior['passes'] else 'fails'}), coverage raw {row['raw']['coverage90']:.3f} "
                  f"curve {row['curve']['coverage90']:.3f} interval {row['interval']['coverage90']:.3f}, worst gap "
                  f"curve {row['curve']['worst_gap']:.2f}, rank corr {row['rank_correlation']:.2f}, one sample's HF power "
                  f"{row['hf_power_sample_db']:+.2f} dB", flush=True)
        curve, interval = result["models"]["curve"], result["models"]["interval"]
        print(f"{name:>14}: {result['evaluations']} evaluations per sample, {result['seconds']:.0f} s; error model curve "
              f"{curve['scale']:.2f} / {curve['floor']:.4f}, interval {interval['scale']:.2f} / {interval['floor']:.4f}", flush=True)
    write_record(args.out, {"checkpoint": args.checkpoint, "data": data.root, "images": args.images,
                            "samples": args.samples, "candidates": results})
    print(f"wrote {args.out}")


main = benchmark_main(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
