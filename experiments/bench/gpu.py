"""GPU readiness of the full reproduction: the tutorial network's training step, timed on a CUDA GPU.

    python -m experiments.bench.gpu --out bench_gpu.json       # 3 variants, 5 rounds, batch 64, 128 x 128
    python -m experiments.bench.gpu --no-compile --rounds 3    # without the torch.compile variant

Times the trainer's step for the tutorial's conditional network (``UNet(UNetConfig())``, input
[B, 2, H, W]; the Eq. 12-13 loss of ``Diffusion.training_loss`` under the ``mse`` preset, backward,
AdamW) on seeded random pairs, in three variants: ``fp32`` (the tutorial's arithmetic: NCHW, TF32 off);
``bf16+channels_last`` (bf16 autocast for the network, NHWC, TF32 on); and the same under
``torch.compile`` (``--no-compile`` leaves it out).

Each variant is built once and primed by untimed steps (compilation happens there), which give its
peak memory (``torch.cuda.max_memory_allocated`` from a reset, less what was allocated before). Then
``--rounds`` interleaved rounds (order reversed in odd ones, as in ``experiments.bench.unet``) run
``--warmup`` untimed and ``--steps`` timed steps of each variant between ``torch.cuda.synchronize``
calls. With two GPUs or more a two-process DDP run (NCCL, the global batch split in two, as the trainer
does under ``torchrun``) times ``bf16+channels_last`` too; with fewer the JSON says why it did not run.

The JSON (``--out``) holds the device name, torch, CUDA and cuDNN versions, the CPU and load average,
the settings and, per variant, images/s (median, quartiles, min-max, every round), the peak memory and
the estimated reproduction time: 41,040 training pairs / images per s per epoch, times the preset's 60
epochs. Training steps only: the per-epoch evaluation (sampling), data loading and checkpoints are extra.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ddpm.settings import UsageError, at_least
from experiments.bench.record import benchmark_main, write_record
from experiments.bench.machine import load_average, read_machine
from experiments.bench.stats import round_order, spread
from experiments.build import build_diffusion, build_model
from experiments.command import CommandParser
from experiments.config.presets import TUTORIAL_MSE
from experiments.integrity.outputs import check_outputs
from experiments.runtime import autocast, init_distributed, rank_device, set_tf32
from unet import UNetConfig, optimize_for_speed

PROG = "python -m experiments.bench.gpu"
TRAINING_PAIRS = 41_040  # one epoch of the reproduction
EPOCHS = TUTORIAL_MSE.train.epochs
ESTIMATE_NOTE = ("training steps only: the per-epoch evaluation (sampling the validation and test images), "
                 "data loading and checkpoints are extra")
DDP_PROCESSES = 2


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str  # "fp32" or "bf16" (experiments.runtime.autocast)
    channels_last: bool
    tf32: bool
    compile: bool


FP32 = Variant("fp32", "fp32", channels_last=False, tf32=False, compile=False)
BF16 = Variant("bf16+channels_last", "bf16", channels_last=True, tf32=True, compile=False)
BF16_COMPILED = replace(BF16, name="bf16+channels_last+compile", compile=True)


def training_step(network: UNetConfig, variant: Variant, device: torch.device, batch_size: int, image_size: int,
                  wrap: Callable[[nn.Module], nn.Module] = lambda module: module) -> Callable[[], None]:
    """The trainer's step (autocast network, fp32 loss, backward, AdamW) on seeded random pairs in [-1, 1];
    ``wrap`` wraps the network (DDP)."""
    config = replace(TUTORIAL_MSE, network=network)
    torch.manual_seed(config.train.seed)
    model = build_model(config, device)
    diffusion = build_diffusion(config, device)
    # The trainer's order: NHWC, then DDP, then compile; the optimizer holds the unwrapped weights.
    runner = wrap(optimize_for_speed(model, channels_last=variant.channels_last))
    if variant.compile:
        runner = torch.compile(runner)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    generator = torch.Generator(device).manual_seed(0)
    shape = (batch_size, 1, image_size, image_size)
    x0, condition = (torch.rand(shape, generator=generator, device=device) * 2 - 1 for _ in range(2))

    def step() -> None:
        with autocast(device, variant.precision):
            loss = diffusion.training_loss(runner, x0, condition, loss=config.train.loss, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def images_per_s(step: Callable[[], None], batch_size: int, warmup: int, steps: int,
                 synchronize: Callable[[], None]) -> float:
    """Run ``step`` warmup + steps times; images per second over the timed steps (queued GPU work included)."""
    for _ in range(warmup):
        step()
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return batch_size * steps / (time.perf_counter() - start)


def epoch_estimate(images_per_second: float, pairs: int = TRAINING_PAIRS, epochs: int = EPOCHS) -> dict:
    epoch = pairs / images_per_second
    return {"training_pairs": pairs, "epoch_seconds": epoch, "epochs": epochs, "total_seconds": epoch * epochs,
            "total_hours": epoch * epochs / 3600, "note": ESTIMATE_NOTE}


def summarize(rates: list[float]) -> dict:
    summary = spread(rates)
    return {"images_per_s": asdict(summary), "rounds": rates, "estimate": epoch_estimate(summary.median)}


def measure(network: UNetConfig, variants: list[Variant], device: torch.device, synchronize: Callable[[], None],
            batch_size: int, image_size: int, rounds: int, steps: int, warmup: int) -> list[dict]:
    """Per variant: :func:`summarize` of its images/s over interleaved rounds, and its peak memory
    (MiB, CUDA only; None elsewhere)."""
    cuda = device.type == "cuda"
    trainers, peaks = {}, {}
    for variant in variants:
        if cuda:
            set_tf32(variant.tf32)
            held = torch.cuda.memory_allocated(device)  # the variants built before this one
            torch.cuda.reset_peak_memory_stats(device)
        trainers[variant] = training_step(network, variant, device, batch_size, image_size)
        for _ in range(max(warmup, 1)):  # at least one step, so that the peak covers one
            trainers[variant]()
        synchronize()
        peaks[variant] = (torch.cuda.max_memory_allocated(device) - held) / 2**20 if cuda else None
    rates = {variant: [] for variant in variants}
    for index in range(rounds):
        for variant in round_order(variants, index):
            if cuda:  # a global flag: each variant runs under its own
                set_tf32(variant.tf32)
            rates[variant].append(images_per_s(trainers[variant], batch_size, warmup, steps, synchronize))
    return [{**asdict(variant), **summarize(rates[variant]), "peak_memory_mib": peaks[variant]} for variant in variants]


def ddp_worker(rank: int, port: int, network: UNetConfig, variant: Variant, batch_size: int, image_size: int,
               rounds: int, steps: int, warmup: int, results) -> None:
    """One DDP process (``torch.multiprocessing.spawn``), joined as ``torchrun`` would; rank 0 puts the
    per-round images/s of the global batch into ``results``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(DDP_PROCESSES),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    place = init_distributed("cuda")
    try:
        device = rank_device(torch.device("cuda"), place)
        set_tf32(variant.tf32)
        step = training_step(network, variant, device, batch_size // DDP_PROCESSES, image_size,
                             wrap=lambda module: DistributedDataParallel(module, device_ids=[device.index]))
        rates = []
        for _ in range(rounds):
            dist.barrier()  # every rank starts its timed steps together
            # Each step all-reduces the gradients, so rank 0's clock times the whole global batch.
            rates.append(images_per_s(step, batch_size, warmup, steps, lambda: torch.cuda.synchronize(device)))
        if place.is_main:
            results.put(rates)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_ddp(network: UNetConfig, variant: Variant, batch_size: int, image_size: int, rounds: int, steps: int,
            warmup: int) -> dict:
    """Images/s of a two-process DDP training step, or why it did not run."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus < DDP_PROCESSES:
        return {"run": False, "reason": f"{gpus} CUDA GPU(s) visible; a DDP run needs {DDP_PROCESSES}"}
    if batch_size % DDP_PROCESSES:
        return {"run": False, "reason": f"--batch-size {batch_size} does not split over {DDP_PROCESSES} processes"}
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(ddp_worker, args=(free_port(), network, variant, batch_size, image_size, rounds, steps, warmup, results),
             nprocs=DDP_PROCESSES)
    return {"run": True, "processes": DDP_PROCESSES, "backend": "nccl",
            "batch_per_process": batch_size // DDP_PROCESSES, **asdict(variant), **summarize(results.get())}


def format_row(row: dict) -> str:
    rate, estimate = row["images_per_s"], row["estimate"]
    peak = "" if row.get("peak_memory_mib") is None else f"  peak {row['peak_memory_mib']:6.0f} MiB"
    return (f"{row['name']:28s} {rate['median']:8.1f} img/s (min-max {rate['low']:.1f}-{rate['high']:.1f}){peak}"
            f"  epoch {estimate['epoch_seconds']:6.1f} s, {estimate['epochs']} epochs {estimate['total_hours']:.2f} h")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_gpu.json", help="JSON output (default: bench_gpu.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing JSON output")
    parser.add_argument("--batch-size", type=at_least(1, "--batch-size"), default=TUTORIAL_MSE.train.batch_size,
                        help="global batch (default: the tutorial's 64; DDP splits it in two)")
    parser.add_argument("--image-size", type=at_least(1, "--image-size"), default=128,
                        help=f"image side, a multiple of {UNetConfig().size_multiple} (default: 128)")
    parser.add_argument("--rounds", type=at_least(1, "--rounds"), default=5, help="interleaved rounds")
    parser.add_argument("--steps", type=at_least(1, "--steps"), default=10, help="timed steps per round")
    parser.add_argument("--warmup", type=at_least(0, "--warmup"), default=3, help="untimed steps before each round")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variant")
    return parser


def run_benchmark(args: argparse.Namespace) -> dict:
    """Measure every variant (and DDP where possible), print a summary, write the JSON and return it."""
    network = UNetConfig()
    if args.image_size % network.size_multiple:
        raise UsageError(f"--image-size {args.image_size} is not a multiple of {network.size_multiple}, which the "
                         f"tutorial network's {network.depth} levels need; use e.g. 128")
    if not torch.cuda.is_available():
        raise UsageError(f"{PROG} needs a CUDA GPU; PyTorch sees none (torch {torch.__version__}, built for CUDA "
                         f"{torch.version.cuda or 'none'}); run it on a machine with an NVIDIA GPU")
    check_outputs([args.out], overwrite=args.overwrite)
    device = torch.device("cuda", torch.cuda.current_device())
    machine = read_machine(device)
    variants = [FP32, BF16] + ([] if args.no_compile else [BF16_COMPILED])
    settings = {"batch_size": args.batch_size, "image_size": args.image_size, "rounds": args.rounds,
                "steps": args.steps, "warmup": args.warmup, "compile": not args.no_compile,
                "network": asdict(network), "diffusion_steps": TUTORIAL_MSE.diffusion.steps,
                "loss": TUTORIAL_MSE.train.loss, "training_pairs": TRAINING_PAIRS, "epochs": EPOCHS}
    load_before = load_average()
    print(f"{machine.device_name}, torch {torch.__version__}, CUDA {torch.version.cuda}: batch {args.batch_size}, "
          f"{args.image_size}x{args.image_size}, {args.rounds} rounds of {args.steps} steps", flush=True)
    rows = measure(network, variants, device, lambda: torch.cuda.synchronize(device), args.batch_size,
                   args.image_size, args.rounds, args.steps, args.warmup)
    for row in rows:
        print(format_row(row))
    ddp = run_ddp(network, BF16, args.batch_size, args.image_size, args.rounds, args.steps, args.warmup)
    print(format_row({**ddp, "name": f"DDP x{DDP_PROCESSES} {BF16.name}"}) if ddp["run"]
          else f"DDP not run: {ddp['reason']}")
    print(f"estimates: {ESTIMATE_NOTE}")
    report = {
        "device_name": machine.device_name, "gpus": torch.cuda.device_count(), "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda, "cudnn_version": torch.backends.cudnn.version(),
        "bf16_supported": torch.cuda.is_bf16_supported(),
        "load_average": {"before": load_before, "after": load_average()},
        "settings": settings, "variants": rows, "ddp": ddp,
    }
    write_record(args.out, report, device)
    print(f"wrote {args.out}")
    return report


main = benchmark_main(build_parser, run_benchmark)


if __name__ == "__main__":
    sys.exit(main())
