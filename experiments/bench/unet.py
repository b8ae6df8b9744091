"""Throughput, FLOP rate and peak memory of the tutorial's network: our ``UNet`` against deeplay's ``AttentionUNet``.

    python -m experiments.bench.unet                                # ours, eager, 5 rounds
    python -m experiments.bench.unet --channels-last --compile      # ours, with the speed options
    python -m experiments.bench.unet --channels-last --deeplay-python ../deeplay-venv/bin/python \\
        --out bench_unet.json                                       # + deeplay in the same rounds (docs/benchmarks.md)
    python -m experiments.bench.unet --sweep --deeplay-python ...   # every option of ours

Measures images/s of a training step (forward + MSE backward + AdamW step) and of a single denoising
forward pass (``torch.inference_mode``), at the tutorial's batch 16 and 128 x 128, and the peak
memory: ``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on CPU. Every
measurement runs in a fresh process (its own peak RSS); deeplay runs under the interpreter given by
``--deeplay-python``, so it never enters this project's environment.

``--rounds`` interleaved rounds (default 5; fewer prints a warning): each round measures every
variant once, in the given order in even rounds and reversed in odd ones, so a drift of the
machine's load hits every variant alike. Printed:

- the machine: CPU model, logical and physical cores, clock, torch version and threads, device, and
  the 1-minute load average before and after (near 0 on an idle machine);
- the FLOPs of one forward and one training step (forward + backward) per image, counted with
  :mod:`torch.utils.flop_counter` (convolutions and matrix products only), and the assumed peak of
  the machine with its derivation (:mod:`experiments.bench.machine`, or ``--peak-gflops``);
- per variant and metric: the median over rounds, its interquartile range and min-max, the achieved
  GFLOP/s at the median (FLOPs x images/s) and its fraction of the peak;
- against deeplay: the ratio ours / deeplay of each round, as median and min-max, and a verdict
  (:func:`experiments.bench.stats.verdict`): a gain or loss only when all rounds agree, otherwise
  "no difference beyond the spread".

``--out FILE`` also writes all of it, every round included, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

# Everything imported here needs torch, numpy and tqdm only (a deeplay environment has them), so this
# module also runs in a deeplay venv with the repository on PYTHONPATH.
from ddpm.settings import Range, UsageError, at_least, range_parser
from experiments.bench.flops import COUNTED, count_flops
from experiments.bench.record import benchmark_main, write_record
from experiments.bench.machine import Machine, Peak, load_average, machine_peak, read_machine
from experiments.bench.stats import ratios, round_order, spread, verdict
from experiments.command import CommandParser
from experiments.runtime import DEVICES, pick_device
from experiments.integrity.json_files import json_text
from experiments.integrity.outputs import check_outputs
from unet import UNetConfig
from unet.speed import optimize_for_speed

Network = Literal["ours", "deeplay"]
NETWORKS: tuple[Network, ...] = ("ours", "deeplay")
# experiments/bench/unet.py -> the checkout holding it (children import this checkout, not an installed copy).
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
# Fewer rounds than this print a warning: the spread of fewer is no guide.
MIN_ROUNDS = 5
METRICS = ("train", "forward")

# The tutorial configuration, in deeplay's argument names (ours: ``UNetConfig()``).
TUTORIAL_DEEPLAY_KWARGS = {
    "in_channels": 2,
    "channels": [32, 64, 128],
    "base_channels": [256, 256],
    "channel_attention": [False, False, False],
    "out_channels": 1,
    "position_embedding_dim": 256,
}


@dataclass(frozen=True)
class BenchResult:
    """One measurement (one variant, one round, one process)."""

    network: str
    device: str
    channels_last: bool
    compiled: bool
    batch_size: int
    image_size: int
    train_images_per_s: float
    forward_images_per_s: float
    peak_memory_mib: float
    peak_memory_kind: str
    torch_version: str
    threads: int


@dataclass(frozen=True)
class NetworkFlops:
    """FLOPs per image of one forward pass and of one training step (forward + backward)."""

    forward: float
    train: float


def build_network(network: Network) -> nn.Module:
    """The tutorial configuration of the chosen implementation (deeplay must be importable for "deeplay")."""
    if network == "ours":
        from unet import UNet, UNetConfig

        return UNet(UNetConfig())
    if network == "deeplay":
        from deeplay.components.diffusion.attention_unet import AttentionUNet

        return AttentionUNet(**TUTORIAL_DEEPLAY_KWARGS).create()
    raise ValueError(f"unknown network {network!r}; choose one of {NETWORKS}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_s(step, batch_size: int, warmup: int, steps: int, device: torch.device) -> float:
    """Run ``step`` warmup + steps times; images per second over the timed steps."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return batch_size * steps / (time.perf_counter() - start)


