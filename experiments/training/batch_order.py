"""The order in which training pairs are visited: seeded per epoch, sharded per rank, resumable."""

from __future__ import annotations

from typing import Iterator

import torch

from ddpm.settings import UsageError


class EpochBatches:
    """Batches of indices for one epoch, as a DataLoader ``sampler`` (with ``batch_size=None``).

    The permutation depends only on ``(seed, epoch)``, so a resumed run visits the same pairs in the
    same order; ``start_batch`` skips the batches a run finished before it stopped. With several
    ranks each takes every ``world_size``-th batch of the same permutation, so the global batch of
    one step is the same whether it is split across processes or not.

    Args:
        num_items: size of the data set.
        batch_size: pairs per batch on this rank.
        seed, epoch: the permutation.
        rank, world_size: this process's share.
        start_batch: number of this rank's batches to skip.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        if num_items < batch_size * world_size:
            raise UsageError(
                f"{num_items} training pairs cannot fill one batch of {batch_size} on each of "
                f"{world_size} process(es); lower --batch-size or add data"
            )
        self.num_items, self.batch_size = num_items, batch_size
        self.seed, self.epoch = seed, epoch
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch

    def batches_per_epoch(self) -> int:
        """As the tutorial's DataLoader, a last short batch is kept by one process; several
        processes keep full global batches only, since a short one would give ranks unequal work."""
        if self.world_size == 1:
            return -(-self.num_items // self.batch_size)
        return self.num_items // (self.batch_size * self.world_size)

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_items, generator=generator).tolist()
        global_batch = self.batch_size * self.world_size
        for b in range(self.start_batch, self.batches_per_epoch()):
            chunk = order[b * global_batch : (b + 1) * global_batch]
            yield chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
