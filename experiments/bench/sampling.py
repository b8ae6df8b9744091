"""Sampling speed and quality: full-length ancestral sampling against DDIM on a few steps.

    python -m experiments.bench.sampling --checkpoint runs/demo-20260101-120000   # speed + quality
    python -m experiments.bench.sampling --checkpoint CKPT --images 0             # speed only
    python -m experiments.bench.sampling --network tutorial --out bench_tutorial.json

Speed: seconds per image of a batch (``--batch-size``) for the ancestral chain on all T trained steps
(Eq. 11) and for DDIM on 10, 25, 50 and 100 steps (capped at T), plus the training throughput of the
same network (forward + backward + AdamW step at the training batch size). Every step of a chain
costs one network evaluation, so a chain longer than ``--timed-steps`` is timed on its first steps
and extrapolated linearly; the output says which rows were.

Quality (checkpoint only): PSNR and SSIM of the first ``--images`` test images of one level for the
bicubic input, the full-length ancestral chain (sampler "simple") and deterministic DDIM (eta = 0)
at each step count (``--eta`` for stochastic DDIM), all on the same images with the same seeds (see
:func:`experiments.evaluation.loop.evaluate`). The issue's target: DDIM with at most 50 steps within
0.3 dB PSNR of full-length ancestral sampling.

``--network tutorial`` times the tutorial's full network (random weights) at 128 x 128 with
T = 2,000 instead: speed only. Tables are printed and written as JSON (default: ``bench_sampling.json``
in the checkpoint's run folder).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ddpm import DDIMSampler, Diffusion, Sampler, SimpleSampler, run_chain
from ddpm.samplers import initial_noise
from ddpm.settings import SEEDS, UsageError, at_least, field_range, range_parser
from experiments.bench.unet import images_per_s, synchronize
from experiments.config.presets import TUTORIAL_MSE
from experiments.config.schema import RunConfig, SamplingConfig
from experiments.pairs.dataset import PairedImageDataset, read_pairs
from experiments.evaluation.loop import bicubic_baseline, evaluate
from experiments.inference.loading import load_for_inference
from experiments.runtime import DEVICES, pick_device, seed_everything
from experiments.build import build_diffusion, build_model
from experiments.bench.record import benchmark_main, write_record
from experiments.command import CommandParser
from experiments.integrity.outputs import check_outputs

Network = Literal["checkpoint", "tutorial"]
NETWORKS: tuple[Network, ...] = ("checkpoint", "tutorial")
DDIM_STEPS = (10, 25, 50, 100)
# The target: DDIM with at most this many steps ...
TARGET_DDIM_STEPS = 50
# ... within this many dB PSNR of the full-length ancestral chain.
TARGET_GAP_DB = 0.3
# The tutorial network is measured at the tutorial's image size.
TUTORIAL_IMAGE_SIZE = 128
DEMO_RUNS = "runs/demo-*"
OUTPUT_NAME = "bench_sampling.json"


# ------------------------------------------------------------------ speed
@dataclass(frozen=True)
class ChainTiming:
    """Seconds per image of one sampling chain; ``extrapolated`` when only ``timed_steps`` of its ``steps`` ran."""

    sampler: str
    steps: int
    timed_steps: int
    extrapolated: bool
    seconds_per_batch: float
    seconds_per_image: float


def ddim_step_counts(steps_total: int, wanted: tuple[int, ...] = DDIM_STEPS) -> list[int]:
    """The DDIM step counts to measure: ``wanted`` capped at T, without repeats, ascending."""
    return sorted({min(n, steps_total) for n in wanted})


def time_chain(
    diffusion: Diffusion,
    model: nn.Module,
    condition: torch.Tensor,
    sampler: Sampler,
    timed_steps: int,
    seed: int = 0,
) -> ChainTiming:
    """Time one chain of ``sampler`` (one network evaluation per step) on ``condition`` [B, 1, H, W].

    With ``0 < timed_steps < steps`` only the chain's first ``timed_steps`` steps run and the time is
    scaled by ``steps / timed_steps``: every step is one network evaluation plus a few elementwise
    operations, so the cost is linear in the number of steps.
    """
    chain = sampler.chain(diffusion.steps)
    steps = len(chain)
    run = steps if timed_steps <= 0 else min(steps, timed_steps)
    generator = torch.Generator(diffusion.device).manual_seed(seed)
    synchronize(diffusion.device)
    start = time.perf_counter()
    prefix = chain[:run]
    x_T = initial_noise(diffusion, None, condition, generator)
    with torch.inference_mode():
        step = sampler.stepper(diffusion, prefix)
        run_chain(diffusion, model, x_T, prefix, step, condition, generator, progress=False)
    synchronize(diffusion.device)
    per_batch = (time.perf_counter() - start) * steps / run
    batch = condition.shape[0]
    return ChainTiming(sampler.name, steps, run, run < steps, per_batch, per_batch / batch)


def training_images_per_s(
    model: nn.Module,
    diffusion: Diffusion,
    batch_size: int,
    image_shape: tuple[int, int],
    loss: str,
    steps: int = 3,
    warmup: int = 1,
) -> float:
    """Images per second of training steps (Eq. 12-13 loss, backward, AdamW step) on a copy of ``model``.

    Seeded random images in [-1, 1]: speed only. The copy keeps ``model``'s weights untouched.
    """
    trainee = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(trainee.parameters(), lr=1e-4)
    generator = torch.Generator(diffusion.device).manual_seed(0)
    shape = (batch_size, 1, *image_shape)
    x0 = torch.rand(shape, generator=generator, device=diffusion.device) * 2 - 1
    condition = torch.rand(shape, generator=generator, device=diffusion.device) * 2 - 1

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        diffusion.training_loss(trainee, x0, condition, loss=loss, generator=generator).backward()
        optimizer.step()

    return images_per_s(train_step, batch_size, warmup, steps, diffusion.device)


def measure_speed(
    model: nn.Module,
    diffusion: Diffusion,
    config: RunConfig,
    image_shape: tuple[int, int],
    batch_size: int,
    timed_steps: int,
    train_image_shape: tuple[int, int],
    train_steps: int,
) -> dict:
    """Sampling seconds per image of every chain and the training throughput, printed as they finish."""
    generator = torch.Generator(diffusion.device).manual_seed(0)
    condition = torch.rand((batch_size, 1, *image_shape), generator=generator, device=diffusion.device) * 2 - 1
    # One short untimed chain first: allocations, kernel selection, lazy initialisation.
    time_chain(diffusion, model, condition, DDIMSampler(sampling_steps=2), 0)
    rows = []
    plan = [SimpleSampler()] + [DDIMSampler(sampling_steps=n) for n in ddim_step_counts(diffusion.steps)]
    for sampler in plan:
        rows.append(time_chain(diffusion, model, condition, sampler, timed_steps))
        print(f"  {format_timing(rows[-1])}", flush=True)
    train_batch = config.train.batch_size
    train = training_images_per_s(model, diffusion, train_batch, train_image_shape, config.train.loss, train_steps)
    print(f"  training: {train:.2f} images/s (batch {train_batch}, {train_image_shape[0]}x{train_image_shape[1]})",
          flush=True)
    return {
        "device": str(diffusion.device),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "image_size": list(image_shape),
        "steps_total": diffusion.steps,
        "chains": [asdict(row) for row in rows],
        "train": {"batch_size": train_batch, "image_size": list(train_image_shape), "images_per_s": train,
                  "timed_steps": train_steps},
    }


def format_timing(row: ChainTiming) -> str:
    note = f"extrapolated from {row.timed_steps} timed steps" if row.extrapolated else "timed in full"
    return f"{row.sampler:9s} {row.steps:5d} steps: {row.seconds_per_image:9.4f} s/image ({note})"


def speed_table(speed: dict) -> str:
    lines = [
        "| sampler | steps | s / image | s / batch | timed steps |",
        "|---|---:|---:|---:|---|",
    ]
    for row in speed["chains"]:
        timed = f"{row['timed_steps']} (extrapolated)" if row["extrapolated"] else "all"
        lines.append(f"| {row['sampler']} | {row['steps']} | {row['seconds_per_image']:.4f} | "
                     f"{row['seconds_per_batch']:.3f} | {timed} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ quality
def quality_configs(base: SamplingConfig, steps_total: int, eta: float = 0.0) -> dict[str, SamplingConfig]:
    """Row name (sampler name and sampling steps) -> sampling settings: Eq. 11 ("simple") on all T steps, then
    DDIM (``eta``) at each step count, one sample each."""
    common = replace(base, samples=1, eta=eta)
    rows = {f"simple {steps_total}": replace(common, sampler="simple", variance=None, sampling_steps=None)}
    for steps in ddim_step_counts(steps_total):
        rows[f"ddim {steps}"] = replace(common, sampler="ddim", sampling_steps=steps)
    return rows


def measure_quality(
    model: nn.Module, diffusion: Diffusion, config: RunConfig, dataset: PairedImageDataset,
    images: int, batch_size: int, seed: int, eta: float = 0.0,
) -> dict:
    """Metrics of the bicubic input and of each sampler on the first ``images`` test images.

    Every row samples the same images with the same per-batch seeds. Returns ``{"images", "rows":
    {name: {"steps", "network_evaluations", "seconds", metric: value}}}`` with every metric of
    :class:`experiments.evaluation.metrics.MetricAccumulator`.
    """
    rows = {"bicubic": {"steps": 0, "network_evaluations": 0, "seconds": 0.0,
                        **bicubic_baseline(dataset, images)}}
    schedule = replace(config.eval, batch_size=batch_size, seed=seed)
    for name, sampling in quality_configs(config.sampling, diffusion.steps, eta).items():
        seed_everything(seed)
        start = time.perf_counter()
        result = evaluate(model, diffusion, dataset, sampling, schedule, max_images=images, progress=False,
                          description=name)
        steps = sampling.network_evaluations(diffusion.steps)
        rows[name] = {"steps": steps, "network_evaluations": steps * math.ceil(images / batch_size),
                      "seconds": time.perf_counter() - start, **result.metrics}
        print(f"  {name}: PSNR {rows[name]['psnr']:.3f} dB, SSIM {rows[name]['ssim']:.4f} "
              f"({rows[name]['seconds']:.0f} s)", flush=True)
    return {"images": images, "level": dataset.level, "seed": seed, "ddim_eta": eta, "rows": rows,
            "comparison": compare_to_simple(rows, diffusion.steps)}


def compare_to_simple(rows: dict[str, dict], steps_total: int) -> dict:
    """The issue's check: PSNR of DDIM (at 50 steps, capped at T) minus the full-length Eq. 11 chain
    (sampler "simple"), in dB.

    ``target_met`` holds when some DDIM row with at most 50 steps comes within 0.3 dB (tutorial
    protocol, ``psnr``) of the full-length chain.
    """
    ancestral = rows[f"simple {steps_total}"]
    ddim_50 = rows[f"ddim {min(TARGET_DDIM_STEPS, steps_total)}"]
    short = [row for name, row in rows.items() if name.startswith("ddim") and row["steps"] <= TARGET_DDIM_STEPS]
    return {
        "ddim_steps": ddim_50["steps"],
        "psnr_gap_db": ddim_50["psnr"] - ancestral["psnr"],
        "psnr_mean_gap_db": ddim_50["psnr_mean"] - ancestral["psnr_mean"],
        "ssim_gap": ddim_50["ssim"] - ancestral["ssim"],
        "network_evaluation_ratio": ancestral["steps"] / ddim_50["steps"],
        "target_gap_db": TARGET_GAP_DB,
        "target_met": any(row["psnr"] >= ancestral["psnr"] - TARGET_GAP_DB for row in short),
    }


def quality_table(quality: dict) -> str:
    lines = [
        "| sampler | steps | PSNR (dB) | PSNR per-image mean | SSIM | SSIM per-image mean |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in quality["rows"].items():
        lines.append(f"| {name} | {row['steps']} | {row['psnr']:.3f} | {row['psnr_mean']:.3f} | "
                     f"{row['ssim']:.4f} | {row['ssim_mean']:.4f} |")
    comparison = quality["comparison"]
    lines.append("")
    lines.append(
        f"DDIM at {comparison['ddim_steps']} steps minus full-length ancestral: "
        f"{comparison['psnr_gap_db']:+.3f} dB PSNR ({comparison['psnr_mean_gap_db']:+.3f} dB per-image mean), "
        f"{comparison['ssim_gap']:+.4f} SSIM, with {comparison['network_evaluation_ratio']:.1f}x fewer network "
        f"evaluations. Target (DDIM <= {TARGET_DDIM_STEPS} steps within {TARGET_GAP_DB} dB): "
        f"{'met' if comparison['target_met'] else 'NOT met'}."
    )
    return "\n".join(lines)


# ------------------------------------------------------------------ command line
def newest_demo_run() -> Path:
    runs = sorted(Path().glob(DEMO_RUNS), key=lambda path: path.stat().st_mtime)
    if not runs:
        raise SystemExit(f"no --checkpoint given and no {DEMO_RUNS} run folder here; "
                         "train one with `make demo` or pass --checkpoint PATH")
    return runs[-1]


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.bench.sampling", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help=f"a .pt file or run folder (default: the newest {DEMO_RUNS})")
    parser.add_argument("--network", choices=NETWORKS, default="checkpoint",
                        help="'tutorial': the tutorial's network, random weights, 128x128, T = 2000 (speed only)")
    parser.add_argument("--data", help="data root of the quality test set (default: the checkpoint's data.root)")
    parser.add_argument("--level", default="level_09", help="test level of the quality table")
    parser.add_argument("--images", type=at_least(0, "--images"), default=32, help="test images of the quality table (0: no table)")
    parser.add_argument("--out", help=f"JSON output (default: {OUTPUT_NAME} in the checkpoint's run folder)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--batch-size", type=at_least(1, "--batch-size"), default=16, help="images per sampling batch")
    parser.add_argument("--image-size", type=at_least(1, "--image-size"),
                        help="side of the sampled images (default: the test images' size; tutorial: 128)")
    parser.add_argument("--timed-steps", type=at_least(0, "--timed-steps"), default=20,
                        help="chains longer than this are timed on their first steps and extrapolated (0: all)")
    parser.add_argument("--train-steps", type=at_least(1, "--train-steps"), default=3, help="timed training steps")
    parser.add_argument("--eta", type=range_parser(float, field_range(SamplingConfig, "eta"), "--eta"), default=0.0,
                        help="eta of the DDIM rows of the quality table (0: deterministic, 1: DDPM-like noise)")
    parser.add_argument("--seed", type=range_parser(int, SEEDS, "--seed"), default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing JSON output")
    return parser


def _load(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, Diffusion, RunConfig, Path | None]:
    """Network, diffusion, configuration and checkpoint file (None for the tutorial network)."""
    if args.network == "tutorial":
        torch.manual_seed(args.seed)
        return build_model(TUTORIAL_MSE, device).eval(), build_diffusion(TUTORIAL_MSE, device), TUTORIAL_MSE, None
    if args.network != "checkpoint":
        raise UsageError(f"unknown network {args.network!r}; choose one of {NETWORKS}")
    predictor = load_for_inference(args.checkpoint or newest_demo_run(), args.device)
    return predictor.model, predictor.diffusion, predictor.config, predictor.checkpoint


def run_benchmark(args: argparse.Namespace) -> dict:
    """Run the benchmark, print its tables, write the JSON and return what was written."""
    device = pick_device(args.device)
    seed_everything(args.seed)
    model, diffusion, config, checkpoint = _load(args, device)
    tutorial = checkpoint is None
    dataset = None
    if not tutorial and (args.images > 0 or args.image_size is None):
        dataset = read_pairs(config.data, "test", level=args.level, root=args.data or config.data.root)
    size = args.image_size or (TUTORIAL_IMAGE_SIZE if tutorial else None)
    image_shape = (size, size) if size else tuple(dataset.image_shape)
    train_shape = (config.data.crop, config.data.crop) if config.data.crop else image_shape
    default_out = Path("bench_sampling_tutorial.json") if tutorial else checkpoint.parent / OUTPUT_NAME
    out = Path(args.out) if args.out else default_out
    check_outputs([out], [checkpoint] if checkpoint else [], args.overwrite)

    name = "tutorial network (random weights)" if tutorial else str(checkpoint)
    print(f"{name}: T = {diffusion.steps}, {image_shape[0]}x{image_shape[1]}, batch {args.batch_size}, "
          f"device {device}, {torch.get_num_threads()} threads (timings as measured; other load slows them)")
    print("speed:", flush=True)
    speed = measure_speed(model, diffusion, config, image_shape, args.batch_size, args.timed_steps,
                          train_shape, args.train_steps)
    result = {"network": args.network, "checkpoint": None if tutorial else str(checkpoint), "speed": speed}
    print(speed_table(speed))
    if dataset is not None and args.images > 0:
        print(f"quality on {args.level}, first {args.images} images, DDIM eta {args.eta}:", flush=True)
        result["quality"] = measure_quality(model, diffusion, config, dataset, args.images, args.batch_size,
                                             args.seed, args.eta)
        print(quality_table(result["quality"]))
    write_record(out, result, device)
    print(f"wrote {out}")
    return result


main = benchmark_main(build_parser, run_benchmark)


if __name__ == "__main__":
    sys.exit(main())
