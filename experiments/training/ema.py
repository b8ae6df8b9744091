"""Exponential moving average of a network's weights (Polyak averaging, as in Ho et al. 2020)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A shadow copy of ``model`` whose weights follow ``w_ema <- d w_ema + (1 - d) w``, with ``d`` rising
    to ``decay`` over the first steps (:meth:`decay_at`).

    Sampling from the averaged weights gives smoother, usually better images than the last
    optimiser step's. The shadow is a complete module (``ema.model``), so its ``state_dict`` loads
    into a plain network for prediction.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must lie strictly between 0 and 1, got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay used at optimiser step ``step`` (1-based): ``min(decay, (1 + step) / (10 + step))``.

        The warm-up keeps the random initial weights from dominating the average early on: with a
        fixed 0.995, a quarter of the average would still be the initialisation after 256 steps.
        """
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """After optimiser step ``step``, move every floating-point parameter and buffer towards ``model``'s."""
        weight = 1.0 - self.decay_at(step)
        ours = self.model.state_dict()
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                ours[name].lerp_(value, weight)
            else:
                ours[name].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
