"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models", arXiv:2211.01095): the multistep second-order solver of the probability-flow
ODE in its data-prediction form, on the same trained noise predictor as every sampler.

With ``alpha_t = sqrt(alpha_bar_t)``, ``sigma_t = sqrt(1 - alpha_bar_t)`` and the half log-SNR
``lambda_t = log(alpha_t / sigma_t)``, the data prediction ``x0_t`` is Eq. 7 / 27 of the tutorial
(clamped to [-1, 1] with ``clamp``, as the tutorial's samplers do). A step from ``s`` to ``t`` with
``h = lambda_t - lambda_s`` is

    x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D                (Lu et al., Eq. 5 / Algorithm 2)

with ``D = x0_s`` for the first-order step (DPM-Solver++1, which is DDIM, Song et al. Eq. 12 with
eta = 0) and, once a previous data prediction ``x0_r`` (at ``r``, the step before ``s``) exists,

    r_i = h_{i-1} / h_i,   D = (1 + 1 / (2 r_i)) x0_s - 1 / (2 r_i) x0_r      (Algorithm 2, "2M")

Every step is thus linear in the state and the last two data predictions: ``x_t = a x_s + b x0_s +
c x0_r``. :func:`multistep_rows` computes ``(a, b, c)`` of a chain once, in float64 through
``log alpha_bar`` and ``expm1``, and both :class:`DPMSolverSampler` and the exported TorchScript sampler
run from these numbers.

The chain: ``N`` network evaluations at ``ddim_timesteps(T, N + 1)`` without its last step ``0``; the
last step lands on the clean end (``alpha_bar = 1``, ``lambda = +inf``), where the update is the data
prediction itself: first order, as DDIM's last step, and as Lu et al. advise for fewer than 15 steps
("lower order final"). An evaluation at ``t = 0``, where ``sigma_0 = sqrt(beta_0)`` leaves almost nothing
to denoise, is not spent: DDIM's uniform chain on N evaluations spends its last there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch

from .ddim import SPACINGS, Spacing, ddim_timesteps
from .diffusion import Diffusion
from .samplers import Sampler, StepFn, register_sampler
from .schedule import log_alpha_bar
from .settings import check_choice

# Network evaluations when none are given: the quality study's choice (docs/sampling.md).
DEFAULT_SOLVER_STEPS = 4
ORDERS = (1, 2)
# Where a chain's last step lands: step -1, alpha_bar_{-1} = 1, lambda = +inf: the data prediction itself.
CLEAN = -1


@dataclass(frozen=True)
class MultistepRow:
    """One step ``x_next = a x + b x0 + c x0_previous`` of a chain (``c = 0`` for a first-order step)."""

    a: float
    b: float
    c: float


def multistep_update(x: torch.Tensor, x0: torch.Tensor, previous: torch.Tensor, a: float, b: float,
                     c: float) -> torch.Tensor:
    """One step of a linear multistep chain, ``a x + b x0 + c x0_previous`` (:class:`MultistepRow`; ``c = 0``: a
    first-order step, ``previous`` unused). The eager sampler and the exported TorchScript sampler both step
    with it."""
    x = a * x + b * x0
    if c != 0.0:
        x = x + c * previous
    return x


def multistep_rows(diffusion: Diffusion, timesteps: Sequence[int], targets: Sequence[int], order: int = 2) -> list[MultistepRow]:
    """The step coefficients of a chain evaluated at ``timesteps`` whose step ``i`` lands on ``targets[i]``.

    Args:
        timesteps: the evaluated steps, descending, within ``0 .. T - 1``.
        targets: where each step lands: the next evaluated step, or :data:`CLEAN` (``-1``, ``alpha_bar =
            1``: the step returns the data prediction, first order since ``h`` is infinite), as every
            chain's last step does.
        order: 1 (DPM-Solver++1: every step is a deterministic DDIM step) or 2 (2M: every step after
            the first, and not into ``-1``, uses the previous data prediction too).
    """
    if order not in ORDERS:
        raise ValueError(f"DPM-Solver++ order must be one of {ORDERS}, got {order}")
    steps, ends = list(timesteps), list(targets)
    if len(steps) != len(ends) or any(end >= step for step, end in zip(steps, ends)):
        raise ValueError(f"each target must lie below its step: steps {steps}, targets {ends}")
    log_ab = log_alpha_bar(diffusion.tables.beta.detach().cpu())

    def log_alpha_sigma(t: int) -> tuple[float, float]:
        """(log alpha_t, log sigma_t), from log alpha_bar_t without cancellation."""
        value = float(log_ab[t])
        return 0.5 * value, 0.5 * math.log(-math.expm1(value))

    rows, previous_h = [], None
    for step, end in zip(steps, ends):
        log_alpha_s, log_sigma_s = log_alpha_sigma(step)
        if end == CLEAN:
            rows.append(MultistepRow(0.0, 1.0, 0.0))
            continue
        log_alpha_t, log_sigma_t = log_alpha_sigma(end)
        h = (log_alpha_t - log_sigma_t) - (log_alpha_s - log_sigma_s)
        a = math.exp(log_sigma_t - log_sigma_s)  # sigma_t / sigma_s
        phi = -math.expm1(-h) * math.exp(log_alpha_t)  # -alpha_t (e^{-h} - 1)
        if order == 2 and previous_h is not None:
            half_inverse_r = h / (2.0 * previous_h)  # 1 / (2 r_i), r_i = h_{i-1} / h_i
            rows.append(MultistepRow(a, phi * (1.0 + half_inverse_r), -phi * half_inverse_r))
        else:
            rows.append(MultistepRow(a, phi, 0.0))
        previous_h = h
    return rows


@register_sampler
@dataclass(frozen=True)
class DPMSolverSampler(Sampler):
    """DPM-Solver++(2M), deterministic (see the module docstring for the equations).

    Args:
        sampling_steps: network evaluations (None: :data:`DEFAULT_SOLVER_STEPS`, at most T - 1), spread
            by ``spacing`` over ``T - 1 .. 1`` as :func:`ddpm.ddim.ddim_timesteps` spreads ``N + 1`` steps.
        spacing: ``"uniform"`` (the default, as DDIM's) or ``"quadratic"``.
        clamp: clamp each data prediction (and so the output, the last one) to [-1, 1].
        order: 2 (2M, the default) or 1 (every step a DDIM step: for comparison).
    """

    name: ClassVar[str] = "dpmpp2m"
    sampling_steps: int | None = None
    spacing: Spacing = "uniform"
    clamp: bool = True
    order: int = 2

    def __post_init__(self) -> None:
        check_choice("DPM-Solver++ spacing", self.spacing, SPACINGS)
        if self.order not in ORDERS:
            raise ValueError(f"DPM-Solver++ order must be one of {ORDERS}, got {self.order}")

    def chain(self, steps_total: int) -> list[int]:
        if steps_total < 2:
            raise ValueError("DPM-Solver++ needs a model of at least 2 trained steps (it never evaluates step 0)")
        wanted = min(DEFAULT_SOLVER_STEPS, steps_total - 1) if self.sampling_steps is None else self.sampling_steps
        if not 1 <= wanted <= steps_total - 1:
            raise ValueError(f"the number of DPM-Solver++ steps must be within 1..{steps_total - 1} "
                             f"(the trained steps T, less step 0, which it never evaluates), got {wanted}")
        return ddim_timesteps(steps_total, wanted + 1, self.spacing)[:-1]

    draws_noise = False

    def rows(self, diffusion: Diffusion, timesteps: Sequence[int]) -> list[MultistepRow]:
        """The coefficients of a chain along ``timesteps`` (as :meth:`chain` returns)."""
        return multistep_rows(diffusion, timesteps, [*timesteps[1:], CLEAN], self.order)

    def stepper(self, diffusion: Diffusion, timesteps: Sequence[int]) -> StepFn:
        rows = dict(zip(timesteps, self.rows(diffusion, timesteps)))
        previous: list[torch.Tensor] = []  # the data prediction of the step before; one chain's state

        def step(x_t: torch.Tensor, t: int, t_prev: int, predicted_noise: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
            x0 = diffusion.predict_x0(x_t, t, predicted_noise)
            if self.clamp:
                x0 = x0.clamp(-1.0, 1.0)
            row = rows[t]
            x = multistep_update(x_t, x0, previous[0] if previous else x0, row.a, row.b, row.c)
            previous[:] = [x0]
            return x

        return step
