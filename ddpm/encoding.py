"""Sinusoidal time encoding (tutorial Section 4.6, Listing 11)."""

from __future__ import annotations

import torch

ENCODING_BASE = 10000.0


def positional_encoding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Listing 11: encode integer time steps as ``[sin(t w_k), cos(t w_k)]``, sines first.

    ``w_k = 1 / 10000^(2k / dim)`` for ``k = 0 .. dim/2 - 1``.

    Args:
        t: time steps, shape [B] (or [B, 1], as in the tutorial), any integer or float dtype.
        dim: even encoding width.

    Returns:
        float32 tensor [B, dim] on ``t``'s device. ``t = 0`` gives ``dim/2`` zeros then ``dim/2`` ones.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"the time-encoding width must be an even number >= 2, got {dim}")
    t = t.reshape(-1, 1).to(torch.float32)
    k = torch.arange(0, dim, 2, device=t.device, dtype=torch.float32)
    inv_freq = 1.0 / ENCODING_BASE ** (k / dim)
    angles = t * inv_freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
