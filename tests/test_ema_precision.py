"""EMA weights and the precision options of training."""

import pytest
import torch
from torch import nn

from experiments.config.presets import PRESETS
from experiments.training.ema import EMA
from experiments.runtime import autocast, resolve_precision


def test_ema_follows_its_recursion():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, 100, 33):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(step)
        model(torch.randn(4, 3))  # moves the BatchNorm running statistics, and its integer counter
        ema.update(model, step)
        decay = min(0.9, (1 + step) / (10 + step))  # warm-up, then the configured decay
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                expected[name] = decay * expected[name] + (1 - decay) * value
            else:
                expected[name] = value.clone()
    for name, value in ema.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=name)
    assert not any(p.requires_grad for p in ema.model.parameters())
    assert ema.decay_at(1) == 2 / 11 and ema.decay_at(10_000) == 0.9


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_ema_decay_must_lie_in_the_open_interval(decay):
    with pytest.raises(ValueError, match="ema_decay"):
        EMA(nn.Linear(1, 1), decay)


def test_precision_defaults_to_fp32_off_cuda_and_refuses_bf16_there():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        resolve_precision("bf16", cpu)
    with pytest.raises(ValueError, match="choose one of"):
        resolve_precision("fp8", cpu)


def test_fp32_autocast_changes_nothing():
    layer, x = nn.Linear(4, 4), torch.randn(2, 4)
    with autocast(torch.device("cpu"), "fp32"):
        assert layer(x).dtype == torch.float32


def test_tutorial_presets_keep_every_extra_off_and_l1_fast_turns_them_on():
    for name in ("mse", "l1"):
        train = PRESETS[name].train
        assert (train.ema_decay, train.precision, train.tf32, train.compile) == (None, "fp32", False, False)
        assert PRESETS[name].sampling.sampler == "simple"
    fast = PRESETS["l1-fast"]
    assert fast.train.loss == "l1" and fast.train.ema_decay == 0.999 and fast.train.precision == "auto"
    assert fast.sampling.sampler == "ddim" and fast.sampling.sampling_steps == 50
    assert fast.network == PRESETS["l1"].network and fast.diffusion == PRESETS["l1"].diffusion
