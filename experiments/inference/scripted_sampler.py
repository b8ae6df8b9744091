"""The whole deterministic sampler as one TorchScript module: widefield in, super-resolved image out.

    sampler = ScriptedSolver(predictor.model, predictor.diffusion, "dpmpp2m", sampling_steps=4, seed=0, size_multiple=4)
    scripted = torch.jit.script(sampler)            # what experiments.export packs as the model's weights
    sr = scripted(widefield)                        # [B, 1, H, W] in [-1, 1] in and out

Tools such as deepImageJ and ilastik call a model once on one tensor and seed nothing, so the chain lives
inside ``forward`` and its start x_T comes from :func:`ddpm.hashed_noise.hashed_normal` (a hash of
the seed fixed at export and each pixel's position), never from a random state. The samplers are
deterministic, so nothing else is random.

Both exported samplers are linear multistep chains: each step is ``x = a x + b x0 + c x0_previous``
with the clamped data prediction x0 of Eq. 7 / 27, and :func:`ddpm.dpm_solver.multistep_rows` gives
``(a, b, c)``: DPM-Solver++(2M) (:class:`ddpm.DPMSolverSampler`), or its first order along DDIM's
chain, which is deterministic DDIM (Song et al. Eq. 12, eta = 0; tested equal to
:class:`ddpm.DDIMSampler`). The loop is written again here because the samplers take a
:class:`ddpm.Diffusion`, which TorchScript cannot compile; the numbers come from the same place (the
rows as Python floats, the x0 tables and time encodings the Diffusion's own float32 entries), so the
module reproduces the eager sampler from ``x_T = hashed_normal(...)`` to rounding.
"""

from __future__ import annotations

from typing import List, Literal, get_args

import torch
from torch import nn

from ddpm import DDIMSampler, Diffusion, DPMSolverSampler
from ddpm.diffusion import REGRESSION_STEP
from ddpm.dpm_solver import CLEAN, multistep_rows
from ddpm.hashed_noise import hashed_normal
from experiments.data.task import enlarge

ExportSampler = Literal["dpmpp2m", "ddim"]
EXPORT_SAMPLERS: tuple[str, ...] = get_args(ExportSampler)


def solver_steps(diffusion: Diffusion, sampler: ExportSampler, sampling_steps: int) -> tuple[list[int], list]:
    """The chain (evaluated steps, descending) and its :class:`~ddpm.dpm_solver.MultistepRow` of each step."""
    if sampler == "dpmpp2m":
        solver = DPMSolverSampler(sampling_steps)
        chain = solver.chain(diffusion.steps)
        return chain, solver.rows(diffusion, chain)
    if sampler == "ddim":
        chain = DDIMSampler(sampling_steps).chain(diffusion.steps)
        return chain, multistep_rows(diffusion, chain, [*chain[1:], CLEAN], order=1)
    raise ValueError(f"unknown export sampler {sampler!r}; choose one of {EXPORT_SAMPLERS}")


class ScriptedSolver(nn.Module):
    """A deterministic sampler (``"dpmpp2m"`` or ``"ddim"``, clamped x0, uniform spacing) over ``sampling_steps``
    network calls.

    Args:
        network: the noise predictor, called as ``network(cat([widefield, x_t], 1), t_encoding)``;
            it must compile with ``torch.jit.script`` (the project's UNet does). Its weights are frozen.
        diffusion: the schedule the network was trained with (its tables are read once, here).
        sampler: which chain (:data:`EXPORT_SAMPLERS`).
        sampling_steps: network evaluations per image, fixed in the module.
        seed: seed of x_T (:func:`ddpm.hashed_noise.hashed_normal`), fixed in the module.
        size_multiple: image sides must be multiples of this (the U-Net's 2^(depth-1)), after enlargement.
        scale: a native-task model's 2: the input is first enlarged onto the output's grid
            (:func:`experiments.data.task.enlarge`), as in training.
    """

    def __init__(self, network: nn.Module, diffusion: Diffusion, sampler: ExportSampler, sampling_steps: int, seed: int,
                 size_multiple: int, scale: int = 1) -> None:
        super().__init__()
        self.scale = scale
        self.network = network.eval().requires_grad_(False)
        chain, rows = solver_steps(diffusion, sampler, sampling_steps)
        tables = diffusion.tables
        index = torch.tensor(chain, device=tables.x0_coef_xt.device)
        # One row per step of the chain, in sampling order.
        self.register_buffer("time_encodings", diffusion.time_encodings[index].float().cpu())
        self.register_buffer("x0_coef_xt", tables.x0_coef_xt[index].float().cpu())
        self.register_buffer("x0_coef_noise", tables.x0_coef_noise[index].float().cpu())
        self.state_coef: List[float] = [row.a for row in rows]
        self.x0_coef: List[float] = [row.b for row in rows]
        self.previous_coef: List[float] = [row.c for row in rows]
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
        previous = torch.zeros_like(x)
        for i in range(len(self.timesteps)):
            encoding = self.time_encodings[i].expand(batch, -1)
            noise = self.network(torch.cat([widefield, x], dim=1), encoding)
            x0 = (self.x0_coef_xt[i] * x - self.x0_coef_noise[i] * noise).clamp(-1.0, 1.0)  # Eq. 7 / 27, clamped
            x = self.state_coef[i] * x + self.x0_coef[i] * x0
            if self.previous_coef[i] != 0.0:
                x = x + self.previous_coef[i] * previous
            previous = x0
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
    network: nn.Module, diffusion: Diffusion, sampler: ExportSampler, sampling_steps: int, seed: int, size_multiple: int,
    regression: bool = False, scale: int = 1,
) -> torch.jit.ScriptModule:
    """:class:`ScriptedSolver` (or, for a regression baseline, :class:`ScriptedRegression`) compiled with
    ``torch.jit.script``, on the CPU (save it with ``.save(path)``)."""
    module = ScriptedRegression(network, diffusion, size_multiple, scale) if regression else ScriptedSolver(
        network, diffusion, sampler, sampling_steps, seed, size_multiple, scale)
    return torch.jit.script(module.cpu())
