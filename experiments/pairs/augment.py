"""Dihedral augmentation: the 8 flips / 90-degree rotations of a square image, seeded per sample.

Transform ``k`` in 0..7 rotates by ``k % 4`` quarter turns, then mirrors left-right when ``k >= 4``.
The transform of a sample depends only on (seed, epoch, index), so it is the same whatever the
number of DataLoader workers or the batch a sample lands in.
"""

import numpy as np
import torch

DIHEDRAL_ORDER = 8
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a well-mixed 64-bit hash of each uint64 (wraps modulo 2**64 by design)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def dihedral_choices(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The transform number (0..7) of each sample index, a deterministic hash of (seed, epoch, index)."""
    key = _splitmix64(np.array([seed], dtype=np.uint64) ^ _splitmix64(np.array([epoch], dtype=np.uint64)))
    hashed = _splitmix64(np.asarray(indices, dtype=np.uint64) ^ key)
    return (hashed % np.uint64(DIHEDRAL_ORDER)).astype(np.int64)


def dihedral(image: torch.Tensor, k: int) -> torch.Tensor:
    """Transform ``k`` (0..7) of ``image`` [..., H, W], acting on the last two axes."""
    if not 0 <= k < DIHEDRAL_ORDER:
        raise ValueError(f"dihedral transform number must be in 0..7, got {k}")
    rotated = torch.rot90(image, k % 4, dims=(-2, -1))
    return rotated.flip(-1) if k >= 4 else rotated


def dihedral_batch(batch: torch.Tensor, choices: np.ndarray) -> torch.Tensor:
    """Apply transform ``choices[b]`` to ``batch[b]`` for a batch [B, ..., H, W] of square images."""
    out = torch.empty_like(batch)
    for k in np.unique(choices):
        members = torch.from_numpy(np.flatnonzero(choices == k))
        out[members] = dihedral(batch[members], int(k))
    return out
