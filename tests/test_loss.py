"""Training loss (Eq. 12-13)."""

import pytest
import torch
from torch import nn

from ddpm import Diffusion
from test_sampling import Oracle


class StepRecorder(nn.Module):
    """Predicts zeros and records the time encodings and noisy inputs it was given."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, x, t_encoding):
        self.calls.append((x.detach().clone(), t_encoding.clone()))
        return torch.zeros_like(x[:, -1:]) + self.bias


def decode_steps(diffusion, encodings):
    return (diffusion.time_encodings[None] - encodings[:, None]).abs().sum(-1).argmin(1)


@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_loss_compares_predicted_with_true_noise(loss):
    diffusion = Diffusion(steps=30, beta_start=1e-3, beta_end=0.1, time_encoding_dim=16, dtype=torch.float64)
    x0, condition = torch.rand(4, 1, 5, 5, dtype=torch.float64) * 2 - 1, torch.rand(4, 1, 5, 5, dtype=torch.float64)
    model = StepRecorder()
    value = diffusion.training_loss(model, x0, condition, loss=loss, generator=torch.Generator().manual_seed(0))
    x, encoding = model.calls[0]
    assert torch.equal(x[:, :1], condition)
    t = decode_steps(diffusion, encoding)
    # The true noise, recovered from x_t by inverting Eq. 3.
    noise = (x[:, 1:] - diffusion.tables.sqrt_alpha_bar[t].view(-1, 1, 1, 1) * x0) / diffusion.tables.sqrt_one_minus_alpha_bar[t].view(-1, 1, 1, 1)
    expected = noise.pow(2).mean() if loss == "mse" else noise.abs().mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert model.bias.grad is not None


@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_an_oracle_has_zero_loss(loss):
    diffusion = Diffusion(steps=30, beta_start=1e-3, beta_end=0.1, time_encoding_dim=32, dtype=torch.float64)
    x0 = torch.rand(6, 1, 4, 4, dtype=torch.float64) * 2 - 1
    assert diffusion.training_loss(Oracle(diffusion, x0), x0, loss=loss).item() < 1e-10


def test_time_steps_are_uniform_over_all_steps():
    """Chi-square goodness of fit of the drawn steps to U{0 .. T-1}; the 0.999 quantile of chi2(9) is 27.9."""
    diffusion = Diffusion(steps=10, beta_start=1e-3, beta_end=0.1, time_encoding_dim=16)
    model, generator = StepRecorder(), torch.Generator().manual_seed(0)
    for _ in range(50):
        diffusion.training_loss(model, torch.zeros(100, 1, 1, 1), generator=generator)
    steps = torch.cat([decode_steps(diffusion, encoding) for _, encoding in model.calls])
    counts = torch.bincount(steps, minlength=10).double()
    expected = len(steps) / 10
    assert ((counts - expected) ** 2 / expected).sum() < 27.9


def test_unknown_loss_names_the_choices():
    diffusion = Diffusion(steps=5, time_encoding_dim=8)
    with pytest.raises(ValueError, match="choose one of"):
        diffusion.training_loss(StepRecorder(), torch.zeros(1, 1, 2, 2), loss="huber")


# --- min-SNR weighting and the regression baseline -----------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=20, deadline=None)
@given(steps=st.integers(2, 200), gamma=st.floats(0.1, 20.0), seed=st.integers(0, 2**16))
def test_min_snr_weights_follow_hang_et_al_from_the_betas(steps, gamma, seed):
    diffusion = Diffusion(steps=steps, beta_start=1e-4, beta_end=0.05, time_encoding_dim=8, dtype=torch.float64)
    t = torch.randint(0, steps, (16,), generator=torch.Generator().manual_seed(seed))
    # An independent route: alpha_bar as the running product of 1 - beta (Eq. 2), SNR = alpha_bar / (1 - alpha_bar).
    betas = torch.linspace(1e-4, 0.05, steps, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)[t]
    snr = alpha_bar / (1 - alpha_bar)
    expected = torch.minimum(snr, torch.full_like(snr, gamma)) / snr
    assert torch.allclose(diffusion.min_snr_weights(t, gamma).double(), expected, rtol=1e-5)
    assert (diffusion.min_snr_weights(t, gamma) <= 1).all()


def test_min_snr_weighting_weighs_each_image_by_its_step():
    diffusion = Diffusion(steps=30, beta_start=1e-3, beta_end=0.1, time_encoding_dim=16, dtype=torch.float64)
    x0, condition = torch.rand(4, 1, 5, 5, dtype=torch.float64) * 2 - 1, torch.rand(4, 1, 5, 5, dtype=torch.float64)
    t, noise = torch.tensor([0, 5, 15, 29]), torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = StepRecorder()  # predicts zeros: each image's loss is the mean square of its noise
    weighted = diffusion.training_loss(model, x0, condition, loss="mse", t=t, noise=noise, weighting="min_snr",
                                       snr_gamma=5.0)
    per_image = noise.pow(2).flatten(1).mean(1)
    assert weighted.item() == pytest.approx((diffusion.min_snr_weights(t, 5.0).double() * per_image).mean().item())
    plain = diffusion.training_loss(model, x0, condition, loss="mse", t=t, noise=noise)
    assert plain.item() == pytest.approx(per_image.mean().item())  # "none" is the tutorial's plain mean


@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_the_regression_loss_compares_one_evaluation_with_the_target(loss):
    from ddpm import RegressionSampler

    diffusion = Diffusion(steps=30, beta_start=1e-3, beta_end=0.1, time_encoding_dim=16, dtype=torch.float64)
    x0, condition = torch.rand(4, 1, 5, 5, dtype=torch.float64) * 2 - 1, torch.rand(4, 1, 5, 5, dtype=torch.float64)
    model = StepRecorder()
    value = diffusion.regression_loss(model, x0, condition, loss=loss)
    x, encoding = model.calls[0]
    assert torch.equal(x[:, :1], condition) and not x[:, 1:].any()  # the image channel is zero
    assert (decode_steps(diffusion, encoding) == 29).all()  # the last step's encoding
    assert value.item() == pytest.approx((x0.pow(2).mean() if loss == "mse" else x0.abs().mean()).item())
    # The sampler calls the network the same way, once, whatever x_T is: deterministic.
    model.calls.clear()
    out = RegressionSampler()(diffusion, model, condition, x_T=torch.randn(4, 1, 5, 5, dtype=torch.float64),
                              progress=False)
    assert len(model.calls) == 1 and torch.equal(model.calls[0][0], x) and torch.equal(model.calls[0][1], encoding)
    assert torch.equal(out, torch.zeros_like(x0))
