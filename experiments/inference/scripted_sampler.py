"""The whole deterministic DDIM sampler as one TorchScript module: widefield in, super-resolved image out.

    sampler = ScriptedDDIM(predictor.model, predictor.diffusion, sampling_steps=10, seed=0)
    scripted = torch.jit.script(sampler)            # what experiments.export packs as the model's weights
    sr = scripted(widefield)                        # [B, 1, H, W] in [-1, 1] in and out

Tools such as deepImageJ and ilastik call a model once on one tensor and seed nothing, so the chain lives
inside ``forward`` and its start x_T comes from :func:`ddpm.hashed_noise.hashed_normal` (a hash of
the seed fixed at export and each pixel's position), never from a random state. eta = 0, so nothing
else is random.

Each step is Song et al.'s Eq. 12 with eta = 0, as :func:`ddpm.ddim.ddim_step` computes it, written
again here because that function takes a :class:`ddpm.Diffusion`, which TorchScript cannot compile. The
numbers come from the same place: the step coefficients from :func:`ddpm.ddim.ddim_coefficients` (as
Python floats, as there), the x0 tables and time encodings are the Diffusion's own float32 entries,
so the module reproduces ``ddpm.DDIMSampler(sampling_steps)(..., x_T=hashed_normal(...))`` to rounding.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from ddpm import Diffusion
from ddpm.ddim import ddim_coefficients, ddim_timesteps
from ddpm.diffusion import REGRESSION_STEP
from ddpm.hashed_noise import hashed_normal
from experiments.data.task import enlarge


class ScriptedDDIM(nn.Module):
    """Deterministic DDIM (eta = 0, clamped x0, uniform spacing) over ``sampling_steps`` network calls.

    Args:
        network: the noise predictor, called as ``network(cat([widefield, x_t], 1), t_encoding)``;
            it must compile with ``torch.jit.script`` (the project's UNet does). Its weights are frozen.
        diffusion: the schedule the network was trained with (its tables are read once, here).
        sampling_steps: network evaluations per image, fixed in the module.
        seed: seed of x_T (:func:`ddpm.hashed_noise.hashed_normal`), fixed in the module.
        size_multiple: image sides must be multiples of this (the U-Net's 2^(depth-1)), after enlargement.
        scale: a native-task model's 2: the input is first enlarged onto the output's grid
            (:func:`experiments.data.task.enlarge`), as in training.
    """

    def __init__(self, network: nn.Module, diffusion: Diffusion, sampling_steps: int, seed: int, size_multiple: int,
                 scale: int = 1) -> None:
        super().__init__()
        self.scale = scale
        self.network = network.eval().requires_grad_(False)
        chain = ddim_timesteps(diffusion.steps, sampling_steps)
        coefficients = ddim_coefficients(diffusion, chain, eta=0.0)
        tables = diffusion.tables
        index = torch.tensor(chain, device=tables.x0_coef_xt.device)
        # One row per step of the chain, in sampling order.
        self.register_buffer("time_encodings", diffusion.time_encodings[index].float().cpu())
        self.register_buffer("x0_coef_xt", tables.x0_coef_xt[index].float().cpu())
        self.register_buffer("x0_coef_noise", tables.x0_coef_noise[index].float().cpu())
        self.register_buffer("sqrt_alpha_bar", tables.sqrt_alpha_bar[index].float().cpu())
        self.register_buffer("sqrt_one_minus_alpha_bar", tables.sqrt_one_minus_alpha_bar[index].float().cpu())
        self.x0_coef: List[float] = [coefficients[t].x0_coef for t in chain]
        self.noise_coef: List[float] = [coefficients[t].noise_coef for t in chain]
        self.timesteps: List[int] = chain
        self.seed = seed
        self.size_multiple = size_multiple

    def forward(self, widefield: torch.Tensor) -> torch.Tensor:
        """widefield [B, 1, h, w] float32 in [-1, 1] -> [B, 1, H, W] in [-1, 1], H, W = scale x h, w (multiples
        of ``size_multiple``)."""
        if widefield.dim() != 4 or widefield.size(1) != 1:
            raise ValueError(f"expected a widefield image of shape [B, 1, H, W], got {widefield.shape}")
        widefield = enlarge(widefield, self.scale)
        height, width = widefield.size(2), widefield.size(3)
        if height % self.size_multiple != 0 or width % self.size_multiple != 0:
            raise ValueError(
                f"image size {height} x {width} is not a multiple of {self.size_multiple}; "
                "crop or pad it (bioimage.io tools do so from the model's size step)"
            )
        batch = widefield.size(0)
        x = hashed_normal([batch, 1, height, width], self.seed, widefield.device)
        for i in range(len(self.timesteps)):
            encoding = self.time_encodings[i].expand(batch, -1)
            noise = self.network(torch.cat([widefield, x], dim=1), encoding)
            # Eq. 7 / 27, clamped, then the noise re-derived from Eq. 3 (as ddpm.ddim.ddim_step).
            x0 = (self.x0_coef_xt[i] * x - self.x0_coef_noise[i] * noise).clamp(-1.0, 1.0)
            noise = (x - self.sqrt_alpha_bar[i] * x0) / self.sqrt_one_minus_alpha_bar[i]
            x = self.x0_coef[i] * x0 + self.noise_coef[i] * noise
        return x


class ScriptedRegression(nn.Module):
    """The regression baseline's one evaluation (:class:`ddpm.samplers.RegressionSampler`): the network
    sees ``cat([widefield, 0])`` and the encoding of :data:`ddpm.diffusion.REGRESSION_STEP`."""

    def __init__(self, network: nn.Module, diffusion: Diffusion, size_multiple: int, scale: int = 1) -> None:
        super().__init__()
        self.scale = scale
        self.network = network.eval().requires_grad_(False)
        self.register_buffer("time_encoding", diffusion.time_encodings[diffusion.steps + REGRESSION_STEP].float().cpu())
        self.size_multiple = size_multiple

    def forward(self, widefield: torch.Tensor) -> torch.Tensor:
        """widefield [B, 1, h, w] float32 in [-1, 1] -> [B, 1, scale h, scale w] (multiples of ``size_multiple``)."""
        if widefield.dim() != 4 or widefield.size(1) != 1:
            raise ValueError(f"expected a widefield image of shape [B, 1, H, W], got {widefield.shape}")
        widefield = enlarge(widefield, self.scale)
        if widefield.size(2) % self.size_multiple != 0 or widefield.size(3) % self.size_multiple != 0:
            raise ValueError(
                f"image size {widefield.size(2)} x {widefield.size(3)} is not a multiple of {self.size_multiple}; "
                "crop or pad it (bioimage.io tools do so from the model's size step)"
            )
        encoding = self.time_encoding[None].expand(widefield.size(0), -1)
        return self.network(torch.cat([widefield, torch.zeros_like(widefield)], dim=1), encoding)


def script_sampler(
    network: nn.Module, diffusion: Diffusion, sampling_steps: int, seed: int, size_multiple: int, regression: bool = False,
    scale: int = 1,
) -> torch.jit.ScriptModule:
    """:class:`ScriptedDDIM` (or, for a regression baseline, :class:`ScriptedRegression`) compiled with
    ``torch.jit.script``, on the CPU (save it with ``.save(path)``)."""
    module = ScriptedRegression(network, diffusion, size_multiple, scale) if regression else ScriptedDDIM(
        network, diffusion, sampling_steps, seed, size_multiple, scale)
    return torch.jit.script(module.cpu())
