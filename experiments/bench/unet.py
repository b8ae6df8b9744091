"""Throughput and peak memory of the tutorial's network: our ``UNet`` against deeplay's ``AttentionUNet``.

    python -m experiments.bench.unet                               # ours, eager, on the best device
    python -m experiments.bench.unet --channels-last --compile     # ours, with the speed options
    python -m experiments.bench.unet --deeplay-python /tmp/deeplay-venv/bin/python   # + deeplay, same run
    python -m experiments.bench.unet --sweep --repeats 2 --deeplay-python ...      # every option, best of 2

Prints images/s of a training step (forward + MSE backward + AdamW step) and of a single denoising
forward pass (``torch.inference_mode``), at the tutorial's batch 16 and 128 x 128, and the peak
memory: ``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on CPU (which is why
every measured network runs in a fresh process). deeplay is measured by re-running this module with
``--network deeplay`` under the given interpreter, so deeplay never enters this project's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

# unet.speed needs torch only, so this import also works in a deeplay venv with the repo on PYTHONPATH.
from unet.speed import optimize_for_speed

Network = Literal["ours", "deeplay"]
NETWORKS: tuple[Network, ...] = ("ours", "deeplay")
REPO_ROOT = Path(__file__).resolve().parent.parent

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
    """Training-step and forward throughput of ``network`` (seeded random inputs: speed only)."""
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
    )


@dataclass(frozen=True)
class Variant:
    network: Network
    channels_last: bool = False
    compile: bool = False


def measure_in_subprocess(python: str, variant: Variant, args: argparse.Namespace) -> BenchResult:
    """Run ``measure`` in a fresh ``python`` process (own peak RSS; deeplay lives in its own venv)."""
    command = [
        python, "-m", "experiments.bench.unet", "--network", variant.network, "--json",
        "--device", args.device, "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
        "--steps", str(args.steps), "--warmup", str(args.warmup),
    ]
    command += ["--channels-last"] * variant.channels_last + ["--compile"] * variant.compile
    # The repository root on the path makes `experiments` importable from a venv that never installed it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark of {variant} under {python} failed:\n{completed.stderr[-3000:]}")
    return BenchResult(**json.loads(completed.stdout.strip().splitlines()[-1]))


def best_of(results: list[BenchResult]) -> BenchResult:
    """Highest throughputs and peak memory over repeats: other load on the machine only slows runs down."""
    return replace(
        results[0],
        train_images_per_s=max(r.train_images_per_s for r in results),
        forward_images_per_s=max(r.forward_images_per_s for r in results),
        peak_memory_mib=max(r.peak_memory_mib for r in results),
    )


def label(result: BenchResult) -> str:
    options = "+".join(name for name, on in (("channels_last", result.channels_last),
                                             ("compile", result.compiled)) if on) or "eager"
    return f"{result.network:8s} {options:22s}"


def format_result(result: BenchResult) -> str:
    return (
        f"{label(result)} train {result.train_images_per_s:7.2f} img/s   "
        f"forward {result.forward_images_per_s:7.2f} img/s   peak {result.peak_memory_mib:8.0f} MiB "
        f"({result.peak_memory_kind})"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--channels-last", action="store_true", help="our network in channels_last")
    parser.add_argument("--compile", action="store_true", help="torch.compile our network")
    parser.add_argument("--sweep", action="store_true",
                        help="measure our network eager, channels_last, compile and both")
    parser.add_argument("--repeats", type=int, default=1,
                        help="interleaved rounds over all variants; the best of each is reported")
    parser.add_argument("--network", choices=NETWORKS, default="ours")
    parser.add_argument("--deeplay-python", metavar="PATH",
                        help="python of an environment with deeplay: also measure deeplay's network (eager)")
    parser.add_argument("--json", action="store_true", help="measure once and print one JSON line")
    return parser.parse_args(argv)


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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.json:
        result = measure(args.network, torch.device(args.device), args.batch_size, args.image_size,
                         args.steps, args.warmup, args.channels_last, args.compile)
        print(json.dumps(asdict(result)))
        return

    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size}, {args.image_size}x{args.image_size}, {args.steps} timed steps, "
          f"best of {args.repeats} interleaved round(s)")
    pairs = variants(args)
    runs: dict[Variant, list[BenchResult]] = {variant: [] for _, variant in pairs}
    for round_index in range(args.repeats):
        for python, variant in pairs:
            runs[variant].append(measure_in_subprocess(python, variant, args))
            print(f"round {round_index + 1}: {format_result(runs[variant][-1])}", flush=True)
    best = {variant: best_of(results) for variant, results in runs.items()}
    print(f"best of {args.repeats}:")
    for result in best.values():
        print(format_result(result))
    if args.deeplay_python:
        deeplay = best.pop(Variant("deeplay"))
        for result in best.values():
            print(f"{label(result)} / deeplay eager: "
                  f"train {result.train_images_per_s / deeplay.train_images_per_s:.2f}x, "
                  f"forward {result.forward_images_per_s / deeplay.forward_images_per_s:.2f}x")


if __name__ == "__main__":
    main()
