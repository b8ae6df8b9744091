"""DDIM (Song et al. 2021): step subsets, eta = 1 against Appendix B, eta = 0 determinism, an oracle, sampling."""

from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from ddpm import (
    DDIMCoefficients,
    DDIMSampler,
    Diffusion,
    X0Sampler,
    check_timesteps,
    ddim_coefficients,
    ddim_step,
    ddim_timesteps,
)
from strategies import RELATIVE_TOLERANCE, dtypes, gaussian, image_shapes, schedule_and_step, schedules, seeds
from test_reverse import rounding_scale
from test_sampling import Recorder


def full_chain(diffusion: Diffusion) -> list[int]:
    return list(range(diffusion.steps - 1, -1, -1))


class ExactOracle(nn.Module):
    """Returns the true noise of a known x0 at the x_t it is given, reading t by an exact match of
    its time encoding (``ddpm.run_chain`` passes rows of ``Diffusion.time_encodings`` unchanged)."""

    def __init__(self, diffusion: Diffusion, x0: torch.Tensor):
        super().__init__()
        self.diffusion, self.x0 = diffusion, x0
        self.seen: list[int] = []

    def forward(self, x_t, t_encoding):
        matches = (self.diffusion.time_encodings == t_encoding[0]).all(-1).nonzero().flatten()
        assert len(matches) == 1, "the time encoding is not a row of the table"
        t = int(matches[0])
        self.seen.append(t)
        tables = self.diffusion.tables
        return (x_t - tables.sqrt_alpha_bar[t] * self.x0) / tables.sqrt_one_minus_alpha_bar[t]


# ------------------------------------------------------------------ time steps
def round_half_up(value: Fraction) -> int:
    return (value + Fraction(1, 2)).__floor__()


@given(steps_total=st.integers(1, 3000), data=st.data(), spacing=st.sampled_from(["uniform", "quadratic"]))
def test_timesteps_are_distinct_descending_and_span_the_schedule(steps_total, data, spacing):
    sampling_steps = data.draw(st.integers(1, steps_total))
    chain = ddim_timesteps(steps_total, sampling_steps, spacing)
    assert len(chain) == sampling_steps
    assert all(later < earlier for earlier, later in zip(chain, chain[1:]))
    assert chain[0] == steps_total - 1
    assert chain[-1] == (0 if sampling_steps > 1 else steps_total - 1)


@given(steps_total=st.integers(2, 3000), data=st.data())
def test_uniform_timesteps_are_the_rounded_even_grid(steps_total, data):
    sampling_steps = data.draw(st.integers(2, steps_total))
    ascending = ddim_timesteps(steps_total, sampling_steps, "uniform")[::-1]
    expected = [round_half_up(Fraction(i * (steps_total - 1), sampling_steps - 1)) for i in range(sampling_steps)]
    assert ascending == expected
    gaps = {b - a for a, b in zip(ascending, ascending[1:])}
    assert max(gaps) - min(gaps) <= 1


@given(steps_total=st.integers(2, 3000), data=st.data())
def test_quadratic_timesteps_crowd_towards_zero(steps_total, data):
    sampling_steps = data.draw(st.integers(2, steps_total))
    uniform = ddim_timesteps(steps_total, sampling_steps, "uniform")
    quadratic = ddim_timesteps(steps_total, sampling_steps, "quadratic")
    assert all(q <= u for q, u in zip(quadratic, uniform))
    # Gaps grow with t (up to one step of rounding either side).
    ascending = quadratic[::-1]
    gaps = [b - a for a, b in zip(ascending, ascending[1:])]
    assert all(later >= earlier - 1 for earlier, later in zip(gaps, gaps[1:]))


@given(steps_total=st.integers(2, 3000), data=st.data())
def test_quadratic_timesteps_follow_i_squared(steps_total, data):
    # Song et al. (2021, Sec. 5) space the steps quadratically: t_i grows as i^2. Keeping both ends,
    # t_i = i + round((i / (n - 1))^2 (T - n)), the i keeping them distinct.
    sampling_steps = data.draw(st.integers(2, steps_total))
    last, extra = sampling_steps - 1, steps_total - sampling_steps
    expected = [i + round_half_up(Fraction(i * i, last * last) * extra) for i in range(sampling_steps)]
    assert ddim_timesteps(steps_total, sampling_steps, "quadratic")[::-1] == expected


def test_quadratic_and_uniform_spacing_by_hand():
    # T = 100, n = 5: extra = 95; quadratic 95 i^2 / 16 = 0, 5.9, 23.75, 53.4, 95; uniform 99 i / 4.
    assert ddim_timesteps(100, 5, "quadratic") == [99, 56, 26, 7, 0]
    assert ddim_timesteps(100, 5, "uniform") == [99, 74, 50, 25, 0]
    assert DDIMSampler(sampling_steps=5, spacing="quadratic").chain(100) == [99, 56, 26, 7, 0]
    assert DDIMSampler(sampling_steps=5).chain(100) == [99, 74, 50, 25, 0]  # the project's default spacing


