"""The forward process: closed form (Eq. 3) against the iterated one-step process (Eq. 2)."""

import math

import pytest
import torch
from hypothesis import given

from strategies import RELATIVE_TOLERANCE, dtypes, gaussian, image_shapes, schedule_and_step, seeds


@given(spec_t=schedule_and_step(), shape=image_shapes, dtype=dtypes, seed=seeds)
def test_signal_part_iterated_with_zero_noise_is_sqrt_alpha_bar_x0(spec_t, shape, dtype, seed):
    spec, t = spec_t
    diffusion = spec.build(dtype)
    x0 = gaussian(shape, dtype, seed)
    zeros = torch.zeros(t + 1, *shape, dtype=dtype)
    iterated = diffusion.forward_trajectory(x0, t + 1, noises=zeros)[-1]
    closed, _ = diffusion.forward_diffusion(x0, t, noise=torch.zeros_like(x0))
    # Each of the t + 1 multiplications rounds once.
    rtol = 4 * torch.finfo(dtype).eps * (t + 2)
    torch.testing.assert_close(iterated, closed, rtol=rtol, atol=1e-30)


@given(spec_t=schedule_and_step(max_steps=120), seed=seeds)
def test_noise_part_is_linear_and_its_squared_coefficients_sum_to_one_minus_alpha_bar(spec_t, seed):
    """From x0 = 0, the iterated process is a linear map of the step noises; the coefficient of step
    s's noise in x_t is read off by feeding a unit noise at step s alone."""
    spec, t = spec_t
    diffusion = spec.build(torch.float64)
    x0 = torch.zeros(1, 1, 1, 1, dtype=torch.float64)
    run = lambda noises: diffusion.forward_trajectory(x0, t + 1, noises=noises)[-1]

    noises_a = gaussian((t + 1, 1, 1, 1, 1), torch.float64, seed)
    noises_b = gaussian((t + 1, 1, 1, 1, 1), torch.float64, seed + 1)
    torch.testing.assert_close(run(2.5 * noises_a - 0.5 * noises_b), 2.5 * run(noises_a) - 0.5 * run(noises_b))

    coefficients = []
    for s in range(t + 1):
        unit = torch.zeros(t + 1, 1, 1, 1, 1, dtype=torch.float64)
        unit[s] = 1.0
        coefficients.append(run(unit).item())
    total = sum(c * c for c in coefficients)
    one_minus_alpha_bar = 1.0 - diffusion.tables.alpha_bar[t].item()
    assert total == pytest.approx(one_minus_alpha_bar, rel=1e-10, abs=1e-15)


@pytest.mark.parametrize("t", [0, 10, 99, 199])
def test_monte_carlo_moments_of_iterated_process_match_closed_form(t):
    """Mean and variance of x_t over n samples of the iterated chain, within 5 standard errors:
    the mean's is sqrt(var / n), the sample variance's is var * sqrt(2 / (n - 1)) (Gaussian)."""
    from ddpm import Diffusion

    n = 20000
    diffusion = Diffusion(steps=200, beta_start=1e-4, beta_end=0.05, dtype=torch.float64)
    x0 = torch.full((n, 1, 1, 1), 0.7, dtype=torch.float64)
    x_t = diffusion.forward_trajectory(x0, t + 1, generator=torch.Generator().manual_seed(t))[-1]
    alpha_bar = diffusion.tables.alpha_bar[t].item()
    mean, var = math.sqrt(alpha_bar) * 0.7, 1.0 - alpha_bar
    assert abs(x_t.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(x_t.var().item() - var) < 5 * var * math.sqrt(2 / (n - 1))


@given(spec_t=schedule_and_step(), shape=image_shapes, dtype=dtypes, seed=seeds)
def test_closed_form_returns_the_noise_it_used(spec_t, shape, dtype, seed):
    spec, t = spec_t
    diffusion = spec.build(dtype)
    x0 = gaussian(shape, dtype, seed)
    x_t, noise = diffusion.forward_diffusion(x0, t, generator=torch.Generator().manual_seed(seed))
    again, _ = diffusion.forward_diffusion(x0, t, noise=noise)
    assert torch.equal(x_t, again)
    # Eq. 7 inverts Eq. 3.
    torch.testing.assert_close(diffusion.predict_x0(x_t, t, noise), x0, rtol=0, atol=1e3 * RELATIVE_TOLERANCE[dtype])


def test_per_image_time_steps_broadcast():
    from ddpm import Diffusion

    diffusion = Diffusion(steps=10, beta_start=1e-3, beta_end=0.2, dtype=torch.float64)
    x0 = torch.ones(3, 1, 2, 2, dtype=torch.float64)
    t = torch.tensor([0, 4, 9])
    x_t, _ = diffusion.forward_diffusion(x0, t, noise=torch.zeros_like(x0))
    for i in range(3):
        assert torch.allclose(x_t[i], diffusion.tables.sqrt_alpha_bar[t[i]].expand(1, 2, 2))


def test_trajectory_length_is_checked():
    from ddpm import Diffusion

    with pytest.raises(ValueError, match="within 1..10"):
        Diffusion(steps=10).forward_trajectory(torch.zeros(1, 1, 2, 2), 11)
