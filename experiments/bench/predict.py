"""Prediction at camera scale: ``experiments.predict`` on a 2048 x 2048 widefield frame, timed end to end.

    python -m experiments.bench.predict                                   # demo network, random weights
    python -m experiments.bench.predict --checkpoint runs/demo-real/best.pt --verify
    python -m experiments.bench.predict --checkpoint runs/demo-real/best.pt --rounds 0 --quality

The input is a real-structure widefield frame (a mosaic of windows of the held-out test cells 003 and
052, degraded at ``--level`` by :mod:`experiments.microscope.widefield`), written as a float32 TIF. Without
``--checkpoint`` a demo-preset network with seeded random weights is saved as the checkpoint: the time
does not depend on the weights. Each round times, in this order and alternating with the next round's:

* **bare network**: the network alone on batches of ``--batch-size`` tiles of the prediction's tile size,
  as pixels per second (``torch.inference_mode``, channels_last as prediction runs it);
* **predict**: the whole command (``experiments.predict.main``: read, scale, sample with DDIM
  ``--sampling-steps``, write the OME-TIFF), as wall seconds and output pixels per second.

From these it prints the medians with their min-max over ``--rounds``, and two factors: the layout's
**redundancy** (pixels the network processes per step / image pixels: overlapping tiles are computed
twice) and the **overhead** (predict's wall time / the bare network's time for the image's pixels at
every step), whose quotient is what the tiling code itself adds (stacking, blending, the sampler's
arithmetic, file I/O). ``--verify`` also computes the same prediction tile by tile, unbatched
(``batch_size=1``), with the same noise field and settings, and prints the largest difference.

``--error-bars CHECKPOINT`` times instead an output with its error bars, two ways on the frame: the trust
workflow (``--samples 8 --std --check``) of ``--checkpoint`` against ``--std --check`` of a probabilistic
regression (one evaluation).

``--quality`` scores tile layouts against the SIM target on a ``--quality-size`` real-structure frame
(PSNR and SSIM for each of ``--quality-tiles`` x ``--quality-overlaps``, same seed): what a layout with
less redundancy costs. ``--rounds 0 --quality`` scores without timing.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile
import torch

from ddpm.settings import Range, at_least, range_parser
from experiments import predict as predict_command
from experiments.config.presets import DEMO
from experiments.config.schema import RunConfig, SamplingConfig
from experiments.data.normalization import to_model_range
from experiments.microscope.widefield import LEVELS
from experiments.evaluation.metrics import affine_fit, batch_metrics, image_metrics
from experiments.microscope.biosr_sim import CELL_SPLIT, RealStructureConfig, load_cells, prepare_cell, render_pairs
from experiments.inference.loading import load_for_inference
from experiments.inference.predictor import LEGACY_IMAGE_SIDE, FrameRequest, Predictor
from experiments.inference.sampling import PREDICTION_SAMPLING
from experiments.inference.tiling import TileLayout
from experiments.bench.record import benchmark_main, commit_of, write_record
from experiments.bench.machine import load_average, read_machine
from experiments.bench.stats import ratios, round_order, spread, verdict
from experiments.build import build_model
from experiments.checkpoint import Checkpoint, write_checkpoint
from experiments.command import CommandParser
from experiments.integrity.json_files import portable_path
from experiments.integrity.outputs import check_outputs
from experiments.runtime import seed_everything

# Windows of this many output pixels: the largest even size a 1004 px BioSR cell holds (2 x 496 <= 1004).
MOSAIC_WINDOW = 496


def real_structure_pair(side: int, level: int = 9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A ``side x side`` widefield input and its SIM target, float32 in [0, 1]: mosaics of real-structure windows.

    The windows come from the held-out test cells (``CELL_SPLIT["test"]``), degraded at ``level`` as the
    test set is (:func:`experiments.microscope.biosr_sim.render_pairs`), each scaled to [0, 1] on its own.
    """
    config = RealStructureConfig(size=MOSAIC_WINDOW)
    cells = [prepare_cell(name, sim, config) for name, sim in load_cells(CELL_SPLIT["test"]).items()]
    per_side = math.ceil(side / MOSAIC_WINDOW)
    targets, inputs, _, _ = render_pairs("test", range(per_side**2), seed, cells, config, levels=[level])

    def mosaic(windows: np.ndarray) -> np.ndarray:
        rows = windows.reshape(per_side, per_side, MOSAIC_WINDOW, MOSAIC_WINDOW).transpose(0, 2, 1, 3)
        return np.ascontiguousarray(rows.reshape(per_side * MOSAIC_WINDOW, -1)[:side, :side], dtype=np.float32)

    return mosaic(inputs[0]), mosaic(targets)


