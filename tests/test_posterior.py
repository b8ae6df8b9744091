"""The posterior q(x_{t-1} | x_t, x0) (Eq. 4-6) and its noise form (Eq. 8)."""

import torch
from hypothesis import given

from strategies import RELATIVE_TOLERANCE, dtypes, gaussian, image_shapes, noisy_sample, schedule_and_step, seeds


def magnitude(*tensors: torch.Tensor) -> float:
    return 1.0 + max(t.abs().max().item() for t in tensors)


@given(spec_t=schedule_and_step(), shape=image_shapes, dtype=dtypes, seed=seeds)
def test_eq5_with_true_x0_equals_eq8_with_true_noise(spec_t, shape, dtype, seed):
    spec, t = spec_t
    diffusion, x0, x_t, noise = noisy_sample(spec, t, shape, dtype, seed)
    eq5 = diffusion.posterior_mean(x0, x_t, t)
    eq8 = diffusion.simplified_mean(x_t, t, noise)
    atol = 50 * RELATIVE_TOLERANCE[dtype] * magnitude(x_t, noise) * diffusion.tables.x0_coef_xt[t].item()
    torch.testing.assert_close(eq5, eq8, rtol=0, atol=atol)


@given(spec_t=schedule_and_step(), seed=seeds)
def test_posterior_is_the_gaussian_conditional_of_the_forward_process(spec_t, seed):
    """Independent route: x_{t-1} ~ N(sqrt(ab_{t-1}) x0, 1 - ab_{t-1}) and x_t = sqrt(a_t) x_{t-1} + sqrt(b_t) e
    are jointly Gaussian; conditioning on x_t gives mean m + cov / var_t (x_t - E x_t) and variance
    var_{t-1} - cov^2 / var_t, with cov = sqrt(a_t) (1 - ab_{t-1})."""
    spec, t = spec_t
    diffusion = spec.build(torch.float64)
    tables = diffusion.tables
    x0 = gaussian((2, 1, 3, 3), torch.float64, seed).clamp(-1, 1)
    x_t = gaussian((2, 1, 3, 3), torch.float64, seed + 1)
    ab_prev, ab, a = tables.alpha_bar_prev[t], tables.alpha_bar[t], tables.alpha[t]
    var_prev, var_t = 1 - ab_prev, 1 - ab
    cov = a.sqrt() * var_prev
    mean = ab_prev.sqrt() * x0 + cov / var_t * (x_t - ab.sqrt() * x0)
    variance = var_prev - cov**2 / var_t

    torch.testing.assert_close(diffusion.posterior_mean(x0, x_t, t), mean, rtol=1e-10, atol=1e-10)
    beta_tilde, log_beta_tilde = diffusion.posterior_variance(t, x_t)
    torch.testing.assert_close(beta_tilde, variance, rtol=1e-8, atol=1e-14)
    assert torch.isfinite(log_beta_tilde)


def test_first_step_posterior_is_the_clean_image():
    """At t = 0, alpha_bar_{-1} = 1: the posterior collapses onto x0 with zero variance."""
    from ddpm import Diffusion

    diffusion = Diffusion(steps=50, beta_start=1e-6, beta_end=0.01, dtype=torch.float64)
    x0, x_t = torch.rand(2, 1, 4, 4, dtype=torch.float64), torch.randn(2, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(diffusion.posterior_mean(x0, x_t, 0), x0)
    variance, log_variance = diffusion.posterior_variance(0, x_t)
    assert variance == 0 and torch.isfinite(log_variance)
