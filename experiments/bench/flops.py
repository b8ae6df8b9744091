"""Floating-point operations of a piece of torch code, as torch's own FLOP counter sees them."""

from __future__ import annotations

from typing import Callable

from torch.utils.flop_counter import FlopCounterMode

# What FlopCounterMode counts, for the reader of a printed figure.
COUNTED = "convolutions and matrix products only (torch.utils.flop_counter.FlopCounterMode)"


def count_flops(run: Callable[[], object]) -> int:
    """FLOPs of calling ``run()`` once: a multiply-add counts 2 (a conv of C_in -> C_out channels,
    k x k kernel, on H x W outputs: 2 C_in C_out k^2 H W per image), backward included if ``run``
    calls it. Elementwise operations, normalisation and optimizer steps count 0.
    """
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()
