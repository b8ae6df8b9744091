"""DPM-Solver++(2M) (issue 23) against independent routes to the same number, not golden values:

(a) on Gaussian data the probability-flow ODE and the exact noise prediction have closed forms, so the
    solver's error can be measured: it falls 4x when the steps double (second order), DDIM's 2x;
(b) an oracle that returns the true noise of a known x0 makes every data prediction x0: the chain returns x0;
(c) its first step is a deterministic DDIM step (Song et al. Eq. 12), and its first-order rows are DDIM's;
(d) tiled prediction and the position-hashed start work with it as with DDIM.
"""

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ddpm import DDIMSampler, Diffusion, DPMSolverSampler, ddim_coefficients, ddim_step, ddim_timesteps, multistep_rows
from ddpm.dpm_solver import CLEAN
from ddpm.hashed_noise import hashed_normal
from experiments.config.schema import RunConfig, SamplingConfig
from experiments.inference.predictor import FrameRequest, Predictor
from experiments.inference.sampling import Sampling
from experiments.inference.tiling import TileLayout
from unet import UNetConfig

# T - 1 = 1024: the uniform chains of 4, 8, ... 64 steps all pass through t = 512 and t = 256 exactly.
GAUSSIAN = Diffusion(steps=1025, beta_start=1e-4, beta_end=0.02, time_encoding_dim=8, dtype=torch.float64)


def step_of(diffusion: Diffusion, encoding: torch.Tensor) -> int:
    """The time step whose encoding the sampler passed (the oracles below need t, networks get its encoding)."""
    return int((diffusion.time_encodings - encoding[:1]).abs().sum(dim=1).argmin())


