"""Sampling for evaluation: sampler choice and the average of several samples."""

import pytest
import torch
from torch import nn

from ddpm import Diffusion
from experiments.config import EvalConfig
from experiments.evaluation import sample


class Shrink(nn.Module):
    """A fixed noise predictor: a fraction of the noisy channel."""

    def forward(self, x, t_encoding):
        return 0.5 * x[:, -1:]


@pytest.fixture
def diffusion():
    return Diffusion(steps=20, beta_start=1e-3, beta_end=0.2, time_encoding_dim=8)


def test_one_sample_has_no_spread(diffusion):
    mean, std = sample(Shrink(), diffusion, torch.zeros(2, 1, 8, 8), EvalConfig(), torch.Generator().manual_seed(0))
    assert mean.shape == (2, 1, 8, 8) and std is None


@pytest.mark.parametrize("sampler", ["simple", "x0", "ddim"])
def test_mean_and_std_are_over_independent_samples(diffusion, sampler):
    condition = torch.rand(2, 1, 8, 8) * 2 - 1
    config = EvalConfig(sampler=sampler, sampling_steps=5, eta=1.0, samples=4)
    mean, std = sample(Shrink(), diffusion, condition, config, torch.Generator().manual_seed(3))
    # The same draws, made by hand: the 4 samples of each input are one chain on the repeated batch.
    repeated = condition.repeat(4, 1, 1, 1)
    generator = torch.Generator().manual_seed(3)
    if sampler == "ddim":
        draws = diffusion.ddim_sample(Shrink(), repeated, num_steps=5, eta=1.0, generator=generator, progress=False)
    else:
        draws = diffusion.reverse_diffusion(Shrink(), repeated, sampler=sampler, generator=generator, progress=False)
    draws = draws.view(4, 2, 1, 8, 8)
    torch.testing.assert_close(mean, draws.mean(0))
    torch.testing.assert_close(std, draws.std(0, unbiased=False))
    assert (std > 0).all()


def test_samples_must_be_positive(diffusion):
    with pytest.raises(ValueError, match="eval.samples"):
        sample(Shrink(), diffusion, torch.zeros(1, 1, 4, 4), EvalConfig(samples=0))
