"""DDIM sampling (Song, Meng & Ermon 2021): the same trained noise predictor, far fewer steps.

A DDIM step jumps from step ``t`` to any earlier step ``t_prev`` of a chosen subset of the T trained
steps (Song et al., Eq. 12 and 16):

    x0     = Eq. 7 / 27 from x_t and the predicted noise, optionally clamped to [-1, 1]
    sigma  = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * sqrt(1 - alpha_bar_t / alpha_bar_prev)
    x_prev = sqrt(alpha_bar_prev) x0 + sqrt(1 - alpha_bar_prev - sigma^2) noise + sigma z

with ``alpha_bar_prev = alpha_bar_{t_prev}`` and ``alpha_bar_{-1} = 1`` after the last step, where
the step returns x0 itself. ``eta = 0`` is deterministic given x_T; ``eta = 1`` on all T steps has
the mean and variance of the x0-reconstruction sampler of Appendix B with beta_tilde.

The step coefficients are computed once per chain, in float64, and used as Python floats: the
loop then neither gathers from tables nor synchronises with the device, and
``1 - alpha_bar_t / alpha_bar_prev`` (as small as beta_0 = 1e-6 on the tutorial's schedule) keeps
its precision even when the model runs in float32.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Literal, Sequence, get_args

import torch

from .diffusion import Diffusion
from .schedule import log_alpha_bar
from .settings import check_choice

Spacing = Literal["uniform", "quadratic"]
SPACINGS: tuple[str, ...] = get_args(Spacing)
DEFAULT_DDIM_STEPS = 50
# Exponent of the spacing curve: "quadratic" crowds the steps towards t = 0, where the image takes
# its fine detail (Song et al. use it for CIFAR-10).
_SPACING_POWER = {"uniform": 1, "quadratic": 2}


# ------------------------------------------------------------------ time steps
def ddim_timesteps(steps_total: int, sampling_steps: int, spacing: Spacing = "uniform") -> list[int]:
    """``sampling_steps`` of the trained steps ``0 .. steps_total - 1``, in sampling (descending) order.

    Both ends are always included: the chain starts at ``T - 1``, where x_T ~ N(0, I) is what the
    model was trained on, and ends at ``0``, the least noisy prediction of x0. The steps between
    are ``t_i = i + round(f(i / (n - 1)) * (T - n))`` with ``f(u) = u`` (``"uniform"``: evenly
    spaced, ``round(i (T - 1) / (n - 1))``) or ``f(u) = u^2`` (``"quadratic"``), which is strictly
    increasing in ``i`` by construction, so there are never duplicates.

    Returns:
        ``sampling_steps`` distinct ints, from ``T - 1`` down to ``0`` (just ``[T - 1]`` for one step).
    """
    check_choice("DDIM spacing", spacing, SPACINGS)
    if not 1 <= sampling_steps <= steps_total:
        raise ValueError(
            f"the number of DDIM steps must be within 1..{steps_total} (the trained steps T), got {sampling_steps}"
        )
    if sampling_steps == 1:
        return [steps_total - 1]
    power, last, extra = _SPACING_POWER[spacing], sampling_steps - 1, steps_total - sampling_steps
    # Integer round-half-up of extra * (i / last)^power: exact, with no float ties.
    ascending = [i + (2 * extra * i**power + last**power) // (2 * last**power) for i in range(sampling_steps)]
    return ascending[::-1]


def check_timesteps(timesteps: Sequence[int], steps_total: int) -> list[int]:
    """Validate a user-chosen subset of the trained steps and return it in sampling (descending) order.

    The steps must be distinct integers within ``0 .. steps_total - 1``; their order does not matter.
    Sampling starts from x_T ~ N(0, I), so the largest step should be ``T - 1`` (or close to it).
    """
    try:
        steps = [operator.index(t) for t in timesteps]
    except TypeError:
        raise TypeError(f"DDIM timesteps must be integers, got {list(timesteps)!r}") from None
    if not steps:
        raise ValueError("DDIM timesteps are empty; give at least one trained step, e.g. [T - 1]")
    outside = sorted({t for t in steps if not 0 <= t < steps_total})
    if outside:
        raise ValueError(
            f"DDIM timesteps must lie within 0..{steps_total - 1} (the trained steps); got {outside}"
        )
    if len(set(steps)) != len(steps):
        repeated = sorted({t for t in steps if steps.count(t) > 1})
        raise ValueError(f"DDIM timesteps must be distinct; repeated: {repeated}")
    return sorted(steps, reverse=True)


# ------------------------------------------------------------------ one step
def check_eta(eta: float) -> None:
    """DDIM's eta scales the noise of each step between none (0) and the DDPM posterior's (1)."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"DDIM eta must be within [0, 1] (0: deterministic, 1: DDPM-like), got {eta}")


