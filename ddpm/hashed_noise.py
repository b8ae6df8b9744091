"""Standard Gaussian noise as a pure function of (seed, pixel position): no random state at all.

A counter-based generator (the idea of Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2,
3"): each value is a hash of its own coordinates, so the same pixel gets the same number whatever the
image size, the crop, the device or the order of evaluation, and a field over a whole image cropped
to a tile equals the field drawn for that tile at its offset. It is written in plain integer tensor
ops so that it compiles with ``torch.jit.script``, for a sampler exported to tools that seed nothing
(deepImageJ, ilastik).

Hash: Wellons' ``lowbias32`` 32-bit integer mixer (xor-shift, multiply, xor-shift, multiply,
xor-shift), chained over the coordinates ``(seed, stream, b, c, y, x)``. Two streams give two
uniforms ``u1 in (0, 1)`` and ``u2 in [0, 1)``, and Box-Muller turns them into one standard normal
value ``z = sqrt(-2 ln u1) cos(2 pi u2)``, computed in float64 and rounded to float32.
"""

from __future__ import annotations

from typing import List

import torch

# The constants are written out in the functions: TorchScript cannot read module-level globals.
# 0xFFFFFFFF masks to 32 bits; 0x7FEB352D and 0x846CA68B are lowbias32's multipliers (Wellons,
# "Prospecting for hash functions", 2018).


def _multiply_mod32(x: torch.Tensor, multiplier: int) -> torch.Tensor:
    """``x * multiplier mod 2^32`` for int64 ``x`` in [0, 2^32), in 16-bit halves so nothing overflows int64."""
    low = x * (multiplier & 0xFFFF)
    high = ((x * (multiplier >> 16)) & 0xFFFF) * 65536
    return (low + high) & 0xFFFFFFFF


def mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32: a bijection of [0, 2^32) with good avalanche; int64 in, int64 in [0, 2^32) out."""
    x = x & 0xFFFFFFFF
    x = x ^ (x >> 16)
    x = _multiply_mod32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _multiply_mod32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _uniform_bits(seed: int, stream: int, coordinates: List[torch.Tensor]) -> torch.Tensor:
    """32 hashed bits per position, chained as ``h <- mix32(h + coordinate)`` over the coordinates."""
    h = mix32(mix32(torch.tensor(seed & 0xFFFFFFFF, dtype=torch.int64, device=coordinates[0].device)) + stream)
    for coordinate in coordinates:
        h = mix32(h + coordinate)
    return h


def hashed_normal(
    shape: List[int], seed: int, device: torch.device, offset_y: int = 0, offset_x: int = 0
) -> torch.Tensor:
    """Standard normal float32 noise [B, C, H, W], pixel (b, c, y, x) a function of (seed, b, c, offset_y + y, offset_x + x).

    Args:
        shape: ``[B, C, H, W]``.
        seed: any int (taken modulo 2^32).
        offset_y, offset_x: where this field sits in a larger one: ``hashed_normal([1, 1, 8, 8], s, d, 4, 2)``
            equals ``hashed_normal([1, 1, 16, 16], s, d)[..., 4:12, 2:10]``.

    Returns:
        float32 [B, C, H, W] on ``device``, N(0, 1) per pixel (Box-Muller on two hashed uniforms).
    """
    if len(shape) != 4:
        raise ValueError(f"hashed_normal: shape must be [B, C, H, W], got {shape}")
    batch, channels, height, width = shape[0], shape[1], shape[2], shape[3]
    coordinates = [
        torch.arange(batch, dtype=torch.int64, device=device).view(batch, 1, 1, 1),
        torch.arange(channels, dtype=torch.int64, device=device).view(1, channels, 1, 1),
        torch.arange(offset_y, offset_y + height, dtype=torch.int64, device=device).view(1, 1, height, 1),
        torch.arange(offset_x, offset_x + width, dtype=torch.int64, device=device).view(1, 1, 1, width),
    ]
    # +0.5 keeps u1 off 0, where log would be -inf.
    u1 = (_uniform_bits(seed, 0, coordinates).to(torch.float64) + 0.5) / 4294967296.0
    u2 = _uniform_bits(seed, 1, coordinates).to(torch.float64) / 4294967296.0
    normal = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(6.283185307179586 * u2)
    return normal.expand(batch, channels, height, width).to(torch.float32).contiguous()