def random_weight_checkpoint(path: Path, config: RunConfig = DEMO, seed: int = 0) -> Path:
    """Save a network of ``config`` with seeded random weights as a checkpoint prediction can load."""
    seed_everything(seed)
    model = build_model(config, torch.device("cpu"))
    # Trained on BioSR-sized images, as the demo is: prediction's default tile.
    side = LEGACY_IMAGE_SIDE
    return write_checkpoint(Checkpoint(config.to_dict(), {"model": model.state_dict()}, [side, side]), path)


def bare_network_pixels_per_s(predictor: Predictor, tile: int, batch_size: int, calls: int) -> float:
    """Pixels per second of the network alone on ``batch_size`` random tiles of ``tile x tile`` per call."""
    generator = torch.Generator().manual_seed(0)
    channels = predictor.config.network.in_channels
    tiles = torch.randn(batch_size, channels, tile, tile, generator=generator).to(predictor.device)
    # One encoding row for every tile, as tiled prediction passes it.
    encoding = torch.randn(1, predictor.diffusion.time_encoding_dim, generator=generator).to(predictor.device)
    with torch.inference_mode():
        predictor.model(tiles, encoding)  # untimed: allocations, kernel selection
        start = time.perf_counter()
        for _ in range(calls):
            predictor.model(tiles, encoding)
        if predictor.device.type == "cuda":
            torch.cuda.synchronize(predictor.device)
        return calls * batch_size * tile * tile / (time.perf_counter() - start)


def predict_seconds(checkpoint: Path, image: Path, out_dir: Path, args: argparse.Namespace) -> float:
    """Wall seconds of the prediction command on ``image`` (outputs written to a fresh ``out_dir``)."""
    argv = [
        "--checkpoint", str(checkpoint), "--input", str(image), "--output", str(out_dir), "--device", args.device,
        "--sampler", "ddim", "--sampling-steps", str(args.sampling_steps), "--batch-size", str(args.batch_size),
        "--overlap", str(args.overlap), "--no-preview", "--quiet",
    ]
    start = time.perf_counter()
    if predict_command.main(argv) != 0:
        raise RuntimeError(f"experiments.predict {' '.join(argv)} failed (its message is above)")
    return time.perf_counter() - start


def ddim_sampling(predictor: Predictor, args: argparse.Namespace) -> SamplingConfig:
    """The checkpoint's sampling settings with deterministic DDIM on ``--sampling-steps`` steps, one sample."""
    return replace(predictor.config.sampling, sampler="ddim", sampling_steps=args.sampling_steps, samples=1, eta=0.0)


def model_image(unit: np.ndarray) -> torch.Tensor:
    """A [0, 1] frame [H, W] as the model's input [1, 1, H, W] in [-1, 1]."""
    return torch.from_numpy(to_model_range(unit))[None, None]


def tiled_difference(predictor: Predictor, frame: np.ndarray, args: argparse.Namespace, tile: int) -> float:
    """Largest |batched - unbatched| of the same prediction (same seed, noise field and settings), model range."""
    outputs = [
        predictor.sample(model_image(frame), FrameRequest(ddim_sampling(predictor, args), predictor.layout(tile, args.overlap, batch),
                                                          progress=True, desc=f"batch {batch}"),
                         torch.Generator(predictor.device).manual_seed(0)).mean
        for batch in (args.batch_size, 1)
    ]
    return float((outputs[0] - outputs[1]).abs().max())


def summary(values: list[float]) -> str:
    """``median (min-max)`` of one figure over the rounds."""
    figure = spread(values)
    return f"{figure.median:.4g} (min-max {figure.low:.4g}-{figure.high:.4g})"


