"""The sampling loop: shapes, seeds, conditioning, saved steps, and an oracle that recovers x0."""

import pytest
import torch
from torch import nn

from ddpm import SAMPLERS, DDIMSampler, Diffusion, SimpleSampler, X0Sampler, run_chain


class Recorder(nn.Module):
    """A small deterministic noise predictor that remembers every input it saw."""

    def __init__(self, in_channels: int, out_channels: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x, t_encoding):
        self.inputs.append(x.clone())
        return self.conv(x) * 0.1 + t_encoding[:, :1, None, None]


class Oracle(nn.Module):
    """Returns the exact noise that takes a known x0 to the x_t it is given (reading t from its encoding)."""

    def __init__(self, diffusion: Diffusion, x0: torch.Tensor):
        super().__init__()
        self.diffusion, self.x0 = diffusion, x0

    def forward(self, x_t, t_encoding):
        t = (self.diffusion.time_encodings[None] - t_encoding[:, None]).abs().sum(-1).argmin(1)
        tables = self.diffusion.tables
        shape = (-1, 1, 1, 1)
        return (x_t - tables.sqrt_alpha_bar[t].view(shape) * self.x0) / tables.sqrt_one_minus_alpha_bar[t].view(shape)


@pytest.fixture
def diffusion():
    return Diffusion(steps=12, beta_start=1e-3, beta_end=0.2, time_encoding_dim=8)


def test_conditional_sampling_feeds_condition_then_noisy_image(diffusion):
    model, condition = Recorder(in_channels=2), torch.rand(3, 1, 8, 8) * 2 - 1
    images = SimpleSampler()(diffusion, model, condition, progress=False)
    assert images.shape == (3, 1, 8, 8)
    assert len(model.inputs) == diffusion.steps
    for seen in model.inputs:
        assert seen.shape == (3, 2, 8, 8)
        assert torch.equal(seen[:, :1], condition)


def test_unconditional_sampling_needs_only_a_shape(diffusion):
    model = Recorder(in_channels=2, out_channels=2)
    images = SimpleSampler()(diffusion, model, shape=(2, 2, 4, 4), progress=False)
    assert images.shape == (2, 2, 4, 4) and model.inputs[0].shape == (2, 2, 4, 4)
    with pytest.raises(ValueError, match="shape"):
        SimpleSampler()(diffusion, model, progress=False)


@pytest.mark.parametrize("sampler", ["simple", "x0"])
def test_sampling_is_reproducible_under_a_seed(diffusion, sampler):
    model, condition = Recorder(in_channels=2), torch.rand(2, 1, 8, 8)
    run = lambda seed: SAMPLERS[sampler]()(
        diffusion, model, condition, generator=torch.Generator().manual_seed(seed), progress=False
    )
    assert torch.equal(run(7), run(7))
    assert not torch.allclose(run(7), run(8))


def test_saved_steps_come_in_sampling_order(diffusion):
    model, condition = Recorder(in_channels=2), torch.rand(2, 1, 8, 8)
    images, saved = SimpleSampler()(diffusion, model, condition, save_steps=[0, 9, 4], progress=False)
    assert saved.shape == (3, 2, 1, 8, 8)
    # The image after step t is the model's input at the next step, t - 1 (steps run 11, 10, .., 0).
    inputs_at = {diffusion.steps - 1 - i: x[:, 1:] for i, x in enumerate(model.inputs)}
    assert torch.equal(saved[0], inputs_at[8])
    assert torch.equal(saved[1], inputs_at[3])
    assert torch.equal(saved[2], images)


def test_saving_no_step_gives_an_empty_stack(diffusion):
    _, saved = SimpleSampler()(diffusion, Recorder(2), torch.rand(1, 1, 4, 4), save_steps=[], progress=False)
    assert saved.shape == (0, 1, 1, 4, 4)


def test_sampling_runs_without_autograd(diffusion):
    images = SimpleSampler()(diffusion, Recorder(2), torch.rand(1, 1, 4, 4), progress=False)
    assert not images.requires_grad


@pytest.mark.parametrize("sampler", ["simple", "x0"])
def test_noiseless_chain_with_an_oracle_returns_x0(sampler):
    diffusion = Diffusion(steps=50, beta_start=1e-4, beta_end=0.05, time_encoding_dim=32, dtype=torch.float64)
    x0 = torch.rand(2, 1, 6, 6, dtype=torch.float64) * 2 - 1
    x_T, _ = diffusion.forward_diffusion(x0, diffusion.steps - 1)

    step = SAMPLERS[sampler]()

    def noiseless(x_t, t, t_prev, predicted_noise, z):
        return step.step(diffusion, x_t, t, predicted_noise, None)

    images, _ = run_chain(diffusion, Oracle(diffusion, x0), x_T, range(49, -1, -1), noiseless, progress=False)
    torch.testing.assert_close(images, x0, rtol=0, atol=1e-10)


