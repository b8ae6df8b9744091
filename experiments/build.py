"""The network and the diffusion that a run's configuration describes, for training and for inference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from ddpm import Diffusion, RegressionSampler
from ddpm.settings import UsageError
from experiments.config.schema import RunConfig, output_channels
from unet import build_network


class ResidualModel(nn.Module):
    """Predict and refine (:mod:`ddpm.residual`): the refiner network beside the frozen regression network whose
    output, the base, it refines.

    ``forward`` is the refiner's, the noise predictor that the loss and the samplers call on ``[c, base, x_t]``;
    :meth:`base_output` is the regression's one evaluation. Both networks' weights are in the state dict, so
    every checkpoint of a residual run holds its regression part (its configuration: the checkpoint's ``base``).
    """

    def __init__(self, refiner: nn.Module, base: nn.Module, base_diffusion: Diffusion, base_channels: int = 1) -> None:
        super().__init__()
        self.refiner = refiner
        self.base = base.eval().requires_grad_(False)
        self.base_diffusion = base_diffusion
        self.base_channels = base_channels  # of the regression's output: 2 for a probabilistic one

    def train(self, mode: bool = True) -> "ResidualModel":
        super().train(mode)
        self.base.eval()  # frozen, in training too
        return self

    def forward(self, x: torch.Tensor, t_encoding: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.refiner(x, t_encoding, **kwargs)

    @torch.no_grad()
    def base_output(self, condition: torch.Tensor,
                    run: Callable[[nn.Module], Callable[..., torch.Tensor]] = lambda network: network) -> torch.Tensor:
        """The base [B, 1, H, W] of inputs [B, C, H, W]: the regression's output as its own sampler gives it
        (:class:`ddpm.samplers.RegressionSampler`), its image channel (a probabilistic regression's std is not used).
        ``run`` wraps the regression network as the caller runs networks (prediction: on tiles, blended before the
        clamp)."""
        return RegressionSampler()(self.base_diffusion, run(self.base), condition, progress=False)[:, :1]


def refines(model: nn.Module) -> bool:
    """Whether ``model`` is a residual model, sampled on the residual of its base (:class:`ResidualModel`)."""
    return isinstance(model, ResidualModel)


def base_of(model: nn.Module, condition: torch.Tensor) -> torch.Tensor | None:
    """A residual model's base of inputs ``condition`` (:meth:`ResidualModel.base_output`), None for any other model:
    what :meth:`experiments.inference.sampling.Sampling.draw` takes as ``base``."""
    return model.base_output(condition) if refines(model) else None


def base_config(record: dict[str, Any]) -> RunConfig:
    """The regression's configuration that a residual checkpoint's base record holds (:data:`experiments.checkpoint.BASE_KEY`)."""
    return RunConfig.from_dict(record["config"])


def input_channels(config: RunConfig) -> int:
    """The channels the network takes: the noisy image, after the input for a conditional run and after the input
    and the base for a residual one."""
    return 1 + config.train.conditional + (config.train.objective == "residual")


def build_model(config: RunConfig, device: torch.device, base: RunConfig | None = None) -> nn.Module:
    """The network registered under the config's kind (``unet.build_network``), checked against the
    conditioning mode; for a residual run, a :class:`ResidualModel` of it and the network of ``base``, the
    regression's configuration (weights are loaded by the caller)."""
    expected = input_channels(config)
    if config.network.in_channels != expected:
        mode = ("residual (low-resolution image + regression output + noisy residual)"
                if config.train.objective == "residual" else
                "conditional (low-resolution image + noisy image)" if config.train.conditional else "unconditional")
        raise UsageError(
            f"a {mode} run feeds {expected} input channel(s), but network.in_channels is "
            f"{config.network.in_channels}; set --network.in_channels {expected}"
        )
    network = build_network(config.network).to(device)
    if config.train.objective != "residual":
        return network
    if base is None:
        raise ValueError("a residual model needs the configuration of its regression part (base)")
    return ResidualModel(network, build_network(base.network).to(device), build_diffusion(base, device),
                         output_channels(base))



def build_diffusion(config: RunConfig, device: torch.device) -> Diffusion:
    """The forward and reverse processes (Eqs. 1-11) of ``config.diffusion``, with the network's
    time-encoding width."""
    return Diffusion(**asdict(config.diffusion), time_encoding_dim=config.network.time_encoding_dim, device=device)
