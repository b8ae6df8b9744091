"""Data loading speed: pairs/s from direct TIF reads and from the memory-mapped cache.

    python -m experiments.bench.data [--root DATA] [--split train] [--batch-size 64]

Without --root, a synthetic data set (``experiments.microscope.synthetic``) is generated in a temporary folder.
The cache is timed through torch DataLoaders, steady state (after one warm-up epoch, with persistent
workers), for num_workers 0 and 2 and for both batched paths: ``make_loader`` (a BatchSampler hands
the dataset whole index lists) and a plain ``DataLoader(batch_size=...)`` (``__getitems__``, then
default collation). Every measurement is repeated ``--rounds`` times; the median and min-max are printed
with the machine and its load average. The target is at least 20,000 pairs/s on a 2-core CPU.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ddpm.settings import at_least
from experiments.bench.record import benchmark_main
from experiments.bench.machine import load_average, read_machine
from experiments.bench.stats import spread
from experiments.command import CommandParser

from experiments.pairs.dataset import PairedImageDataset, make_loader
from experiments.microscope.synthetic import generate


def direct_read_rate(root: Path, split: str, pairs: int) -> float:
    """Pairs/s reading TIFs one pair at a time (no cache), over the first ``pairs`` pairs."""
    dataset = PairedImageDataset(root, split, cache=False)
    count = min(pairs, len(dataset))
    started = time.perf_counter()
    for index in range(count):
        dataset[index]
    return count / (time.perf_counter() - started)


def loader_rate(loader: DataLoader, epochs: int) -> tuple[float, float]:
    """(pairs per wall-clock second, pairs per CPU second of this process) over ``epochs`` epochs of
    ``loader``, after one untimed warm-up epoch. The CPU figure does not suffer from other work on the
    machine; with num_workers=0 it is what an idle machine gives, with workers it leaves their CPU out."""
    for _ in loader:
        pass
    pairs, started, cpu_started = 0, time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for wf, gt in loader:
            pairs += len(wf)
    return pairs / (time.perf_counter() - started), pairs / (time.process_time() - cpu_started)


def measure_round(dataset: PairedImageDataset, root: Path, split: str, batch_size: int, direct_pairs: int,
                  epochs: int) -> dict[str, float]:
    """One round: pairs/s of direct reads and of every cached loader (name -> rate)."""
    rates = {"direct TIF reads (cache=False)": direct_read_rate(root, split, direct_pairs)}
    for workers in (0, 2):
        options = {"num_workers": workers, "persistent_workers": workers > 0}
        loaders = {
            "make_loader (BatchSampler)": make_loader(dataset, batch_size, shuffle=True, **options),
            "DataLoader(batch_size) __getitems__": DataLoader(dataset, batch_size, shuffle=True, **options),
        }
        for name, loader in loaders.items():
            rate, cpu_rate = loader_rate(loader, epochs)
            rates[f"cache, {name}, num_workers={workers}"] = rate
            if workers == 0:
                rates[f"cache, {name}, num_workers=0, per CPU-second"] = cpu_rate
    return rates


def run(root: Path, split: str, batch_size: int, direct_pairs: int, epochs: int, rounds: int) -> None:
    print(read_machine(torch.device("cpu")).describe())
    print(f"data: {root} ({split}); load average (1 min) before: {load_average()}")
    started = time.perf_counter()
    dataset = PairedImageDataset(root, split, cache=True)
    print(f"cache ready in {time.perf_counter() - started:.1f} s ({len(dataset)} pairs of {dataset.image_shape})")
    results: dict[str, list[float]] = {}
    for round_index in range(rounds):
        for name, rate in measure_round(dataset, root, split, batch_size, direct_pairs, epochs).items():
            results.setdefault(name, []).append(rate)
        print(f"round {round_index + 1} done", flush=True)
    print(f"load average (1 min) after: {load_average()}")
    print(f"pairs/s, batch {batch_size}, median (min-max) over {rounds} rounds:")
    for name, rates in results.items():
        figure = spread(rates)
        print(f"  {name:62s} {figure.median:>9,.0f}  ({figure.low:,.0f}-{figure.high:,.0f})")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.bench.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="data set root (default: a synthetic one in a temporary folder)")
    parser.add_argument("--split", default="train", choices=("train", "validate", "test"))
    parser.add_argument("--batch-size", type=at_least(1, "--batch-size"), default=64)
    parser.add_argument("--pairs", type=at_least(1, "--pairs"), default=4096, help="synthetic training pairs to generate (default 4096)")
    parser.add_argument("--direct-pairs", type=at_least(1, "--direct-pairs"), default=1000, help="pairs timed for direct reads (default 1000)")
    parser.add_argument("--epochs", type=at_least(1, "--epochs"), default=3, help="timed epochs per loader (default 3)")
    parser.add_argument("--rounds", type=at_least(1, "--rounds"), default=5, help="rounds of every measurement (default 5)")
    return parser


def run_benchmark(args: argparse.Namespace) -> None:
    if args.root is not None:
        run(args.root, args.split, args.batch_size, args.direct_pairs, args.epochs, args.rounds)
        return
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        generate(Path(folder), train=args.pairs, validate=0, test_per_level=1)
        print(f"generated {args.pairs} synthetic pairs in {time.perf_counter() - started:.1f} s")
        run(Path(folder), "train", args.batch_size, args.direct_pairs, args.epochs, args.rounds)


main = benchmark_main(build_parser, run_benchmark)


if __name__ == "__main__":
    sys.exit(main())