@dataclass(frozen=True)
class DDIMCoefficients:
    """The numbers of one DDIM step ``t -> t_prev`` (Song et al., Eq. 12 and 16), from float64."""

    x0_coef: float  # sqrt(alpha_bar_prev)
    noise_coef: float  # sqrt(1 - alpha_bar_prev - sigma^2)
    sigma: float  # eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * sqrt(1 - alpha_bar_t / alpha_bar_prev)


def ddim_coefficients(diffusion: Diffusion, timesteps: Sequence[int], eta: float) -> dict[int, DDIMCoefficients]:
    """Coefficients of every step of a chain along ``timesteps`` (descending, as run by the sampler).

    The step from ``timesteps[i]`` goes to ``timesteps[i + 1]``, and the last one to ``-1``
    (``alpha_bar_{-1} = 1``: x0 itself, with no noise). Computed in float64 from the betas through
    ``log alpha_bar`` and ``expm1``, so that ``1 - alpha_bar`` and ``1 - alpha_bar_t / alpha_bar_prev``
    keep full relative precision.

    Args:
        timesteps: distinct steps in ``0 .. T - 1``, descending (see :func:`ddim_timesteps`).
        eta: 0 (deterministic DDIM) .. 1 (the variance of the DDPM posterior on consecutive steps).

    Returns:
        ``{t: DDIMCoefficients}`` for each ``t`` in ``timesteps``.
    """
    check_eta(eta)
    steps = list(timesteps)
    if steps != check_timesteps(steps, diffusion.steps):
        raise ValueError(f"DDIM timesteps must be in descending (sampling) order, got {steps}")
    log_ab = log_alpha_bar(diffusion.tables.beta.detach().cpu())
    log_now = log_ab[steps]
    # alpha_bar_{-1} = 1, i.e. log 0, after the last step.
    log_prev = torch.cat([log_ab[steps[1:]], log_now.new_zeros(1)])
    one_minus_now = -torch.expm1(log_now)
    one_minus_prev = -torch.expm1(log_prev)
    one_minus_ratio = -torch.expm1(log_now - log_prev)
    eta_one_variance = one_minus_prev / one_minus_now * one_minus_ratio
    variance = eta**2 * eta_one_variance
    # eta <= 1 keeps the variance below 1 - alpha_bar_prev; the floor only absorbs round-off.
    noise_coef = (one_minus_prev - variance).clamp(min=0.0).sqrt()
    # eta scales sigma itself: eta**2 underflows to 0 for eta below about 1e-162, eta * sqrt(..) does not.
    sigma = eta * eta_one_variance.sqrt()
    rows = zip(steps, log_prev.mul(0.5).exp().tolist(), noise_coef.tolist(), sigma.tolist())
    return {t: DDIMCoefficients(x0_coef, noise, sigma) for t, x0_coef, noise, sigma in rows}


def ddim_step(
    diffusion: Diffusion,
    x_t: torch.Tensor,
    t: int,
    predicted_noise: torch.Tensor,
    z: torch.Tensor | None,
    coefficients: DDIMCoefficients,
    clamp: bool = True,
) -> torch.Tensor:
    """One DDIM step, Song et al. Eq. 12: ``sqrt(alpha_bar_prev) x0 + sqrt(1 - alpha_bar_prev - sigma^2) noise + sigma z``.

    x0 comes from Eq. 7 / 27. With ``clamp`` it is clamped to [-1, 1] and the noise re-derived from
    Eq. 3 so that x0 and the noise still add up to x_t (as Song et al.'s code does): then, with
    eta = 1 on consecutive steps, the step equals Appendix B's, with or without the clamp.

    Args:
        x_t: noisy images [B, C, H, W] at step ``t`` (a Python int, the same for the whole batch).
        predicted_noise: the model's noise estimate [B, C, H, W].
        z: standard Gaussian noise [B, C, H, W]; ``None`` (or ``sigma = 0``) adds none.
        coefficients: this step's numbers, from :func:`ddim_coefficients`.

    Returns:
        x_{t_prev} [B, C, H, W]; x0 itself on the last step (``t_prev = -1``).
    """
    x0 = diffusion.predict_x0(x_t, t, predicted_noise)
    noise = predicted_noise
    if clamp:
        x0 = x0.clamp(-1.0, 1.0)
        tables = diffusion.tables
        noise = (x_t - tables.sqrt_alpha_bar[t] * x0) / tables.sqrt_one_minus_alpha_bar[t]
    x_prev = coefficients.x0_coef * x0 + coefficients.noise_coef * noise
    if z is None or coefficients.sigma == 0.0:
        return x_prev
    return x_prev + coefficients.sigma * z
