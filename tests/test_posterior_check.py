"""The posterior check (experiments.trust.posterior) on a toy whose posterior is exact: every pixel of the
clean image is N(mu, s^2) and the network is its exact noise prediction (test_dpm_solver's GaussianOracle),
so the ancestral sampler over all steps draws from the posterior and must pass, while samplers that
collapse it (DPM-Solver++(2M) on 4 evaluations, identical samples) must fail; and the ratio's arithmetic
by a second route."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ddpm import DDIMSampler, Diffusion, DPMSolverSampler, X0Sampler
from experiments.evaluation.stats import mean_interval
from experiments.trust.posterior import dispersions, error_ratios, expected_ratio, passes
from test_dpm_solver import GaussianOracle

TOY = Diffusion(steps=200, beta_start=1e-4, beta_end=0.1, time_encoding_dim=8, dtype=torch.float64)  # the demo's schedule
SAMPLES, IMAGES, SIDE = 8, 16, 8


def checked(sampler, mu: float, s: float, seed: int) -> tuple[float, float, bool]:
    """The dispersion interval of ``SAMPLES`` samples of ``IMAGES`` toy images against targets drawn from the
    same distribution, and whether the check passes."""
    oracle, shape = GaussianOracle(TOY, mu, s), (IMAGES, 1, SIDE, SIDE)
    target = mu + s * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    samples = torch.stack([
        sampler(TOY, oracle, None, x_T=torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1 + i), dtype=torch.float64),
                generator=torch.Generator().manual_seed(seed + 100 + i), progress=False)
        for i in range(SAMPLES)])
    interval = mean_interval(dispersions(samples, target))
    low, high = interval.mean - interval.half_width, interval.mean + interval.half_width
    return low, high, passes(low, high)


@settings(max_examples=3, deadline=None)
@given(mu=st.floats(-0.5, 0.5), s=st.floats(0.2, 0.5), seed=st.integers(0, 2**16))
def test_draws_from_the_exact_posterior_pass(mu, s, seed):
    low, high, passed = checked(X0Sampler(clamp=False), mu, s, seed)
    assert passed and low < 1.0 < high, (low, high)


@pytest.mark.parametrize("sampler", [DPMSolverSampler(4, clamp=False), DDIMSampler(10, eta=1.0, clamp=False)],
                         ids=["dpmpp2m-4", "ddim-eta1-10"])
def test_samplers_that_shrink_the_posterior_fail(sampler):
    low, high, passed = checked(sampler, 0.2, 0.3, seed=7)
    assert not passed and high < 0.8, (low, high)


def test_identical_samples_have_a_dispersion_of_zero_and_fail():
    target = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    copies = (target + 0.3).expand(5, -1, -1, -1, -1)
    assert dispersions(copies, target) == pytest.approx([0.0] * 4)
    assert not passes(0.0, 0.0)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_the_ratio_is_each_samples_error_over_the_error_of_their_mean(n, seed):
    rng = np.random.default_rng(seed)
    samples, target = rng.normal(size=(n, 3, 5, 4)), rng.normal(size=(3, 5, 4))
    by_loop = [np.mean([np.mean((samples[i, b] - target[b]) ** 2) for i in range(n)])
               / np.mean((samples[:, b].mean(0) - target[b]) ** 2) for b in range(3)]
    np.testing.assert_allclose(error_ratios(torch.from_numpy(samples), torch.from_numpy(target)).numpy(), by_loop, rtol=1e-12)
    assert expected_ratio(n) == pytest.approx(2 * n / (n + 1))


def test_a_mean_on_its_target_has_no_ratio_and_one_sample_no_check():
    target = torch.zeros(2, 4, 4)
    samples = torch.stack([target + 1, target - 1])  # the mean of the two is the target itself
    assert torch.isnan(error_ratios(samples, target)).all() and dispersions(samples, target) == []
    with pytest.raises(ValueError, match="2 or more samples"):
        expected_ratio(1)
