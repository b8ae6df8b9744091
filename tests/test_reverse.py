"""Reverse steps: Eq. 11 against Appendix B, variances, and an oracle model that knows the noise."""

import pytest
import torch
from hypothesis import given

from ddpm import SAMPLERS, Diffusion, SimpleSampler, X0Sampler, make_sampler
from strategies import RELATIVE_TOLERANCE, dtypes, gaussian, image_shapes, noisy_sample, schedule_and_step, seeds


def rounding_scale(diffusion: Diffusion, t: int, x_t: torch.Tensor, noise: torch.Tensor) -> float:
    """Size of the largest intermediate in Appendix B (the reconstructed x0 term), which sets its round-off."""
    tables = diffusion.tables
    return 1.0 + (tables.x0_coef_xt[t] * x_t.abs().max() + tables.x0_coef_noise[t] * noise.abs().max()).item()


@given(spec_t=schedule_and_step(), shape=image_shapes, dtype=dtypes, seed=seeds)
def test_eq11_mean_equals_appendix_b_mean_without_clamp(spec_t, shape, dtype, seed):
    spec, t = spec_t
    diffusion = spec.build(dtype)
    x_t, predicted = gaussian(shape, dtype, seed), gaussian(shape, dtype, seed + 1)
    simple = SimpleSampler().mean(diffusion, x_t, t, predicted)
    appendix_b = X0Sampler(clamp=False).mean(diffusion, x_t, t, predicted)
    atol = 10 * RELATIVE_TOLERANCE[dtype] * rounding_scale(diffusion, t, x_t, predicted)
    torch.testing.assert_close(simple, appendix_b, rtol=0, atol=atol)


def test_eq11_and_appendix_b_agree_to_1e10_on_the_tutorial_schedule():
    diffusion = Diffusion(steps=2000, beta_start=1e-6, beta_end=0.01, dtype=torch.float64)
    x_t, predicted = gaussian((4, 1, 8, 8), torch.float64, 1), gaussian((4, 1, 8, 8), torch.float64, 2)
    for t in (0, 1, 500, 1999):
        simple = SimpleSampler().mean(diffusion, x_t, t, predicted)
        appendix_b = X0Sampler(clamp=False).mean(diffusion, x_t, t, predicted)
        assert (simple - appendix_b).abs().max() < 1e-10


@given(spec_t=schedule_and_step(linear_only=True), seed=seeds)
def test_clamped_appendix_b_differs_only_where_x0_leaves_the_image_range(spec_t, seed):
    spec, t = spec_t
    diffusion = spec.build(torch.float64)
    x_t, predicted = gaussian((2, 1, 6, 6), torch.float64, seed, scale=2.0), gaussian((2, 1, 6, 6), torch.float64, seed + 1)
    simple = SimpleSampler().mean(diffusion, x_t, t, predicted)
    clamped = X0Sampler(clamp=True).mean(diffusion, x_t, t, predicted)
    x0 = diffusion.predict_x0(x_t, t, predicted)
    outside = x0.abs() > 1
    difference = (simple - clamped).abs()
    tolerance = 1e-11 * rounding_scale(diffusion, t, x_t, predicted)
    assert (difference[~outside] <= tolerance).all()
    # The clamp moves x0 by |x0| - 1; the posterior mean weighs x0 by its Eq. 26 coefficient.
    expected = diffusion.tables.posterior_coef_x0[t] * (x0.abs() - 1)
    torch.testing.assert_close(difference[outside], expected[outside], rtol=1e-8, atol=tolerance)


@given(spec_t=schedule_and_step(), shape=image_shapes, dtype=dtypes, seed=seeds)
def test_oracle_step_without_noise_lands_on_the_posterior_mean(spec_t, shape, dtype, seed):
    spec, t = spec_t
    diffusion, x0, x_t, noise = noisy_sample(spec, t, shape, dtype, seed)
    target = diffusion.posterior_mean(x0, x_t, t)
    atol = 20 * RELATIVE_TOLERANCE[dtype] * rounding_scale(diffusion, t, x_t, noise)
    for sampler in ("simple", "x0"):
        step = SAMPLERS[sampler]().step(diffusion, x_t, t, noise, None)
        torch.testing.assert_close(step, target, rtol=0, atol=atol)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
@pytest.mark.parametrize("sampler", ["simple", "x0"])
def test_step_adds_sigma_times_z_except_at_the_last_step(sampler, variance):
    diffusion = Diffusion(steps=20, beta_start=1e-3, beta_end=0.1, dtype=torch.float64)
    x_t, predicted, z = (gaussian((1, 1, 4, 4), torch.float64, s) for s in (1, 2, 3))
    table = diffusion.tables.beta if variance == "beta" else diffusion.tables.beta_tilde
    chosen = SAMPLERS[sampler](variance=variance)
    for t in (5, 19):
        mean = chosen.step(diffusion, x_t, t, predicted, None)
        noisy = chosen.step(diffusion, x_t, t, predicted, z)
        torch.testing.assert_close(noisy - mean, table[t].sqrt() * z)
    assert torch.equal(
        chosen.step(diffusion, x_t, 0, predicted, z),
        chosen.step(diffusion, x_t, 0, predicted, None),
    )


def test_per_image_steps_in_a_batch():
    diffusion = Diffusion(steps=20, beta_start=1e-3, beta_end=0.1, dtype=torch.float64)
    x_t, predicted, z = (gaussian((3, 1, 4, 4), torch.float64, s) for s in (1, 2, 3))
    t = torch.tensor([0, 7, 19])
    batched = X0Sampler().step(diffusion, x_t, t, predicted, z)
    for i in range(3):
        single = X0Sampler().step(diffusion, x_t[i : i + 1], int(t[i]), predicted[i : i + 1], z[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], single)


@pytest.mark.parametrize("build, message", [
    (lambda: make_sampler("ddpm++"), "sampler"),
    (lambda: SimpleSampler(variance="learned"), "variance"),
    (lambda: X0Sampler(variance="learned"), "variance"),
])
def test_unknown_options_name_the_choices_when_the_sampler_is_built(build, message):
    with pytest.raises(ValueError, match=f"unknown {message}.*choose one of"):
        build()
