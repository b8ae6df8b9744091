"""Sampling for evaluation: sampler choice and the average of several samples."""

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from ddpm import SAMPLERS, DDIMSampler, Diffusion, register_sampler
from ddpm.settings import UsageError
from experiments.config.schema import SamplingConfig
from experiments.inference.sampling import Sampling, mean_and_spread


class Shrink(nn.Module):
    """A fixed noise predictor: a fraction of the noisy channel."""

    def forward(self, x, t_encoding):
        return 0.5 * x[:, -1:]


def sample(model, diffusion, condition, config, generator=None):
    """Mean and spread of ``config.samples`` samples of each input, drawn in one chain."""
    return mean_and_spread(Sampling(config, diffusion).draw(model, condition, generator))


@pytest.fixture
def diffusion():
    return Diffusion(steps=20, beta_start=1e-3, beta_end=0.2, time_encoding_dim=8)


def test_one_sample_has_no_spread(diffusion):
    mean, std = sample(Shrink(), diffusion, torch.zeros(2, 1, 8, 8), SamplingConfig(), torch.Generator().manual_seed(0))
    assert mean.shape == (2, 1, 8, 8) and std is None


@pytest.mark.parametrize("sampler", ["simple", "x0", "ddim"])
def test_mean_and_std_are_over_independent_samples(diffusion, sampler):
    condition = torch.rand(2, 1, 8, 8) * 2 - 1
    config = SamplingConfig(sampler=sampler, sampling_steps=5, eta=1.0, samples=4)
    mean, std = sample(Shrink(), diffusion, condition, config, torch.Generator().manual_seed(3))
    # The same draws, made by hand: the 4 samples of each input are one chain on the repeated batch.
    repeated = condition.repeat(4, 1, 1, 1)
    generator = torch.Generator().manual_seed(3)
    if sampler == "ddim":
        draws = DDIMSampler(sampling_steps=5, eta=1.0)(diffusion, Shrink(), repeated, generator=generator, progress=False)
    else:
        draws = SAMPLERS[sampler]()(diffusion, Shrink(), repeated, generator=generator, progress=False)
    draws = draws.view(4, 2, 1, 8, 8)
    torch.testing.assert_close(mean, draws.mean(0))
    torch.testing.assert_close(std, draws.std(0, unbiased=False))
    assert (std > 0).all()


def test_samples_must_be_positive(diffusion):
    with pytest.raises(ValueError, match="sampling.samples"):
        sample(Shrink(), diffusion, torch.zeros(1, 1, 4, 4), SamplingConfig(samples=0))


class ConditionOracle(nn.Module):
    """Returns the exact noise (Eq. 3) that takes x0 = its condition channel to the x_t it is given, so
    that every sampler ends on its own image's condition: the output depends on which image it is."""

    def __init__(self, diffusion: Diffusion):
        super().__init__()
        self.diffusion = diffusion

    def forward(self, x, t_encoding):
        condition, x_t = x[:, :1], x[:, 1:]
        t = (self.diffusion.time_encodings[None] - t_encoding[:, None]).abs().sum(-1).argmin(1).view(-1, 1, 1, 1)
        tables = self.diffusion.tables
        return (x_t - tables.sqrt_alpha_bar[t] * condition) / tables.sqrt_one_minus_alpha_bar[t]


@pytest.mark.parametrize("sampler", ["simple", "x0", "ddim"])
def test_each_mean_averages_the_samples_of_its_own_image(sampler):
    # The last step of every sampler (from t = 0, no noise) lands on x0 exactly when given the true noise;
    # so each sample of image i is condition i, and so are their mean and a spread of 0.
    diffusion = Diffusion(steps=20, beta_start=1e-3, beta_end=0.2, time_encoding_dim=8, dtype=torch.float64)
    condition = torch.linspace(-0.9, 0.9, 3 * 16, dtype=torch.float64).view(3, 1, 4, 4)
    ddim = sampler == "ddim"
    config = SamplingConfig(sampler=sampler, sampling_steps=5 if ddim else None, eta=1.0 if ddim else 0.0, samples=4)
    mean, std = sample(ConditionOracle(diffusion), diffusion, condition, config, torch.Generator().manual_seed(3))
    torch.testing.assert_close(mean, condition.float(), rtol=0, atol=1e-5)
    assert std.max() < 1e-5


def test_the_config_offers_the_registered_samplers_and_refuses_others():
    # One vocabulary: the config's choices are ddpm's registry.
    assert tuple(SAMPLERS) == ("simple", "x0", "ddim", "regression", "dpmpp2m")
    for name in SAMPLERS:
        assert isinstance(SamplingConfig(sampler=name).build(), SAMPLERS[name])
    with pytest.raises(UsageError, match="--sampling.sampler 'ddpm'.*dpmpp2m"):
        SamplingConfig(sampler="ddpm")


def test_a_sampler_registered_by_a_fork_runs_through_the_config():
    """A fork's sampler is one class with ``@register_sampler``: the config builds it and its chain runs."""
    try:
        @register_sampler
        @dataclass(frozen=True)
        class Halfway(DDIMSampler):
            name: ClassVar[str] = "halfway"

        config = SamplingConfig(sampler="halfway", sampling_steps=3)
        assert isinstance(config.build(), Halfway) and config.resolved(10).sampling_steps == 3
        with pytest.raises(ValueError, match="already registered"):
            register_sampler(type("Other", (Halfway,), {}))
    finally:
        SAMPLERS.pop("halfway", None)