def test_the_tutorial_schedule_at_50_steps():
    chain = ddim_timesteps(2000, 50)
    assert chain[:3] == [1999, 1958, 1917] and chain[-1] == 0  # 1999 / 49 = 40.8 per step


@pytest.mark.parametrize(
    "steps_total, sampling_steps, spacing, error, message",
    [
        (10, 0, "uniform", ValueError, r"within 1\.\.10"),
        (10, 11, "uniform", ValueError, r"within 1\.\.10"),
        (10, 5, "cubic", ValueError, r"unknown DDIM spacing 'cubic'.*uniform.*quadratic"),
    ],
)
def test_bad_step_counts_and_spacings_are_named(steps_total, sampling_steps, spacing, error, message):
    with pytest.raises(error, match=message):
        ddim_timesteps(steps_total, sampling_steps, spacing)


@given(steps_total=st.integers(1, 500), data=st.data())
def test_chosen_timesteps_come_back_descending(steps_total, data):
    chosen = data.draw(st.lists(st.integers(0, steps_total - 1), min_size=1, unique=True))
    assert check_timesteps(chosen, steps_total) == sorted(chosen, reverse=True)


def test_chosen_timesteps_accept_tensors_of_integers():
    assert check_timesteps(torch.tensor([3, 9, 0]), 10) == [9, 3, 0]


@pytest.mark.parametrize(
    "chosen, error, message",
    [
        ([], ValueError, "empty"),
        ([9, 10], ValueError, r"within 0\.\.9.*\[10\]"),
        ([-1, 3], ValueError, r"within 0\.\.9.*\[-1\]"),
        ([5, 3, 5], ValueError, r"distinct; repeated: \[5\]"),
        ([5, 2.5], TypeError, "integers"),
    ],
)
def test_bad_chosen_timesteps_give_clear_errors(chosen, error, message):
    with pytest.raises(error, match=message):
        check_timesteps(chosen, 10)


def test_coefficients_need_descending_steps_and_eta_in_unit_range():
    diffusion = Diffusion(steps=10, time_encoding_dim=8)
    with pytest.raises(ValueError, match="descending"):
        ddim_coefficients(diffusion, [0, 5, 9], 0.0)
    for eta in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"eta must be within \[0, 1\]"):
            ddim_coefficients(diffusion, [9, 0], eta)


@given(spec=schedules(), data=st.data(), eta=st.floats(0.0, 1.0))
def test_coefficients_follow_eq_12_and_16_on_any_subset(spec, data, eta):
    diffusion = spec.build(torch.float64)
    chosen = data.draw(st.lists(st.integers(0, spec.steps - 1), min_size=1, max_size=20, unique=True))
    chain = check_timesteps(chosen, spec.steps)
    coefficients = ddim_coefficients(diffusion, chain, eta)
    coefficients_at_eta_one = ddim_coefficients(diffusion, chain, 1.0)
    alpha = diffusion.tables.alpha
    for t, t_prev in zip(chain, [*chain[1:], -1]):
        c = coefficients[t]
        alpha_bar_prev = alpha[: t_prev + 1].prod().item()  # the product itself, not the log route
        alpha_bar_t = alpha[: t + 1].prod().item()
        assert c.x0_coef == pytest.approx(alpha_bar_prev**0.5, rel=1e-12)
        # The marginal of x_{t_prev} keeps variance 1 - alpha_bar_prev, split between noise and z.
        assert c.noise_coef**2 + c.sigma**2 == pytest.approx(1 - alpha_bar_prev, rel=1e-6, abs=1e-15)
        sigma_eq16 = ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)) ** 0.5
        assert coefficients_at_eta_one[t].sigma == pytest.approx(sigma_eq16, rel=1e-6, abs=1e-15)
        assert c.sigma == pytest.approx(eta * coefficients_at_eta_one[t].sigma, rel=1e-12, abs=1e-300)
    assert coefficients[chain[-1]] == DDIMCoefficients(1.0, 0.0, 0.0)  # the last step returns x0


@pytest.mark.parametrize("eta", [1e-223, 1e-170, 1e-100])
def test_a_tiny_eta_scales_sigma_without_underflow(eta):
    # Eq. 16: sigma is proportional to eta; eta**2 would underflow to 0 below about 1e-162.
    diffusion = Diffusion(steps=10, beta_start=1e-3, beta_end=0.2, time_encoding_dim=8)
    chain = [9, 4, 0]
    tiny, one = ddim_coefficients(diffusion, chain, eta), ddim_coefficients(diffusion, chain, 1.0)
    for t in chain[:-1]:
        assert tiny[t].sigma == pytest.approx(eta * one[t].sigma, rel=1e-12)
        assert tiny[t].sigma > 0


