"""Means over seeds with their 95 % confidence intervals, and paired differences between two arms.

With n seeds the interval is ``mean ± t(0.975, n - 1) s / sqrt(n)`` (Student's t, ``s`` the sample
standard deviation): it says how far the mean over seeds could lie from the one that infinitely many
seeds would give. A paired difference takes the two arms' values of the same seed (same data order,
same initial weights draw, same sampling noise), so the seed-to-seed variation common to both cancels.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

# Student's t quantile at 0.975 for 1..30 degrees of freedom (any statistics table).
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
          2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
          2.045, 2.042)
_Z_975 = 1.959964


def t_quantile_975(degrees: int) -> float:
    """Student's t quantile at 0.975 for ``degrees`` >= 1: the table up to 30, then the Cornish-Fisher
    expansion around the normal quantile (within 1e-3 of the exact value beyond 30)."""
    if degrees < 1:
        raise ValueError(f"a t quantile needs at least 1 degree of freedom, got {degrees}")
    if degrees <= len(_T_975):
        return _T_975[degrees - 1]
    z = _Z_975
    return z + (z**3 + z) / (4 * degrees) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * degrees**2)


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values and the half-width of its 95 % interval (None for a single value)."""

    mean: float
    half_width: float | None
    n: int

    def format(self, digits: int = 3) -> str:
        if self.half_width is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"

    def to_json(self) -> dict:
        return {"mean": self.mean, "ci95_half_width": self.half_width, "n": self.n}


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean of ``values`` (finite numbers, one per seed) and its 95 % interval."""
    values = [float(v) for v in values]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"a mean over seeds needs finite values, got {values}")
    if len(values) == 1:
        return Interval(values[0], None, 1)
    spread = statistics.stdev(values)  # divisor n - 1
    return Interval(statistics.fmean(values), t_quantile_975(len(values) - 1) * spread / math.sqrt(len(values)),
                    len(values))


def paired_difference(first: dict[int, float], second: dict[int, float]) -> Interval | None:
    """``first - second`` over the seeds both hold (seed -> value), with its 95 % interval; None when
    they share no seed."""
    seeds = sorted(set(first) & set(second))
    return mean_interval([first[seed] - second[seed] for seed in seeds]) if seeds else None