def layout_quality(predictor: Predictor, args: argparse.Namespace) -> list[dict]:
    """PSNR and SSIM against the SIM target of one ``--quality-size`` real-structure frame, predicted with
    each tile side of ``--quality-tiles`` and overlap of ``--quality-overlaps`` (DDIM ``--sampling-steps``, the same
    seed): what a faster layout costs in quality."""
    frame, target = real_structure_pair(args.quality_size, args.level, seed=11)
    sampling, target_model = ddim_sampling(predictor, args), model_image(target)
    rows = []
    for tile in args.quality_tiles:
        for overlap in args.quality_overlaps:
            if not 0 <= overlap < tile:
                continue
            layout = predictor.layout(tile, overlap, args.batch_size)
            output = predictor.sample(model_image(frame), FrameRequest(sampling, layout),
                                      torch.Generator(predictor.device).manual_seed(0)).mean.clamp(-1, 1)
            count = layout.count(args.quality_size, args.quality_size)
            scores = batch_metrics(output, target_model)
            rows.append({"tile": tile, "overlap": overlap, "redundancy": count * tile * tile / args.quality_size**2,
                         "psnr": float(scores["psnr"]), "ssim": float(scores["ssim"])})
            print(f"tile {tile:4d}, overlap {overlap:3d}: redundancy {rows[-1]['redundancy']:.2f}, "
                  f"PSNR {rows[-1]['psnr']:.3f} dB, SSIM {rows[-1]['ssim']:.4f}", flush=True)
    return rows


# Today's default sampler and the trust workflow of the README (an output and the means to judge it).
BASELINE_SAMPLER = ("ddim", 10)
TRUST_FLAGS = ("--samples", "8", "--std", "--check")


def output_scores(path: Path, target: np.ndarray) -> dict[str, float]:
    """PSNR of a written prediction ([0, 1] TIF) against the target, fitted (CARE) and as the tutorial scores."""
    output, reference = model_image(tifffile.imread(path).astype(np.float32)), model_image(target)
    return {"psnr_fit": float(image_metrics(affine_fit(output, reference), reference)["psnr"][0]),
            "psnr_tutorial": float(batch_metrics(output, reference)["psnr"])}


def command_seconds(checkout: Path, checkpoint: Path, image: Path, out_dir: Path, args: argparse.Namespace,
                    sampler: tuple[str, int] | None, flags: Sequence[str]) -> float:
    """Wall seconds of ``python -m experiments.predict`` run in a fresh process from the code of ``checkout``
    (startup and imports included, alike for every variant); ``sampler`` None: the checkpoint's own."""
    chosen = [] if sampler is None else ["--sampler", sampler[0], "--sampling-steps", str(sampler[1])]
    argv = [sys.executable, "-m", "experiments.predict", "--checkpoint", str(checkpoint.resolve()), "--input",
            str(image), "--output", str(out_dir), "--device", args.device, *chosen, "--batch-size",
            str(args.batch_size), "--overlap", str(args.overlap), "--no-preview", "--quiet", *flags]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)}, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"experiments.predict in {checkout} failed: {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - start