def workload(
    network: Network, device: torch.device, batch_size: int, image_size: int,
    channels_last: bool = False, compile_model: bool = False,
) -> tuple[Callable[[], None], Callable[[], None]]:
    """A training step and a forward step of ``network`` on seeded random inputs [B, 2, S, S] (speed only)."""
    torch.manual_seed(0)
    model = build_network(network).to(device)
    runner = optimize_for_speed(model, channels_last=channels_last, compile=compile_model)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    x = torch.randn(batch_size, 2, image_size, image_size, device=device).to(memory_format=memory_format)
    t_encoding = torch.randn(batch_size, 256, device=device)
    noise = torch.randn(batch_size, 1, image_size, image_size, device=device)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(runner(x, t_encoding), noise)
        loss.backward()
        optimizer.step()

    def forward_step() -> None:
        with torch.inference_mode():
            runner(x, t_encoding)

    return train_step, forward_step


def measure(
    network: Network,
    device: torch.device,
    batch_size: int = 16,
    image_size: int = 128,
    steps: int = 5,
    warmup: int = 2,
    channels_last: bool = False,
    compile_model: bool = False,
) -> BenchResult:
    """Training-step and forward throughput of ``network`` and this process's peak memory."""
    train_step, forward_step = workload(network, device, batch_size, image_size, channels_last, compile_model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train = images_per_s(train_step, batch_size, warmup, steps, device)
    forward = images_per_s(forward_step, batch_size, warmup, steps, device)
    if device.type == "cuda":
        peak_mib, peak_kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    else:  # ru_maxrss is in KiB on Linux
        peak_mib, peak_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
    return BenchResult(
        network=network, device=str(device), channels_last=channels_last, compiled=compile_model,
        batch_size=batch_size, image_size=image_size, train_images_per_s=train,
        forward_images_per_s=forward, peak_memory_mib=peak_mib, peak_memory_kind=peak_kind,
        torch_version=torch.__version__, threads=torch.get_num_threads(),
    )


def network_flops(network: Network, device: torch.device, batch_size: int, image_size: int) -> NetworkFlops:
    """FLOPs per image (:func:`count_flops`) of the eager network: memory format and compilation
    change how the work is done, not how much."""
    train_step, forward_step = workload(network, device, batch_size, image_size)
    return NetworkFlops(forward=count_flops(forward_step) / batch_size, train=count_flops(train_step) / batch_size)


@dataclass(frozen=True)
class Variant:
    network: Network
    channels_last: bool = False
    compile: bool = False

    @property
    def label(self) -> str:
        options = "+".join(name for name, on in (("channels_last", self.channels_last),
                                                 ("compile", self.compile)) if on) or "eager"
        return f"{self.network} {options}"


def run_module(python: str, options: list[str], args: argparse.Namespace) -> dict:
    """The JSON line that this module prints when re-run with ``--json`` under ``python``, in a fresh process."""
    command = [
        python, "-m", "experiments.bench.unet", "--json", "--device", args.device,
        "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
        "--steps", str(args.steps), "--warmup", str(args.warmup), *options,
    ]
    # The repository root on the path makes `experiments` importable from a venv that never installed it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def variant_options(variant: Variant) -> list[str]:
    return ["--network", variant.network] + ["--channels-last"] * variant.channels_last + ["--compile"] * variant.compile


# ------------------------------------------------------------------ summaries
def summarize_variant(
    variant: Variant, results: list[BenchResult], flops: NetworkFlops, peak: Peak,
) -> dict:
    """Median and spread of each metric over the rounds, the achieved GFLOP/s at the median and its
    fraction of ``peak`` (None when the peak is unknown), the largest peak memory, and every round."""
    row = {"variant": variant.label, "network": variant.network, "channels_last": variant.channels_last,
           "compiled": variant.compile, "rounds": [asdict(r) for r in results],
           "gflop_per_image": {"train": flops.train / 1e9, "forward": flops.forward / 1e9}}
    for metric in METRICS:
        summary = spread([getattr(r, f"{metric}_images_per_s") for r in results])
        gflops = getattr(flops, metric) / 1e9 * summary.median
        row[metric] = {**asdict(summary), "gflops": gflops,
                       "peak_fraction": gflops / peak.gflops if peak.gflops else None}
    row["peak_memory_mib"] = max(r.peak_memory_mib for r in results)
    row["peak_memory_kind"] = results[0].peak_memory_kind
    return row


def compare(ours: Variant, our_results: list[BenchResult], reference: Variant,
            reference_results: list[BenchResult]) -> dict:
    """Per-round ratios ours / reference of each metric (same round paired), their median and min-max,
    and the :func:`verdict`."""
    row = {"variant": ours.label, "against": reference.label}
    for metric in METRICS:
        key = f"{metric}_images_per_s"
        per_round = ratios([getattr(r, key) for r in our_results], [getattr(r, key) for r in reference_results])
        summary = spread(per_round)
        row[metric] = {"ratios": per_round, "median": summary.median, "low": summary.low, "high": summary.high,
                       "verdict": verdict(per_round)}
    return row


def format_spread(summary: dict) -> str:
    return (f"{summary['median']:8.2f} img/s  IQR {summary['q1']:.2f}-{summary['q3']:.2f}  "
            f"min-max {summary['low']:.2f}-{summary['high']:.2f}")


def format_rate(summary: dict) -> str:
    fraction = "unknown" if summary["peak_fraction"] is None else f"{100 * summary['peak_fraction']:.1f}%"
    return f"{summary['gflops']:7.1f} GFLOP/s = {fraction} of peak"


def format_variant(row: dict) -> list[str]:
    first = row["rounds"][0]
    return [
        f"{row['variant']} (torch {first['torch_version']}, {first['threads']} threads)",
        f"  train   {format_spread(row['train'])}   {format_rate(row['train'])}",
        f"  forward {format_spread(row['forward'])}   {format_rate(row['forward'])}",
        f"  peak memory {row['peak_memory_mib']:.0f} MiB ({row['peak_memory_kind']}, largest round)",
    ]


def format_comparison(row: dict) -> list[str]:
    lines = [f"{row['variant']} / {row['against']}, ratio per round:"]
    for metric in METRICS:
        c = row[metric]
        lines.append(f"  {metric:7s} median {c['median']:.2f}x  min-max {c['low']:.2f}-{c['high']:.2f}x"
                     f"  -> verdict: {c['verdict']}")
    return lines


def format_load(load: float | None) -> str:
    return "unavailable on this platform" if load is None else f"{load:.2f}"


def format_result(result: BenchResult) -> str:
    return (f"train {result.train_images_per_s:7.2f} img/s   forward {result.forward_images_per_s:7.2f} img/s   "
            f"peak {result.peak_memory_mib:6.0f} MiB")


# ------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.bench.unet", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=DEVICES)
    parser.add_argument("--batch-size", type=at_least(1, "--batch-size"), default=16)
    parser.add_argument("--image-size", type=at_least(1, "--image-size"), default=128)
    parser.add_argument("--steps", type=at_least(1, "--steps"), default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=at_least(0, "--warmup"), default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--channels-last", action="store_true", help="our network in channels_last")
    parser.add_argument("--compile", action="store_true", help="torch.compile our network")
    parser.add_argument("--sweep", action="store_true",
                        help="measure our network eager, channels_last, compile and both")
    parser.add_argument("--rounds", type=at_least(1, "--rounds"), default=MIN_ROUNDS,
                        help=f"interleaved rounds, each measuring every variant once (fewer than {MIN_ROUNDS} "
                             "prints a warning)")
    parser.add_argument("--network", choices=NETWORKS, default="ours")
    parser.add_argument("--deeplay-python", metavar="PATH",
                        help="python of an environment with deeplay: also measure deeplay's network (eager)")
    parser.add_argument("--peak-gflops", type=range_parser(float, Range(0.0, low_open=True), "--peak-gflops"),
                        help="the machine's peak GFLOP/s (default: derived from /proc/cpuinfo on CPU, unknown on GPUs)")
    parser.add_argument("--out", metavar="FILE", help="also write the summary and every round as JSON")
    parser.add_argument("--json", action="store_true", help="measure once and print one JSON line")
    parser.add_argument("--count-flops", action="store_true",
                        help="with --json: count the network's FLOPs per image instead of timing it")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser


def variants(args: argparse.Namespace) -> list[tuple[str, Variant]]:
    """(python, variant) pairs to measure; deeplay as the tutorial runs it: eager, default memory format."""
    if args.sweep:
        ours = [Variant(args.network, cl, comp) for comp in (False, True) for cl in (False, True)]
    else:
        ours = [Variant(args.network, args.channels_last, args.compile)]
    pairs = [(sys.executable, variant) for variant in ours]
    if args.deeplay_python:
        pairs.append((args.deeplay_python, Variant("deeplay")))
    return pairs


def run_rounds(pairs: list[tuple[str, Variant]], args: argparse.Namespace) -> dict[Variant, list[BenchResult]]:
    """``args.rounds`` rounds of one fresh-process measurement per variant, in :func:`round_order`."""
    runs: dict[Variant, list[BenchResult]] = {variant: [] for _, variant in pairs}
    for round_index in range(args.rounds):
        for python, variant in round_order(pairs, round_index):
            result = BenchResult(**run_module(python, variant_options(variant), args))
            runs[variant].append(result)
            print(f"round {round_index + 1}: {variant.label:28s} {format_result(result)}", flush=True)
    return runs


def describe_setup(machine: Machine, peak: Peak, args: argparse.Namespace) -> list[str]:
    return [
        machine.describe(),
        f"batch {args.batch_size}, {args.image_size}x{args.image_size}, {args.warmup} warmup + {args.steps} "
        f"timed steps per measurement, {args.rounds} interleaved rounds, a fresh process each",
        f"assumed peak (fp32): {peak.derivation}",
    ]


def run_benchmark(args: argparse.Namespace) -> dict | None:
    """Run the benchmark, print it, write ``--out``; returns what was (or would be) written."""
    size_multiple = UNetConfig().size_multiple
    if args.image_size % size_multiple:
        raise UsageError(f"--image-size must be a multiple of {size_multiple} (the tutorial network's size_multiple), "
                         f"got {args.image_size}")
    device = pick_device(args.device)
    if args.json:
        if args.count_flops:
            print(json_text(asdict(network_flops(args.network, device, args.batch_size, args.image_size)), None))
        else:
            print(json_text(asdict(measure(args.network, device, args.batch_size, args.image_size,
                                           args.steps, args.warmup, args.channels_last, args.compile)), None))
        return None
    if args.out:
        check_outputs([args.out], overwrite=args.overwrite)

    machine = read_machine(device)
    peak = machine_peak(machine, args.peak_gflops)
    print("\n".join(describe_setup(machine, peak, args)))
    if args.rounds < MIN_ROUNDS:
        print(f"WARNING: --rounds {args.rounds} is fewer than {MIN_ROUNDS}: the spread and the verdicts below "
              "rest on too few rounds to be trusted", flush=True)
    load_before = load_average()
    print(f"load average (1 min) before: {format_load(load_before)}", flush=True)
    pairs = variants(args)
    flops = {}
    for python, variant in pairs:
        if variant.network not in flops:
            flops[variant.network] = NetworkFlops(**run_module(python, ["--network", variant.network,
                                                                        "--count-flops"], args))
            print(f"FLOPs of {variant.network}: {flops[variant.network].forward / 1e9:.3f} GFLOP/image forward, "
                  f"{flops[variant.network].train / 1e9:.3f} GFLOP/image training step (fwd+bwd); "
                  f"counts {COUNTED}", flush=True)
    runs = run_rounds(pairs, args)
    load_after = load_average()
    print(f"load average (1 min) after: {format_load(load_after)}")

    rows = [summarize_variant(variant, runs[variant], flops[variant.network], peak) for _, variant in pairs]
    print(f"median over {args.rounds} rounds, interquartile range (IQR) and min-max; GFLOP/s at the median:")
    for row in rows:
        print("\n".join(format_variant(row)))
    comparisons = []
    if args.deeplay_python:
        reference = Variant("deeplay")
        comparisons = [compare(variant, runs[variant], reference, runs[reference])
                       for _, variant in pairs if variant != reference]
        for row in comparisons:
            print("\n".join(format_comparison(row)))
    report = {
        "peak": asdict(peak), "load_average": {"before": load_before, "after": load_after},
        "settings": {"device": args.device, "batch_size": args.batch_size, "image_size": args.image_size,
                     "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds},
        "flops_counted": COUNTED, "variants": rows, "comparisons": comparisons,
    }
    if args.out:
        write_record(args.out, report, device)
        print(f"wrote {args.out}")
    return report


main = benchmark_main(build_parser, run_benchmark)


if __name__ == "__main__":
    sys.exit(main())
