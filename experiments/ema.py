"""Exponential moving average of a network's weights (Polyak averaging, as in Ho et al. 2020)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A shadow copy of ``model`` whose weights follow ``w_ema <- decay w_ema + (1 - decay) w``.

    Sampling from the averaged weights gives smoother, usually better images than the last
    optimiser step's. The shadow is a complete module (``ema.model``), so its ``state_dict`` loads
    into a plain network for prediction.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must lie strictly between 0 and 1, got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move every floating-point parameter and buffer a step towards ``model``'s."""
        ours = self.model.state_dict()
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                ours[name].lerp_(value, 1.0 - self.decay)
            else:
                ours[name].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