# ------------------------------------------------ eta = 1 on all steps is Appendix B
@given(spec_t=schedule_and_step(), shape=image_shapes, dtype=dtypes, seed=seeds, clamp=st.booleans())
def test_eta_one_on_all_steps_has_appendix_b_mean_and_variance(spec_t, shape, dtype, seed, clamp):
    spec, t = spec_t
    diffusion = spec.build(dtype)
    coefficients = ddim_coefficients(diffusion, full_chain(diffusion), eta=1.0)[t]
    x_t, predicted, z = gaussian(shape, dtype, seed), gaussian(shape, dtype, seed + 1), gaussian(shape, dtype, seed + 2)
    # Measured: the largest gap is under 1% of this bound (500 examples, both dtypes).
    atol = RELATIVE_TOLERANCE[dtype] * rounding_scale(diffusion, t, x_t, predicted)

    ddim_mean = ddim_step(diffusion, x_t, t, predicted, None, coefficients, clamp)
    appendix_b_mean = X0Sampler(clamp=clamp).step(diffusion, x_t, t, predicted, None)
    torch.testing.assert_close(ddim_mean, appendix_b_mean, rtol=0, atol=atol)

    # Variance: sigma^2 = beta_tilde_t (Eq. 6), and 0 at t = 0 where both add no noise.
    beta_tilde = diffusion.tables.beta_tilde.double()[t].item()
    assert coefficients.sigma**2 == pytest.approx(beta_tilde, rel=RELATIVE_TOLERANCE[dtype], abs=1e-300)
    ddim = ddim_step(diffusion, x_t, t, predicted, z, coefficients, clamp)
    appendix_b = X0Sampler(clamp=clamp).step(diffusion, x_t, t, predicted, z)
    torch.testing.assert_close(ddim, appendix_b, rtol=0, atol=atol + RELATIVE_TOLERANCE[dtype] * z.abs().max().item())


def test_eta_one_on_the_tutorial_schedule_matches_beta_tilde_in_float32():
    # beta_0 = 1e-6: 1 - alpha_bar_t / alpha_bar_prev would keep one digit if formed in float32.
    diffusion = Diffusion(steps=2000, beta_start=1e-6, beta_end=0.01, time_encoding_dim=8)
    coefficients = ddim_coefficients(diffusion, full_chain(diffusion), eta=1.0)
    sigma_squared = torch.tensor([coefficients[t].sigma ** 2 for t in range(2000)], dtype=torch.float64)
    beta_tilde = diffusion.tables.beta_tilde.double()
    torch.testing.assert_close(sigma_squared[1:], beta_tilde[1:], rtol=1e-6, atol=0)
    assert sigma_squared[0] == 0


def test_eta_one_chain_is_the_appendix_b_chain_under_the_same_seed():
    diffusion = Diffusion(steps=30, beta_start=1e-4, beta_end=0.1, time_encoding_dim=8, dtype=torch.float64)
    model = Recorder(in_channels=2).double()
    condition = torch.rand(2, 1, 6, 6, dtype=torch.float64) * 2 - 1
    seeded = lambda: torch.Generator().manual_seed(3)
    ddim = DDIMSampler(sampling_steps=30, eta=1.0)(diffusion, model, condition, generator=seeded(), progress=False)
    ancestral = X0Sampler(variance="beta_tilde")(diffusion, model, condition, generator=seeded(), progress=False)
    torch.testing.assert_close(ddim, ancestral, rtol=0, atol=1e-12)


# ------------------------------------------------ eta = 0: deterministic, exact with an oracle
def test_eta_zero_depends_only_on_the_start():
    diffusion = Diffusion(steps=40, beta_start=1e-4, beta_end=0.05, time_encoding_dim=8)
    model, condition = Recorder(in_channels=2), torch.rand(2, 1, 6, 6) * 2 - 1
    x_T = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    run = lambda seed, eta: DDIMSampler(sampling_steps=8, eta=eta)(
        diffusion, model, condition, x_T=x_T, generator=torch.Generator().manual_seed(seed), progress=False
    )
    assert torch.equal(run(7, 0.0), run(8, 0.0))
    torch.manual_seed(123)  # the global state does not matter either
    assert torch.equal(run(7, 0.0), DDIMSampler(sampling_steps=8)(diffusion, model, condition, x_T=x_T, progress=False))
    # Control: with eta > 0 the generator does change the result.
    assert not torch.allclose(run(7, 0.5), run(8, 0.5))