def compare_samplers(checkpoint: Path, image: Path, target: np.ndarray, scratch: Path, args: argparse.Namespace) -> dict:
    """Today's default (10-step DDIM) against ``--fast-sampler`` on ``--fast-steps``, side by side in one run:
    one sample over ``--rounds`` interleaved rounds, the trust workflow (:data:`TRUST_FLAGS`) over
    ``--trust-rounds``; the first round's one-sample outputs scored against the target. Each run is a fresh
    process; the baseline's runs the code of ``--baseline-checkout`` (e.g. a worktree of the release before
    the faster sampler), so "today's" workflow is measured as it was, not as this code would run it."""
    fast = (args.fast_sampler, args.fast_steps)
    variants = {"baseline": BASELINE_SAMPLER, "fast": fast}
    here = Path(__file__).resolve().parents[2]
    checkouts = {"baseline": (args.baseline_checkout or here).resolve(), "fast": here}
    figures: dict = {"baseline": list(BASELINE_SAMPLER), "fast": list(fast),
                     "baseline_commit": commit_of(checkouts["baseline"])}
    for workflow, flags, rounds in (("one_sample", (), args.rounds), ("trust", TRUST_FLAGS, args.trust_rounds)):
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for round_index in range(rounds):
            for name in round_order(tuple(variants), round_index):
                out_dir = scratch / f"{workflow}-{name}-{round_index}"
                seconds[name].append(command_seconds(checkouts[name], checkpoint, image, out_dir, args, variants[name],
                                                     flags))
                if round_index == 0 and workflow == "one_sample":
                    figures[f"{name}_scores"] = output_scores(out_dir / f"{image.stem}_sr.tif", target)
            print(f"{workflow} round {round_index + 1}: " + ", ".join(
                f"{'%s %d' % variants[name]} {seconds[name][-1]:.1f} s" for name in variants), flush=True)
        speedups = ratios(seconds["baseline"], seconds["fast"])
        figures[workflow] = {"seconds": seconds, "speedup": speedups, "verdict": verdict(speedups)}
        print(f"{workflow}: {'%s %d' % BASELINE_SAMPLER} {summary(seconds['baseline'])} s, {'%s %d' % fast} "
              f"{summary(seconds['fast'])} s; speed-up {summary(speedups)} ({verdict(speedups)})", flush=True)
    for protocol in ("psnr_fit", "psnr_tutorial"):
        gap = figures["fast_scores"][protocol] - figures["baseline_scores"][protocol]
        print(f"{protocol}: {'%s %d' % BASELINE_SAMPLER} {figures['baseline_scores'][protocol]:.3f} dB, {'%s %d' % fast} "
              f"{figures['fast_scores'][protocol]:.3f} dB ({gap:+.3f} dB)")
    return figures


def compare_error_bars(checkpoint: Path, image: Path, scratch: Path, args: argparse.Namespace) -> dict:
    """An output with its error bars on the frame, two ways, side by side over ``--trust-rounds`` interleaved
    rounds, each a fresh process: today's trust workflow (:data:`TRUST_FLAGS`: 8 samples of prediction's
    sampler and their std) with ``checkpoint``, and ``--std --check`` with the probabilistic regression
    ``--error-bars`` (one evaluation: the image and its predicted std)."""
    here = Path(__file__).resolve().parents[2]
    variants = {"samples": (checkpoint, (args.fast_sampler, args.fast_steps), TRUST_FLAGS),
                "predicted": (args.error_bars, None, ("--std", "--check"))}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(args.trust_rounds):
        for name in round_order(tuple(variants), round_index):
            model, sampler, flags = variants[name]
            seconds[name].append(command_seconds(here, model, image, scratch / f"bars-{name}-{round_index}", args,
                                                 sampler, flags))
        print(f"error bars round {round_index + 1}: " + ", ".join(f"{name} {seconds[name][-1]:.1f} s" for name in variants),
              flush=True)
    speedups = ratios(seconds["samples"], seconds["predicted"])
    print(f"8 samples --std --check {summary(seconds['samples'])} s; probabilistic --std --check "
          f"{summary(seconds['predicted'])} s; speed-up {summary(speedups)} ({verdict(speedups)})", flush=True)
    return {"samples_checkpoint": portable_path(checkpoint), "predicted_checkpoint": portable_path(args.error_bars),
            "sampler": [args.fast_sampler, args.fast_steps], "seconds": seconds, "speedup": speedups,
            "verdict": verdict(speedups)}