def test_model_kwargs_reach_the_model(diffusion):
    class Labelled(nn.Module):
        def forward(self, x, t_encoding, y):
            return torch.zeros_like(x[:, 1:]) + y.view(-1, 1, 1, 1)

    images = SimpleSampler()(
        diffusion, Labelled(), torch.zeros(2, 1, 4, 4), model_kwargs={"y": torch.tensor([0.0, 1.0])}, progress=False
    )
    assert images.shape == (2, 1, 4, 4)


class Zero(nn.Module):
    """Predicts no noise, so each step's mean is x_t / sqrt(alpha_t) and all spread comes from sigma z."""

    def forward(self, x, t_encoding):
        return torch.zeros_like(x[:, -1:])


def two_step_spread(sampler) -> float:
    """Standard deviation of the images after a two-step chain (t = 1 then t = 0) from x_T = 0."""
    diffusion = Diffusion(steps=2, beta_start=0.1, beta_end=0.2, time_encoding_dim=8, dtype=torch.float64)
    x_T = torch.zeros(1, 1, 100, 100, dtype=torch.float64)
    images = sampler(diffusion, Zero(), x_T=x_T, generator=torch.Generator().manual_seed(0), progress=False)
    return images.std().item()


# The tutorial's schedule with T = 2: beta_0 = 0.1, beta_1 = 0.2 (alpha_0 = 0.9, alpha_bar_1 = 0.72).
# The step from t = 1 lands on t = 0 and adds sigma_1 z; the final step, from t = 0, adds nothing and
# divides by sqrt(alpha_0). So the spread is sigma_1 / sqrt(0.9) with, by the paper's defaults,
# Eq. 11: sigma_1^2 = beta_1 = 0.2; Appendix B and DDIM eta = 1: beta_tilde_1 = (1 - 0.9) / (1 - 0.72) * 0.2 (Eq. 6).
BETA_1, BETA_TILDE_1 = 0.2, 0.1 / 0.28 * 0.2


@pytest.mark.parametrize(
    "sampler, variance",
    [
        (SimpleSampler(), BETA_1),
        (X0Sampler(clamp=False), BETA_TILDE_1),
        (DDIMSampler(sampling_steps=2, eta=1.0), BETA_TILDE_1),
    ],
)
def test_the_step_that_lands_on_t0_adds_the_default_noise(sampler, variance):
    # 10,000 pixels: the sample standard deviation is within 2 % of the true one (5 sigma).
    assert two_step_spread(sampler) == pytest.approx((variance / 0.9) ** 0.5, rel=0.02)


def test_defaults_are_the_papers_variances():
    """Eq. 11 (the tutorial's Listing 10) uses beta; Appendix B uses beta_tilde; DDIM is deterministic."""
    assert two_step_spread(SimpleSampler()) == pytest.approx(two_step_spread(SimpleSampler(variance="beta")), rel=0)
    assert two_step_spread(X0Sampler()) == pytest.approx(two_step_spread(X0Sampler(variance="beta_tilde")), rel=0)
    assert two_step_spread(SimpleSampler()) == pytest.approx((BETA_1 / 0.9) ** 0.5, rel=0.02)
    assert two_step_spread(X0Sampler()) == pytest.approx((BETA_TILDE_1 / 0.9) ** 0.5, rel=0.02)
    assert two_step_spread(DDIMSampler()) == 0.0


@pytest.mark.parametrize("name", ["simple", "x0", "ddim"])
def test_every_sampler_starts_from_a_given_x_T(diffusion, name):
    model, condition = Recorder(in_channels=2), torch.rand(2, 1, 4, 4)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    SAMPLERS[name]()(diffusion, model, condition, x_T=x_T, generator=torch.Generator().manual_seed(2), progress=False)
    assert torch.equal(model.inputs[0][:, 1:], x_T)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: DDIMSampler(eta=1.5), r"eta must be within \[0, 1\]"),
        (lambda: DDIMSampler(spacing="cubic"), "unknown DDIM spacing"),
        (lambda: DDIMSampler(sampling_steps=4, timesteps=[3, 0]), "either sampling_steps or timesteps"),
        (lambda: DDIMSampler(timesteps=[3, 3, 0]), "distinct"),
    ],
)
def test_options_are_checked_when_the_sampler_is_built(build, message):
    with pytest.raises(ValueError, match=message):
        build()
