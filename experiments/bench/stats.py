"""Summaries of repeated benchmark rounds: median with spread, per-round ratios and the verdict rule.

Pure functions on plain numbers, so that what the benchmark claims can be checked by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, TypeVar

T = TypeVar("T")

# The verdict when the per-round ratios straddle 1.
NO_DIFFERENCE = "no difference beyond the spread"


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0 <= q <= 1) of ``values`` by linear interpolation between order statistics.

    Hyndman & Fan (1996) definition 7 (numpy's default): position ``q * (n - 1)`` in the sorted values,
    interpolated between its two neighbours.
    """
    if not values:
        raise ValueError("quantile of no values: measure at least one round")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile q = {q} lies outside [0, 1]")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (position - below) * (ordered[above] - ordered[below])


@dataclass(frozen=True)
class Spread:
    """Median, interquartile range (``q1``-``q3``) and range (``low``-``high``) of repeated measurements."""

    median: float
    q1: float
    q3: float
    low: float
    high: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def spread(values: Sequence[float]) -> Spread:
    """Median, quartiles (:func:`quantile`) and extremes of ``values`` (one per round)."""
    return Spread(
        median=quantile(values, 0.5), q1=quantile(values, 0.25), q3=quantile(values, 0.75),
        low=min(values), high=max(values),
    )


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-round ratios ``numerators[i] / denominators[i]``: both measured in the same round i."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} rounds against {len(denominators)}: ratios pair rounds one to one")
    return [a / b for a, b in zip(numerators, denominators)]


def verdict(round_ratios: Sequence[float]) -> str:
    """"gain" only when every per-round ratio exceeds 1, "loss" only when every one is below 1.

    Otherwise the range of the ratios covers 1 and the benchmark cannot tell the two apart.
    """
    if not round_ratios:
        raise ValueError("verdict of no rounds: measure at least one round")
    if min(round_ratios) > 1.0:
        return "gain"
    if max(round_ratios) < 1.0:
        return "loss"
    return NO_DIFFERENCE


def round_order(items: Sequence[T], round_index: int) -> list[T]:
    """The measurement order of round ``round_index``: as given in even rounds, reversed in odd ones.

    Alternating (AB, BA, AB, ...) makes a drift of the machine's load within a round hit every item
    at the start and at the end equally often.
    """
    return list(items) if round_index % 2 == 0 else list(reversed(items))