class GaussianOracle(nn.Module):
    """The exact noise prediction E[eps | x_t] when every pixel of x0 is N(mu, s^2):
    ``sigma_t (x_t - alpha_t mu) / (alpha_t^2 s^2 + sigma_t^2)``."""

    def __init__(self, diffusion: Diffusion, mu: float, s: float) -> None:
        super().__init__()
        self.diffusion, self.mu, self.s = diffusion, mu, s

    def forward(self, x: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        t = step_of(self.diffusion, encoding)
        alpha = self.diffusion.tables.sqrt_alpha_bar[t].double()
        sigma = self.diffusion.tables.sqrt_one_minus_alpha_bar[t].double()
        return sigma * (x - alpha * self.mu) / (alpha**2 * self.s**2 + sigma**2)


def exact_flow(diffusion: Diffusion, x_T: torch.Tensor, t: int, mu: float, s: float) -> torch.Tensor:
    """The probability-flow ODE's x_t from x_T on Gaussian data: the marginals are N(alpha mu, alpha^2 s^2 +
    sigma^2), and the flow maps one to the other by matching standardised values."""
    alpha, sigma = diffusion.tables.sqrt_alpha_bar.double(), diffusion.tables.sqrt_one_minus_alpha_bar.double()
    last = diffusion.steps - 1
    spread = lambda k: torch.sqrt(alpha[k] ** 2 * s**2 + sigma[k] ** 2)
    return alpha[t] * mu + spread(t) / spread(last) * (x_T - alpha[last] * mu)


def state_error(sampler_of, steps: int, x_T: torch.Tensor, mu: float, s: float, at: int) -> float:
    """Largest |x_at - exact| of a chain of ``steps`` evaluations, at the (shared) step ``at`` of its chain."""
    chain = DPMSolverSampler(steps).chain(GAUSSIAN.steps)
    before = chain[chain.index(at) - 1]  # the state at ``at`` is saved right after the step from ``before``
    _, saved = sampler_of(chain)(GAUSSIAN, GaussianOracle(GAUSSIAN, mu, s), None, x_T=x_T, save_steps=[before],
                                 progress=False)
    return float((saved[0] - exact_flow(GAUSSIAN, x_T, at, mu, s)).abs().max())


@settings(max_examples=6, deadline=None)
@given(mu=st.floats(-0.8, 0.8), s=st.floats(0.05, 1.0), seed=st.integers(0, 2**16), at=st.sampled_from([512, 256]))
def test_on_gaussian_data_the_error_is_second_order_and_ddim_first_order(mu, s, seed, at):
    x_T = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    solver = lambda chain: DPMSolverSampler(len(chain), clamp=False)
    ddim = lambda chain: DDIMSampler(timesteps=chain, clamp=False)
    steps = (16, 32, 64)
    solver_errors = [state_error(solver, n, x_T, mu, s, at) for n in steps]
    ddim_errors = [state_error(ddim, n, x_T, mu, s, at) for n in steps]
    for coarse, fine in zip(solver_errors, solver_errors[1:]):
        assert 3.3 < coarse / fine < 4.8, solver_errors  # second order: 4x per doubling
    for coarse, fine in zip(ddim_errors, ddim_errors[1:]):
        assert 1.8 < coarse / fine < 2.2, ddim_errors  # first order: 2x
    assert solver_errors[-1] < ddim_errors[-1] / 4


class TrueNoise(nn.Module):
    """The noise that makes x_t out of a known x0: ``(x_t - alpha_t x0) / sigma_t`` (Eq. 3 solved for eps)."""

    def __init__(self, diffusion: Diffusion, x0: torch.Tensor) -> None:
        super().__init__()
        self.diffusion, self.x0 = diffusion, x0

    def forward(self, x: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        t = step_of(self.diffusion, encoding)
        tables = self.diffusion.tables
        return (x - tables.sqrt_alpha_bar[t] * self.x0) / tables.sqrt_one_minus_alpha_bar[t]


@settings(max_examples=10, deadline=None)
@given(steps=st.integers(1, 12), spacing=st.sampled_from(["uniform", "quadratic"]), seed=st.integers(0, 2**16),
       clamp=st.booleans())
def test_with_the_true_noise_of_a_known_x0_the_chain_returns_x0(steps, spacing, seed, clamp):
    diffusion = Diffusion(steps=40, beta_start=1e-4, beta_end=0.2, time_encoding_dim=8, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.rand(2, 1, 6, 6, generator=generator, dtype=torch.float64) * 2 - 1
    x_T = torch.randn(2, 1, 6, 6, generator=generator, dtype=torch.float64)
    out = DPMSolverSampler(steps, spacing=spacing, clamp=clamp)(diffusion, TrueNoise(diffusion, x0), None, x_T=x_T,
                                                                 progress=False)
    torch.testing.assert_close(out, x0, atol=1e-9, rtol=0)


class Pixelwise(nn.Module):
    """A fixed nonlinear noise predictor (no training needed): enough to make every step's numbers differ."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(8, 2, generator=generator) * 0.7)
        self.time = nn.Parameter(torch.randn(8, 8, generator=generator) * 0.3)
        self.out = nn.Parameter(torch.randn(1, 8, generator=generator) * 0.5)

    def forward(self, x: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(torch.einsum("oc,bchw->bohw", self.weight.to(x.dtype), x)
                            + (encoding[:1].to(x.dtype) @ self.time.to(x.dtype).T)[:, :, None, None])
        return torch.einsum("oc,bchw->bohw", self.out.to(x.dtype), hidden)


@settings(max_examples=10, deadline=None)
@given(steps=st.integers(2, 9), seed=st.integers(0, 2**16), clamp=st.booleans())
def test_the_first_step_is_a_deterministic_ddim_step(steps, seed, clamp):
    diffusion = Diffusion(steps=30, beta_start=1e-4, beta_end=0.2, time_encoding_dim=8, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    condition = torch.rand(1, 1, 5, 5, generator=generator, dtype=torch.float64) * 2 - 1
    x_T = torch.randn(1, 1, 5, 5, generator=generator, dtype=torch.float64) * 3  # large: the clamp acts
    sampler = DPMSolverSampler(steps, clamp=clamp)
    chain = sampler.chain(diffusion.steps)
    _, saved = sampler(diffusion, Pixelwise(), condition, x_T=x_T, save_steps=[chain[0]], progress=False)
    noise = Pixelwise()(torch.cat([condition, x_T], 1), diffusion.time_encodings[chain[0]][None])
    expected = ddim_step(diffusion, x_T, chain[0], noise, None, ddim_coefficients(diffusion, chain, 0.0)[chain[0]], clamp)
    torch.testing.assert_close(saved[0], expected, atol=1e-12, rtol=0)


@settings(max_examples=10, deadline=None)
@given(steps=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_first_order_rows_along_a_ddim_chain_are_ddim(steps, seed):
    """Lu et al.: DPM-Solver++1 is DDIM. Run with rows of order 1 landing on the clean end, the linear
    form a x + b x0 reproduces DDIMSampler (Eq. 12, computed by ddpm.ddim), as the exported module runs it."""
    diffusion = Diffusion(steps=30, beta_start=1e-4, beta_end=0.2, time_encoding_dim=8, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    condition = torch.rand(1, 1, 5, 5, generator=generator, dtype=torch.float64) * 2 - 1
    x = x_T = torch.randn(1, 1, 5, 5, generator=generator, dtype=torch.float64)
    chain = ddim_timesteps(diffusion.steps, steps)
    for t, row in zip(chain, multistep_rows(diffusion, chain, [*chain[1:], CLEAN], order=1)):
        assert row.c == 0.0
        noise = Pixelwise()(torch.cat([condition, x], 1), diffusion.time_encodings[t][None])
        x = row.a * x + row.b * diffusion.predict_x0(x, t, noise).clamp(-1, 1)
    expected = DDIMSampler(steps)(diffusion, Pixelwise(), condition, x_T=x_T, progress=False)
    torch.testing.assert_close(x, expected, atol=1e-12, rtol=0)


def test_the_chain_never_evaluates_step_zero_and_refuses_what_does_not_fit():
    assert DPMSolverSampler(4).chain(1001) == [1000, 750, 500, 250]
    assert DPMSolverSampler(1).chain(10) == [9] and DPMSolverSampler(9).chain(10) == list(range(9, 0, -1))
    assert len(DPMSolverSampler().chain(2000)) == 4 and DPMSolverSampler().chain(3) == [2, 1]
    with pytest.raises(ValueError, match=r"within 1\.\.9"):
        DPMSolverSampler(10).chain(10)
    with pytest.raises(ValueError, match="order"):
        DPMSolverSampler(4, order=3)
    assert SamplingConfig(sampler="dpmpp2m", sampling_steps=3).network_evaluations(100) == 3


def tiny_predictor(diffusion: Diffusion) -> Predictor:
    config = RunConfig(network=UNetConfig(channels=(4, 8), base_channels=(4,), attention=(False, False),
                                          time_encoding_dim=8))
    from experiments.build import build_model

    torch.manual_seed(0)
    return Predictor(build_model(config, torch.device("cpu")).eval(), diffusion, config, Path("none.pt"), "", "model",
                     torch.device("cpu"))


def test_tiled_prediction_with_the_hashed_start_is_the_one_pass_chain_from_the_same_field():
    """(d) A pixelwise network sees the same numbers tiled or whole, so the tiled chain of the solver, started
    from the position-hashed field, must equal the untiled chain from that field: the multistep state (the
    previous data prediction) is per image, not per tile."""
    diffusion = Diffusion(steps=20, beta_start=1e-4, beta_end=0.2, time_encoding_dim=8)
    predictor = Predictor(Pixelwise().eval(), diffusion, RunConfig(network=UNetConfig(
        channels=(4,), base_channels=(4,), attention=(False,), time_encoding_dim=8)), Path("none.pt"), "", "model",
        torch.device("cpu"))
    condition = torch.rand(1, 1, 40, 52, generator=torch.Generator().manual_seed(2)) * 2 - 1
    sampling = SamplingConfig(sampler="dpmpp2m", sampling_steps=4, samples=2)
    tiled = predictor.sample(condition, FrameRequest(sampling, TileLayout(16, 6, 5), hashed_noise_seed=7), torch.Generator())
    x_T = hashed_normal([2, 1, 40, 52], 7, torch.device("cpu"))
    whole = Sampling(sampling, diffusion).draw(Pixelwise().eval(), condition, x_T=x_T)
    torch.testing.assert_close(tiled.mean, whole.mean(0), atol=1e-5, rtol=0)
    assert (tiled.mean - Sampling(replace_steps(sampling, 2), diffusion).draw(
        Pixelwise().eval(), condition, x_T=x_T).mean(0)).abs().max() > 1e-3  # the steps matter


def replace_steps(sampling: SamplingConfig, steps: int) -> SamplingConfig:
    from dataclasses import replace

    return replace(sampling, sampling_steps=steps)


@pytest.mark.parametrize("sampler", ["dpmpp2m", "ddim"])
def test_pooled_samples_equal_sequential_chains_of_each_sample(sampler):
    """Item 2: the samples of a frame (and chains kept beyond them) share the network's batches; each
    equals the chain of that sample alone, drawn in turn from the same generator, tiled on a real U-Net."""
    diffusion = Diffusion(steps=20, beta_start=1e-4, beta_end=0.2, time_encoding_dim=8, dtype=torch.float64)
    predictor = tiny_predictor(diffusion)
    predictor.model.double()
    condition = torch.rand(1, 1, 40, 36, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1
    sampling = SamplingConfig(sampler=sampler, sampling_steps=3, samples=3)
    layout = TileLayout(16, 4, 16)
    pooled = predictor.sample(condition, FrameRequest(sampling, layout, keep=5), torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(1)
    single = SamplingConfig(sampler=sampler, sampling_steps=3, samples=1)
    sequential = torch.stack([predictor.sample(condition, FrameRequest(single, layout), generator).mean for _ in range(5)])
    torch.testing.assert_close(pooled.mean, sequential[:3].mean(0), atol=1e-9, rtol=0)
    torch.testing.assert_close(pooled.std, sequential[:3].std(0, unbiased=False), atol=1e-9, rtol=0)
    torch.testing.assert_close(pooled.kept, sequential, atol=1e-9, rtol=0)
    assert predictor.sample(condition, FrameRequest(sampling, layout, keep=2), torch.Generator()).kept.shape[0] == 2
    assert sequential.std(0).mean() > 0.05  # five different samples


@settings(max_examples=8, deadline=None)
@given(steps=st.integers(3, 9), spacing=st.sampled_from(["uniform", "quadratic"]), seed=st.integers(0, 2**16))
def test_the_chain_is_lu_et_al_algorithm_2_written_out(steps, spacing, seed):
    """Algorithm 2 of Lu et al. transcribed from the paper, in alpha, sigma and lambda taken from the Diffusion's
    own tables (not the solver's log-space rows), on chains whose step ratios r_i are far from 1 (quadratic)."""
    diffusion = Diffusion(steps=60, beta_start=1e-4, beta_end=0.2, time_encoding_dim=8, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    condition = torch.rand(1, 1, 5, 5, generator=generator, dtype=torch.float64) * 2 - 1
    x_T = torch.randn(1, 1, 5, 5, generator=generator, dtype=torch.float64)
    sampler = DPMSolverSampler(steps, spacing=spacing)
    chain = sampler.chain(diffusion.steps)
    alpha, sigma = diffusion.tables.sqrt_alpha_bar.double(), diffusion.tables.sqrt_one_minus_alpha_bar.double()
    lam = torch.log(alpha / sigma)
    x, previous, previous_h = x_T, None, None
    for i, t in enumerate(chain):
        eps = Pixelwise()(torch.cat([condition, x], 1), diffusion.time_encodings[t][None])
        x0 = ((x - sigma[t] * eps) / alpha[t]).clamp(-1, 1)
        if i == len(chain) - 1:
            x = x0  # to the clean end: lambda = inf
            break
        s = chain[i + 1]
        h = lam[s] - lam[t]
        d = x0 if previous is None else (1 + 1 / (2 * previous_h / h)) * x0 - 1 / (2 * previous_h / h) * previous
        x = sigma[s] / sigma[t] * x - alpha[s] * torch.expm1(-h) * d
        previous, previous_h = x0, h
    out = sampler(diffusion, Pixelwise(), condition, x_T=x_T, progress=False)
    torch.testing.assert_close(out, x, atol=1e-9, rtol=0)