def pooled_against_sequential(predictor: Predictor, args: argparse.Namespace) -> dict:
    """Seconds of ``--pool-samples`` samples of a ``--pool-size`` real-structure frame drawn as one pooled chain
    (``Predictor.sample``) against one chain after another, interleaved over ``--rounds``; and the largest
    difference of their means (the same starts: the generator gives sample s its s-th draw either way)."""
    frame = model_image(real_structure_pair(args.pool_size, args.level, seed=5)[0])
    pooled_config = replace(ddim_sampling(predictor, args), sampler=args.fast_sampler, sampling_steps=args.fast_steps,
                            samples=args.pool_samples)
    single = replace(pooled_config, samples=1)
    layout = predictor.layout(None, args.overlap, args.batch_size)
    seconds: dict[str, list[float]] = {"pooled": [], "sequential": []}
    means = {}
    for round_index in range(args.rounds):
        for name in round_order(("pooled", "sequential"), round_index):
            generator = torch.Generator(predictor.device).manual_seed(0)
            start = time.perf_counter()
            if name == "pooled":
                means[name] = predictor.sample(frame, FrameRequest(pooled_config, layout), generator).mean
            else:
                means[name] = torch.stack([predictor.sample(frame, FrameRequest(single, layout), generator).mean
                                           for _ in range(args.pool_samples)]).mean(0)
            seconds[name].append(time.perf_counter() - start)
    speedups = ratios(seconds["sequential"], seconds["pooled"])
    difference = float((means["pooled"] - means["sequential"]).abs().max())
    print(f"{args.pool_samples} samples of {args.pool_size} x {args.pool_size} ({layout.count(args.pool_size, args.pool_size)} "
          f"tiles each): pooled {summary(seconds['pooled'])} s, sequential {summary(seconds['sequential'])} s; "
          f"speed-up {summary(speedups)} ({verdict(speedups)}); max |mean difference| {difference:.2g}")
    return {"size": args.pool_size, "samples": args.pool_samples, "seconds": seconds, "speedup": speedups,
            "verdict": verdict(speedups), "max_abs_mean_difference": difference}


def _integers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.bench.predict", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint (default: demo network, random weights)")
    parser.add_argument("--size", type=at_least(16, "--size"), default=2048, help="side of the square input frame in pixels")
    parser.add_argument("--level", type=range_parser(int, Range(1, LEVELS), "--level"), default=9,
                        help="BioSR noise level of the input (1..9)")
    parser.add_argument("--sampling-steps", type=at_least(1, "--sampling-steps"), default=10, help="DDIM steps (network evaluations)")
    parser.add_argument("--overlap", type=at_least(0, "--overlap"), default=32, help="as experiments.predict --overlap")
    parser.add_argument("--batch-size", type=at_least(1, "--batch-size"), default=16, help="tiles per network call")
    parser.add_argument("--rounds", type=at_least(0, "--rounds"), default=5,
                        help="interleaved rounds of (bare network, predict); 0: no timing (e.g. with --quality)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--verify", action="store_true", help="also compare with the unbatched, tile-by-tile run")
    parser.add_argument("--quality", action="store_true",
                        help="also score tile layouts against the target (--quality-size, -tiles, -overlaps)")
    parser.add_argument("--quality-size", type=at_least(16, "--quality-size"), default=1000, help="side of the frame scored by --quality")
    parser.add_argument("--quality-tiles", type=_integers, default=(128,), help="tile sides scored, e.g. 128,256")
    parser.add_argument("--quality-overlaps", type=_integers, default=(0, 16, 32, 64), help="overlaps scored")
    parser.add_argument("--compare", action="store_true",
                        help="instead of timing one sampler: 10-step DDIM against --fast-sampler side by side, one sample "
                             "(--rounds) and the trust workflow --samples 8 --std --check (--trust-rounds), then pooled "
                             "against sequential sampling (--pool-size, --pool-samples)")
    parser.add_argument("--error-bars", type=Path, metavar="CHECKPOINT",
                        help="instead of timing one sampler: the trust workflow --samples 8 --std --check of --checkpoint "
                             "against --std --check of this probabilistic regression, side by side (--trust-rounds)")
    parser.add_argument("--fast-sampler", default=PREDICTION_SAMPLING.sampler,
                        help="the sampler --compare times against 10-step DDIM (default: prediction's)")
    parser.add_argument("--fast-steps", type=at_least(1, "--fast-steps"), default=PREDICTION_SAMPLING.sampling_steps,
                        help="its network evaluations (default: prediction's)")
    parser.add_argument("--baseline-checkout", type=Path,
                        help="--compare runs the baseline with the code of this checkout (default: this one)")
    parser.add_argument("--trust-rounds", type=at_least(1, "--trust-rounds"), default=2,
                        help="rounds of the trust workflow in --compare")
    parser.add_argument("--pool-size", type=at_least(16, "--pool-size"), default=256,
                        help="frame side of the pooled-against-sequential timing")
    parser.add_argument("--pool-samples", type=at_least(2, "--pool-samples"), default=8, help="samples pooled")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser


def time_prediction(predictor: Predictor, checkpoint: Path, image: Path, scratch: Path,
                    args: argparse.Namespace) -> dict:
    """``--rounds`` interleaved rounds of (bare network, predict command); prints and returns the figures."""
    tile = predictor.tile
    tiles = TileLayout(tile, args.overlap).count(args.size, args.size)
    redundancy = tiles * tile * tile / args.size**2
    print(f"{checkpoint}; {args.size} x {args.size} px, DDIM {args.sampling_steps} steps, tile {tile}, "
          f"overlap {args.overlap}: {tiles} tiles per step in batches of {args.batch_size}", flush=True)
    bare, wall = [], []
    for round_index in range(args.rounds):
        # Alternate the order so that a drift in the machine's load hits both measurements alike.
        for what in round_order(("bare", "predict"), round_index):
            if what == "bare":
                bare.append(bare_network_pixels_per_s(predictor, tile, args.batch_size, calls=max(tiles // 8, 4)))
            else:
                wall.append(predict_seconds(checkpoint, image, scratch / f"out{round_index}", args))
        print(f"round {round_index + 1}: bare network {bare[-1] / 1e6:.3f} Mpx/s, predict {wall[-1]:.1f} s",
              flush=True)
    print(f"load average (1 min) after: {load_average()}")
    overhead = [w * rate / (args.sampling_steps * args.size**2) for w, rate in zip(wall, bare)]
    figures = {
        "size": args.size, "sampling_steps": args.sampling_steps, "tile": tile, "overlap": args.overlap,
        "batch_size": args.batch_size, "tiles_per_step": tiles, "redundancy": redundancy,
        "rounds": args.rounds, "predict_seconds": wall, "bare_network_pixels_per_s": bare,
        "output_pixels_per_s": [args.size**2 / w for w in wall], "overhead": overhead,
    }
    print(f"predict {args.size} x {args.size}: {summary(wall)} s; {summary(figures['output_pixels_per_s'])} "
          f"output px/s")
    print(f"bare network: {summary([rate / 1e6 for rate in bare])} Mpx/s")
    print(f"overhead (predict / bare network on the image's pixels): {summary(overhead)} = layout redundancy "
          f"{redundancy:.3f} x tiling code and I/O {summary([o / redundancy for o in overhead])}")
    return figures


def run_benchmark(args: argparse.Namespace) -> dict:
    """Measure, print and (``--out``) write the figures; returns them."""
    if args.out:
        check_outputs([args.out], [args.checkpoint] if args.checkpoint else [], args.overwrite)
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as scratch:
        scratch = Path(scratch)
        checkpoint = args.checkpoint or random_weight_checkpoint(scratch / "random-demo.pt")
        predictor = load_for_inference(checkpoint, args.device)
        print(read_machine(torch.device(args.device)).describe())
        print(f"load average (1 min) before: {load_average()}")
        if args.rounds or args.verify or args.error_bars:
            frame, target = real_structure_pair(args.size, args.level)
            image = scratch / f"widefield_{args.size}.tif"
            tifffile.imwrite(image, frame)
        if args.error_bars:
            figures["error_bars"] = compare_error_bars(checkpoint, image, scratch, args)
        elif args.compare:
            figures["samplers"] = compare_samplers(checkpoint, image, target, scratch, args)
            figures["pooling"] = pooled_against_sequential(predictor, args)
        elif args.rounds:
            figures.update(time_prediction(predictor, checkpoint, image, scratch, args))
        if args.verify:
            figures["max_abs_difference_unbatched"] = tiled_difference(predictor, frame, args, predictor.tile)
            print(f"batched vs tile-by-tile unbatched, same noise: max |difference| "
                  f"{figures['max_abs_difference_unbatched']:.3g} (model range [-1, 1])")
        if args.quality:
            figures["layout_quality"] = layout_quality(predictor, args)
    if args.out:
        write_record(args.out, figures, args.device)
    return figures


main = benchmark_main(build_parser, run_benchmark)


if __name__ == "__main__":
    sys.exit(main())
