"""Hypothesis strategies shared by the diffusion tests: schedules, time steps, shapes, dtypes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from ddpm import Diffusion

DTYPES = (torch.float32, torch.float64)
# Round-off scale per dtype: the float64 bounds are about 1e-12 relative, float32 about 1e-5.
RELATIVE_TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-5}


@dataclass(frozen=True)
class ScheduleSpec:
    steps: int
    beta_start: float
    beta_end: float
    schedule: str

    def build(self, dtype: torch.dtype = torch.float64) -> Diffusion:
        return Diffusion(
            steps=self.steps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            schedule=self.schedule,
            time_encoding_dim=8,
            dtype=dtype,
        )


@st.composite
def schedules(draw, max_steps: int = 300, linear_only: bool = False) -> ScheduleSpec:
    """A linear schedule with 0 < beta_start < beta_end <= 0.05, or a cosine one (shorter, as its
    last betas approach 1)."""
    kind = "linear" if linear_only else draw(st.sampled_from(["linear", "cosine"]))
    steps = draw(st.integers(1, max_steps if kind == "linear" else min(max_steps, 60)))
    beta_start = draw(st.floats(1e-6, 0.02))
    beta_end = draw(st.floats(beta_start, 0.05).filter(lambda b: b > beta_start))
    return ScheduleSpec(steps, beta_start, beta_end, kind)


@st.composite
def schedule_and_step(draw, **kwargs) -> tuple[ScheduleSpec, int]:
    spec = draw(schedules(**kwargs))
    return spec, draw(st.integers(0, spec.steps - 1))


image_shapes = st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(1, 6), st.integers(1, 6))
dtypes = st.sampled_from(DTYPES)
seeds = st.integers(0, 2**31 - 1)


def gaussian(shape, dtype: torch.dtype, seed: int, scale: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def noisy_sample(spec: ScheduleSpec, t: int, shape, dtype: torch.dtype, seed: int):
    """A clean image in [-1, 1], its noise, and x_t by Eq. 3: ``(diffusion, x0, x_t, noise)``."""
    diffusion = spec.build(dtype)
    x0 = gaussian(shape, dtype, seed).clamp(-1, 1)
    x_t, noise = diffusion.forward_diffusion(x0, t, noise=gaussian(shape, dtype, seed + 1))
    return diffusion, x0, x_t, noise