@given(spec=schedules(max_steps=120), data=st.data(), shape=image_shapes, seed=seeds)
def test_eta_zero_oracle_chain_on_any_subset_returns_x0(spec, data, shape, seed):
    diffusion = spec.build(torch.float64)
    chosen = data.draw(st.lists(st.integers(0, spec.steps - 1), min_size=1, max_size=12, unique=True))
    x0 = gaussian(shape, torch.float64, seed).clamp(-1, 1)
    start = max(chosen)
    noise = gaussian(shape, torch.float64, seed + 1)
    x_start, _ = diffusion.forward_diffusion(x0, start, noise=noise)
    oracle = ExactOracle(diffusion, x0)
    images = DDIMSampler(timesteps=chosen, eta=0.0, clamp=False)(diffusion, oracle, x_T=x_start, progress=False)
    assert oracle.seen == sorted(chosen, reverse=True)
    # Each step lands back on the forward process, so round-off does not pile up: only the last
    # reconstruction, at the smallest chosen step (where |x_t| <= |x0| + |noise|), sets the error.
    x_last_bound = x0.abs() + noise.abs()
    atol = RELATIVE_TOLERANCE[torch.float64] * rounding_scale(diffusion, min(chosen), x_last_bound, noise)
    torch.testing.assert_close(images, x0, rtol=0, atol=atol)


# ------------------------------------------------------------------ sampling
@pytest.fixture
def diffusion():
    return Diffusion(steps=20, beta_start=1e-3, beta_end=0.2, time_encoding_dim=8)


def test_conditional_sampling_feeds_condition_and_chosen_steps(diffusion):
    class Encodings(Recorder):
        """Also remembers the time encodings it saw."""

        def __init__(self, in_channels):
            super().__init__(in_channels)
            self.encodings = []

        def forward(self, x, t_encoding):
            self.encodings.append(t_encoding.clone())
            return super().forward(x, t_encoding)

    model, condition = Encodings(in_channels=2), torch.rand(3, 1, 8, 8) * 2 - 1
    images = DDIMSampler(timesteps=[19, 11, 4, 0], eta=0.3)(diffusion, model, condition, progress=False)
    assert images.shape == (3, 1, 8, 8)
    assert len(model.inputs) == 4
    for seen, t, encoding in zip(model.inputs, [19, 11, 4, 0], model.encodings):
        assert seen.shape == (3, 2, 8, 8) and torch.equal(seen[:, :1], condition)
        assert torch.equal(encoding, diffusion.time_encodings[t].expand(3, -1))


def test_unconditional_sampling_needs_only_a_shape(diffusion):
    model = Recorder(in_channels=2, out_channels=2)
    images = DDIMSampler(sampling_steps=5)(diffusion, model, shape=(2, 2, 4, 4), progress=False)
    assert images.shape == (2, 2, 4, 4) and len(model.inputs) == 5
    with pytest.raises(ValueError, match="shape"):
        DDIMSampler(sampling_steps=5)(diffusion, model, progress=False)


def test_default_is_50_steps():
    diffusion = Diffusion(steps=60, time_encoding_dim=8)
    model = Recorder(in_channels=1)
    DDIMSampler()(diffusion, model, shape=(1, 1, 4, 4), progress=False)
    assert len(model.inputs) == 50


@pytest.mark.parametrize("eta", [0.2, 1.0])
def test_sampling_with_noise_is_reproducible_under_a_seed(diffusion, eta):
    model, condition = Recorder(in_channels=2), torch.rand(2, 1, 8, 8)
    run = lambda seed: DDIMSampler(sampling_steps=6, eta=eta)(
        diffusion, model, condition, generator=torch.Generator().manual_seed(seed), progress=False
    )
    assert torch.equal(run(7), run(7))
    assert not torch.allclose(run(7), run(8))


def test_saved_steps_come_in_sampling_order(diffusion):
    model, condition = Recorder(in_channels=2), torch.rand(2, 1, 8, 8)
    chain = DDIMSampler(timesteps=[19, 12, 6, 0])
    images, saved = chain(diffusion, model, condition, save_steps=[0, 12], progress=False)
    assert saved.shape == (2, 2, 1, 8, 8)
    assert torch.equal(saved[0], model.inputs[2][:, 1:])  # after step 12 comes the model's input at 6
    assert torch.equal(saved[1], images)


def test_steps_are_given_one_way_only(diffusion):
    with pytest.raises(ValueError, match="either sampling_steps or timesteps"):
        DDIMSampler(sampling_steps=4, timesteps=[19, 0])(diffusion, Recorder(2), torch.rand(1, 1, 4, 4), progress=False)
    with pytest.raises(ValueError, match=r"within 1\.\.20"):
        DDIMSampler(sampling_steps=0)(diffusion, Recorder(2), torch.rand(1, 1, 4, 4), progress=False)


def test_sampling_runs_without_autograd(diffusion):
    images = DDIMSampler(sampling_steps=3)(diffusion, Recorder(2), torch.rand(1, 1, 4, 4), progress=False)
    assert not images.requires_grad
