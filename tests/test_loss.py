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
