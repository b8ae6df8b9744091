"""The whole deterministic sampler as one TorchScript module: widefield in, super-resolved image out.

    sampler = ScriptedSolver(predictor.model, predictor.diffusion, "dpmpp2m", sampling_steps=4, seed=0,
                             layout=predictor.layout())
    scripted = torch.jit.script(sampler)            # what experiments.export packs as the model's weights
    sr = scripted(widefield)                        # [B, 1, H, W] in [-1, 1] in and out

Tools such as deepImageJ and ilastik call a model once on one tensor and seed nothing, so the chain lives
inside ``forward`` and its start x_T comes from :func:`ddpm.hashed_noise.hashed_normal` (a hash of
the seed fixed at export and each pixel's position), never from a random state. The samplers are
deterministic, so nothing else is random.

Both exported samplers are linear multistep chains: each step is ``x = a x + b x0 + c x0_previous``
(:func:`ddpm.dpm_solver.multistep_update`, the eager sampler's own step) with the clamped data prediction
x0 of Eq. 7 / 27, and :func:`ddpm.dpm_solver.multistep_rows` gives ``(a, b, c)``: DPM-Solver++(2M)
(:class:`ddpm.DPMSolverSampler`), or its first order along DDIM's chain, which is deterministic DDIM (Song
et al. Eq. 12, eta = 0; tested equal to :class:`ddpm.DDIMSampler`). Only the loop over the steps is
written here, because the samplers take a :class:`ddpm.Diffusion`, which TorchScript cannot compile; the
numbers come from the same place (the rows as Python floats, the x0 tables and time encodings the
Diffusion's own float32 entries), and the tiles are cut and blended by prediction's own functions
(:mod:`experiments.inference.tiling`), so the module reproduces the eager sampler from ``x_T =
hashed_normal(...)`` to rounding.

This is the one module that calls TorchScript (:func:`script_sampler`, :func:`save_scripted`,
:func:`load_scripted`): moving the package's weights to another format touches this file only.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import List, Literal, NamedTuple, Tuple, get_args

import torch
from torch import nn

from ddpm import DDIMSampler, Diffusion, DPMSolverSampler
from ddpm.diffusion import REGRESSION_STEP
from ddpm.dpm_solver import CLEAN, multistep_rows, multistep_update
from ddpm.hashed_noise import hashed_normal
from experiments.build import ResidualModel, refines
from experiments.data.task import enlarge
from experiments.inference.tiling import (TileLayout, add_tiles, axis_windows, cut_tiles, pad_to_tile, tile_jobs,
                                          tile_positions)

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


class TiledNetwork(nn.Module):
    """The network on overlapping tiles of an image of any size, blended: the scripted twin of
    :func:`experiments.inference.tiling.tiled_network` (the same :func:`~experiments.inference.tiling.tile_positions`
    and :func:`~experiments.inference.tiling.axis_windows`, the same order of tiles in calls of
    ``layout.batch_size``, one time encoding row for every tile), so the package tiles as prediction does."""

    def __init__(self, network: nn.Module, layout: TileLayout, channels: int = 1) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.tile, self.overlap, self.batch_size = layout.tile, layout.overlap, layout.batch_size
        self.channels = channels  # of the network's output

    def forward(self, x: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] with H, W >= tile, encoding [1, D] -> the blended output [B, channels, H, W]."""
        tile = self.tile
        rows, cols = tile_positions(x.size(2), tile, self.overlap), tile_positions(x.size(3), tile, self.overlap)
        row_windows, col_windows = axis_windows(rows, tile), axis_windows(cols, tile)
        jobs = tile_jobs(x.size(0), len(rows), len(cols))
        total = torch.zeros([x.size(0), self.channels, x.size(2), x.size(3)], dtype=x.dtype, device=x.device)
        weights = torch.zeros([x.size(2), x.size(3)], dtype=x.dtype, device=x.device)
        for first in range(0, len(jobs), self.batch_size):
            chunk = jobs[first : first + self.batch_size]
            output = self.network(cut_tiles(x, chunk, rows, cols, tile), encoding)
            add_tiles(total, weights, output, chunk, rows, cols, row_windows, col_windows, tile)
        return total / weights


class PaddedInput(NamedTuple):
    """The widefield on the output's grid, padded to at least one tile, and where the frame lies in it."""

    padded: torch.Tensor
    height: int
    width: int
    top: int
    left: int


class ChainStart(NamedTuple):
    """What a chain starts from: the padded condition, x_T, the previous x0 (zeros) and where the frame lies."""

    padded: torch.Tensor
    x: torch.Tensor
    previous: torch.Tensor
    height: int
    width: int
    top: int
    left: int


