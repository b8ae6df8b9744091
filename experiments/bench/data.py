"""Data loading speed: pairs/s from direct TIF reads and from the memory-mapped cache.

    python -m experiments.bench.data [--root DATA] [--split train] [--batch-size 64]

Without --root, a synthetic data set (``experiments.data.synthetic``) is generated in a temporary folder.
The cache is timed through torch DataLoaders, steady state (after one warm-up epoch, with persistent
workers), for num_workers 0 and 2 and for both batched paths: ``make_loader`` (a BatchSampler hands
the dataset whole index lists) and a plain ``DataLoader(batch_size=...)`` (``__getitems__``, then
default collation). The target is at least 20,000 pairs/s on a 2-core CPU.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from experiments.data import PairedImageDataset, make_loader
from experiments.data.synthetic import generate


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


def run(root: Path, split: str, batch_size: int, direct_pairs: int, epochs: int) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"data: {root} ({split}); {os.cpu_count()} CPUs, load average {load} (other work slows every figure)")
    print(f"direct TIF reads (cache=False):      {direct_read_rate(root, split, direct_pairs):>10,.0f} pairs/s")
    started = time.perf_counter()
    dataset = PairedImageDataset(root, split, cache=True)
    print(f"cache ready in {time.perf_counter() - started:.1f} s ({len(dataset)} pairs of {dataset.image_shape})")
    for workers in (0, 2):
        options = {"num_workers": workers, "persistent_workers": workers > 0}
        loaders = {
            "make_loader (BatchSampler)": make_loader(dataset, batch_size, shuffle=True, **options),
            "DataLoader(batch_size) __getitems__": DataLoader(dataset, batch_size, shuffle=True, **options),
        }
        for name, loader in loaders.items():
            rate, cpu_rate = loader_rate(loader, epochs)
            cpu = f", {cpu_rate:,.0f} per CPU-second" if workers == 0 else ""
            print(f"cache, {name}, num_workers={workers}: {rate:>8,.0f} pairs/s (batch {batch_size}{cpu})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="data set root (default: a synthetic one in a temporary folder)")
    parser.add_argument("--split", default="train", choices=("train", "validate", "test"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=4096, help="synthetic training pairs to generate (default 4096)")
    parser.add_argument("--direct-pairs", type=int, default=1000, help="pairs timed for direct reads (default 1000)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per loader (default 3)")
    args = parser.parse_args(argv)
    if args.root is not None:
        run(args.root, args.split, args.batch_size, args.direct_pairs, args.epochs)
        return
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        generate(Path(folder), train=args.pairs, validate=0, test_per_level=0)
        print(f"generated {args.pairs} synthetic pairs in {time.perf_counter() - started:.1f} s")
        run(Path(folder), "train", args.batch_size, args.direct_pairs, args.epochs)


if __name__ == "__main__":
    main()
