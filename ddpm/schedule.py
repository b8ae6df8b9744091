"""Noise schedules and the coefficient tables derived from them.

Convention (the tutorial's code): time steps ``t = 0 .. T-1``, ``alpha_t = 1 - beta_t``,
``alpha_bar_t = prod_{s <= t} alpha_s`` and ``alpha_bar_{-1} = 1``. Every table is computed
once in float64 and only then cast, so that ``1 - alpha_bar_t`` keeps its precision for the
tiny betas of the tutorial (1e-6) even when the tables are used in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal, get_args

import torch

ScheduleKind = Literal["linear", "cosine"]
SCHEDULES: tuple[str, ...] = get_args(ScheduleKind)

# Floor on beta_tilde before its logarithm: beta_tilde_0 is exactly 0 (Appendix B, Listing 27).
LOG_VARIANCE_FLOOR = 1e-20
# Nichol & Dhariwal (2021) clip the cosine betas below 1 so the last steps stay invertible.
COSINE_MAX_BETA = 0.999
COSINE_OFFSET = 0.008


def linear_betas(steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """The tutorial's linear schedule: ``steps`` betas from ``beta_start`` to ``beta_end``, float64 [T]."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)


def cosine_betas(steps: int, offset: float = COSINE_OFFSET) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17): alpha_bar follows cos^2, float64 [T]."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    s = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=COSINE_MAX_BETA)


def make_betas(kind: ScheduleKind, steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Betas of the named schedule (``beta_start``/``beta_end`` apply to ``linear`` only)."""
    if kind == "linear":
        return linear_betas(steps, beta_start, beta_end)
    if kind == "cosine":
        return cosine_betas(steps)
    raise ValueError(f"unknown noise schedule {kind!r}; choose one of {SCHEDULES}")


def log_alpha_bar(beta: torch.Tensor) -> torch.Tensor:
    """``log alpha_bar_t = sum_{s <= t} log(1 - beta_s)`` of betas [T], in float64 on ``beta``'s device.

    Summing logs keeps ``1 - alpha_bar`` (``-expm1`` of it) to full relative precision: with beta_0 = 1e-6,
    ``1 - cumprod(alpha)`` would lose ten digits and bias the posterior coefficients by 1e-10. The tables and
    the DDIM and DPM-Solver++ coefficients all start from it."""
    return torch.cumsum(torch.log1p(-beta.to(torch.float64)), dim=0)


@dataclass(frozen=True)
class ScheduleTables:
    """Every per-step coefficient the diffusion needs, each a tensor [T].

    Built by :meth:`from_betas` in float64; :meth:`to` casts them all at once.
    """

    beta: torch.Tensor
    alpha: torch.Tensor
    alpha_bar: torch.Tensor
    alpha_bar_prev: torch.Tensor
    sqrt_alpha: torch.Tensor
    sqrt_alpha_bar: torch.Tensor
    sqrt_one_minus_alpha_bar: torch.Tensor
    # Eq. 7 / 27: x0 = x0_coef_xt * x_t - x0_coef_noise * noise
    x0_coef_xt: torch.Tensor
    x0_coef_noise: torch.Tensor
    # Eq. 5 / 26: mu_tilde = posterior_coef_x0 * x0 + posterior_coef_xt * x_t
    posterior_coef_x0: torch.Tensor
    posterior_coef_xt: torch.Tensor
    # Eq. 8 / 10: mu = (x_t - eps_coef * eps) / sqrt(alpha)
    eps_coef: torch.Tensor
    # Eq. 6 and its logarithm, floored because beta_tilde_0 = 0.
    beta_tilde: torch.Tensor
    log_beta_tilde: torch.Tensor
    log_beta: torch.Tensor

    @classmethod
    def from_betas(cls, beta: torch.Tensor) -> "ScheduleTables":
        """Derive all tables from betas [T] (computed in float64 whatever ``beta``'s dtype)."""
        beta = beta.to(torch.float64)
        alpha = 1.0 - beta
        log_ab = log_alpha_bar(beta)
        alpha_bar = log_ab.exp()
        one_minus_alpha_bar = -torch.expm1(log_ab)
        alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
        one_minus_alpha_bar_prev = torch.cat([alpha_bar.new_zeros(1), one_minus_alpha_bar[:-1]])
        beta_tilde = one_minus_alpha_bar_prev / one_minus_alpha_bar * beta
        return cls(
            beta=beta,
            alpha=alpha,
            alpha_bar=alpha_bar,
            alpha_bar_prev=alpha_bar_prev,
            sqrt_alpha=alpha.sqrt(),
            sqrt_alpha_bar=alpha_bar.sqrt(),
            sqrt_one_minus_alpha_bar=one_minus_alpha_bar.sqrt(),
            x0_coef_xt=(1.0 / alpha_bar).sqrt(),
            x0_coef_noise=(one_minus_alpha_bar / alpha_bar).sqrt(),
            posterior_coef_x0=alpha_bar_prev.sqrt() * beta / one_minus_alpha_bar,
            posterior_coef_xt=alpha.sqrt() * one_minus_alpha_bar_prev / one_minus_alpha_bar,
            eps_coef=beta / one_minus_alpha_bar.sqrt(),
            beta_tilde=beta_tilde,
            log_beta_tilde=beta_tilde.clamp(min=LOG_VARIANCE_FLOOR).log(),
            log_beta=beta.log(),
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ScheduleTables":
        """The same tables on ``device`` in ``dtype``."""
        return type(self)(**{f.name: getattr(self, f.name).to(device=device, dtype=dtype) for f in fields(self)})