def _checked_input(widefield: torch.Tensor, enlargement: int, tile: int) -> PaddedInput:
    """The widefield enlarged onto the output's grid and padded to at least one tile
    (:func:`~experiments.inference.tiling.pad_to_tile`, as prediction pads)."""
    if widefield.dim() != 4 or widefield.size(1) != 1:
        raise ValueError(f"expected a widefield image of shape [B, 1, H, W], got {widefield.shape}")
    widefield = enlarge(widefield, enlargement)
    padded, top, left = pad_to_tile(widefield, tile)
    return PaddedInput(padded, widefield.size(2), widefield.size(3), top, left)


class ScriptedSolver(nn.Module):
    """A deterministic sampler (``"dpmpp2m"`` or ``"ddim"``, clamped x0, uniform spacing) over ``sampling_steps``
    network calls, on images of any size.

    Args:
        network: the noise predictor, called as ``network(cat([widefield, x_t], 1), t_encoding)``;
            it must compile with ``torch.jit.script`` (the project's UNet does). Its weights are frozen.
        diffusion: the schedule the network was trained with (its tables are read once, here).
        sampler: which chain (:data:`EXPORT_SAMPLERS`).
        sampling_steps: network evaluations per image, fixed in the module.
        seed: seed of x_T (:func:`ddpm.hashed_noise.hashed_normal`), fixed in the module.
        layout: the tiles the network runs on (:class:`TiledNetwork`), as ``experiments.predict``'s.
        enlargement: a native-task model's 2: the input is first enlarged onto the output's grid
            (:func:`experiments.data.task.enlarge`), as in training.

    As :meth:`experiments.inference.predictor.Predictor.sample` with ``hashed_noise_seed`` (its first sample): a
    frame smaller than a tile is padded, and x_T is placed so that output pixel (y, x) gets the noise of (y, x),
    the same for every image of a batch, so that each image's output is the one it gets alone.
    """

    def __init__(self, network: nn.Module, diffusion: Diffusion, sampler: ExportSampler, sampling_steps: int, seed: int,
                 layout: TileLayout, enlargement: int = 1) -> None:
        super().__init__()
        self.enlargement = enlargement
        self.network = TiledNetwork(network, layout)
        self.tile = layout.tile
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

    def forward(self, widefield: torch.Tensor) -> torch.Tensor:
        """widefield [B, 1, h, w] float32 in [-1, 1] -> [B, 1, H, W] in [-1, 1], H, W = enlargement x h, w."""
        padded, x, previous, height, width, top, left = self.start(widefield)
        for i in range(self.count()):
            x, previous = self.step(i, padded, x, previous)
        return x[:, :, top : top + height, left : left + width]

    # forward in its parts, for a caller that stops between network calls (the napari widget's Cancel).
    @torch.jit.export
    def count(self) -> int:
        """The network calls of the chain: :meth:`step` indices 0 .. count - 1."""
        return len(self.timesteps)

    @torch.jit.export
    def start(self, widefield: torch.Tensor) -> ChainStart:
        """The padded condition, x_T, the previous x0 (zeros) and where the frame lies in them."""
        padded, height, width, top, left = _checked_input(widefield, self.enlargement, self.tile)
        # One noise field for every image of the batch (that of prediction's first sample): an image's output is
        # the one it gets alone, wherever it sits in the batch.
        x = hashed_normal([1, 1, padded.size(2), padded.size(3)], self.seed, padded.device, -top, -left)
        x = x.expand(padded.size(0), 1, padded.size(2), padded.size(3)).contiguous()
        return ChainStart(padded, x, torch.zeros_like(x), height, width, top, left)

    @torch.jit.export
    def step(self, i: int, padded: torch.Tensor, x: torch.Tensor,
             previous: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Step ``i`` of the chain, one network call: the new x and this step's x0."""
        noise = self.network(torch.cat([padded, x], dim=1), self.time_encodings[i][None])
        x0 = (self.x0_coef_xt[i] * x - self.x0_coef_noise[i] * noise).clamp(-1.0, 1.0)  # Eq. 7 / 27, clamped
        return multistep_update(x, x0, previous, self.state_coef[i], self.x0_coef[i], self.previous_coef[i]), x0


class ScriptedRegression(nn.Module):
    """The regression baseline's one evaluation (:class:`ddpm.samplers.RegressionSampler`): the network
    sees ``cat([widefield, 0])`` and the encoding of :data:`ddpm.diffusion.REGRESSION_STEP`, on tiles; its
    output (the image channel) clamped to [-1, 1]."""

    def __init__(self, network: nn.Module, diffusion: Diffusion, layout: TileLayout, enlargement: int = 1,
                 channels: int = 1) -> None:
        super().__init__()
        self.enlargement = enlargement
        self.network = TiledNetwork(network, layout, channels)
        self.tile = layout.tile
        self.register_buffer("time_encoding", diffusion.time_encodings[diffusion.steps + REGRESSION_STEP].float().cpu())

    def forward(self, widefield: torch.Tensor) -> torch.Tensor:
        """widefield [B, 1, h, w] float32 in [-1, 1] -> [B, 1, enlargement h, enlargement w]."""
        padded, x, previous, height, width, top, left = self.start(widefield)
        x, previous = self.step(0, padded, x, previous)
        return x[:, :, top : top + height, left : left + width]

    # The parts of ScriptedSolver's forward, so one caller steps either: one step here.
    @torch.jit.export
    def count(self) -> int:
        return 1

    @torch.jit.export
    def start(self, widefield: torch.Tensor) -> ChainStart:
        padded, height, width, top, left = _checked_input(widefield, self.enlargement, self.tile)
        zeros = torch.zeros_like(padded)
        return ChainStart(padded, zeros, zeros, height, width, top, left)

    @torch.jit.export
    def step(self, i: int, padded: torch.Tensor, x: torch.Tensor,
             previous: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        output = self.network(torch.cat([padded, torch.zeros_like(padded)], dim=1), self.time_encoding[None])
        # the image, in the target's range as the eager sampler clamps it (a probabilistic regression's second
        # channel, its scale, is not in the package: a package has one output)
        output = output[:, :1].clamp(-1.0, 1.0)
        return output, output


class ScriptedResidual(nn.Module):
    """A residual model's sampler (:mod:`ddpm.residual`): the regression's base on the tiles prediction uses, then
    :class:`ScriptedSolver`'s chain on the residual, conditioned on ``[widefield, base]``.

    It is stepped as the solver is (``start``, ``step``, then the crop of x): its state x is the image, base plus
    the residual, so a caller that takes the last x as the output (``experiments.inference.package.run_package``)
    gets the refined image. :meth:`step` takes the base off before the solver's update and puts it back after,
    and clamps the last step's image to [-1, 1] as :func:`ddpm.residual.refined` does."""

    def __init__(self, model: ResidualModel, diffusion: Diffusion, sampler: ExportSampler, sampling_steps: int,
                 seed: int, layout: TileLayout, enlargement: int = 1) -> None:
        super().__init__()
        self.solver = ScriptedSolver(model.refiner, diffusion, sampler, sampling_steps, seed, layout, enlargement)
        self.base = ScriptedRegression(model.base, model.base_diffusion, layout, enlargement, model.base_channels)

    def forward(self, widefield: torch.Tensor) -> torch.Tensor:
        """widefield [B, 1, h, w] float32 in [-1, 1] -> [B, 1, H, W] in [-1, 1], H, W = enlargement x h, w."""
        condition, x, previous, height, width, top, left = self.start(widefield)
        for i in range(self.count()):
            x, previous = self.step(i, condition, x, previous)
        return x[:, :, top : top + height, left : left + width]

    @torch.jit.export
    def count(self) -> int:
        return self.solver.count()

    @torch.jit.export
    def start(self, widefield: torch.Tensor) -> ChainStart:
        """The condition ``[widefield, base]``, the image at x_T (base plus the solver's x_T), zeros, the frame."""
        padded, x, previous, height, width, top, left = self.solver.start(widefield)
        base, _ = self.base.step(0, padded, previous, previous)
        return ChainStart(torch.cat([padded, base], dim=1), base + x, previous, height, width, top, left)

    @torch.jit.export
    def step(self, i: int, condition: torch.Tensor, x: torch.Tensor,
             previous: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        base = condition[:, 1:2]
        residual, x0 = self.solver.step(i, condition, x - base, previous)
        image = base + residual
        if i == self.count() - 1:
            image = image.clamp(-1.0, 1.0)
        return image, x0


def script_sampler(
    network: nn.Module, diffusion: Diffusion, sampler: ExportSampler, sampling_steps: int, seed: int, layout: TileLayout,
    regression: bool = False, enlargement: int = 1, channels: int = 1,
) -> torch.jit.ScriptModule:
    """:class:`ScriptedSolver` (for a regression baseline :class:`ScriptedRegression`, whose network has ``channels``
    outputs; for a residual model :class:`ScriptedResidual`) compiled with ``torch.jit.script``, on the CPU (save it
    with ``.save(path)``)."""
    if regression:
        module = ScriptedRegression(network, diffusion, layout, enlargement, channels)
    elif refines(network):
        module = ScriptedResidual(network, diffusion, sampler, sampling_steps, seed, layout, enlargement)
    else:
        module = ScriptedSolver(network, diffusion, sampler, sampling_steps, seed, layout, enlargement)
    return torch.jit.script(module.cpu())


def save_scripted(module: torch.jit.ScriptModule, path: str | Path) -> Path:
    """Write a module of :func:`script_sampler` (a package's weights file)."""
    module.save(str(path))
    return Path(path)


def load_scripted(data: bytes) -> torch.jit.ScriptModule:
    """A module :func:`save_scripted` wrote, from its bytes, on the CPU, in eval mode (RuntimeError when it
    cannot be read)."""
    return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
