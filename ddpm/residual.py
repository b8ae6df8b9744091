"""Predict and refine: a diffusion model of the residual of a deterministic prediction.

Whang et al., "Deblurring via Stochastic Refinement" (CVPR 2022); the same split as ResShift (NeurIPS 2023)
and the residual flow matching of ResMatching (ISBI 2026). A regression network gives ``base``, its estimate
of the target x0 from the condition c; the diffusion models what it leaves, the residual ``r = x0 - base``,
with the refiner network conditioned on both c and base:

    training:  the loss of Eq. 12-13 on x0 := r, with the condition [c, base]
    sampling:  r ~ the reverse chain conditioned on [c, base];  image = clamp(base + r, -1, 1)

The samplers run unchanged on r (their data predictions clamped to [-1, 1] as always: a residual beyond that
would mean a base wrong by half the target's range). A refiner that predicts a zero residual returns the
base itself, so the model is never worse in expectation than its regression part by construction of the
target, and its samples spread around the base by what the regression cannot know.
"""

from __future__ import annotations

import torch


def refiner_condition(condition: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """The refiner's condition: the input [B, C, H, W] and the base [B, 1, H, W], as channels ``[c, base]``."""
    return torch.cat([condition, base.to(condition.dtype)], dim=1)


def residual_of(x0: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """The refiner's training target: ``x0 - base``."""
    return x0 - base.to(x0.dtype)


def refined(residual: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """The image a sampled ``residual`` gives: ``clamp(base + residual, -1, 1)``, the target's range (``base``
    broadcasts over leading sample dimensions of ``residual``)."""
    return (base.to(residual.dtype) + residual).clamp(-1.0, 1.0)
