"""A trained checkpoint made ready to super-resolve images of any size.

    predictor = load_for_inference("runs/demo-20260101-120000/best.pt")
    mean, std = predictor.super_resolve(widefield, predictor.config.eval, generator)   # [-1, 1] in and out

The checkpoint carries everything needed: the network weights (its ``"ema"`` averaged weights when
present, else ``"model"``), and the run's :class:`~experiments.config.RunConfig` with the network shape,
the noise schedule, the pixel normalisation of the training data and the sampler settings it was
evaluated with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ddpm import Diffusion
from ddpm.hashed_noise import hashed_normal
from experiments.training.checkpoint import IMAGE_SIZE_KEY, LAST, file_digest, load_checkpoint
from experiments.config import EvalConfig, RunConfig
from experiments.evaluation.loop import build_sampler, sample
from experiments.runtime import pick_device
from experiments.inference.tiling import pad_to_tile, tile_count, tiled_network
from experiments.build import build_diffusion, build_model
from unet import optimize_for_speed

# Preferred first: the averaged weights usually sample better than the last optimiser step.
WEIGHT_KEYS = ("ema", "model")
# The side of BioSR's images: the training size of checkpoints that do not record theirs.
LEGACY_IMAGE_SIDE = 128


class InferenceError(ValueError):
    """A checkpoint or device cannot be used for prediction; the message names it and says what to do."""


@dataclass(frozen=True)
class Predictor:
    """A network in eval mode with the diffusion and configuration it was trained with.

    ``checkpoint`` is the ``.pt`` file read, ``digest`` its short SHA-256 (recorded with every output),
    ``weights`` which of its weight sets was loaded (``"ema"`` or ``"model"``).
    """

    model: nn.Module
    diffusion: Diffusion
    config: RunConfig
    checkpoint: Path
    digest: str
    weights: str
    device: torch.device
    # The side of the training images, the default tile of prediction and export.
    tile: int = LEGACY_IMAGE_SIDE

    @property
    def size_factor(self) -> int:
        """Tile sides must be multiples of this: the network's declared ``size_multiple``."""
        return self.config.network.size_multiple

    def super_resolve(
        self,
        images: torch.Tensor,
        sampling: EvalConfig,
        generator: torch.Generator,
        tile: int | None = None,
        overlap: int = 32,
        batch_size: int = 16,
        progress: bool = False,
        desc: str | None = None,
        hashed_noise_seed: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sample super-resolved images for widefield inputs of any size, frame by frame, the network tile by tile.

        Each frame is sampled as one image (:func:`experiments.inference.tiling.tiled_network`): one noise field per
        frame and sample, the network run on overlapping ``tile`` x ``tile`` tiles at every step and its
        noise predictions blended, so the result agrees with sampling the whole frame at once and shows no
        tile grid.

        Args:
            images: [N, 1, H, W] in the model range [-1, 1] (normalised as the training inputs were).
            sampling: sampler, variance, steps, eta and number of samples (see :func:`experiments.evaluation.loop.sample`).
            generator: on ``self.device``; the only source of sampling noise, so a fixed seed gives fixed output.
            tile, overlap, batch_size: see :func:`experiments.inference.tiling.predict_tiled` (``batch_size`` tiles per
                network call). progress, desc: a progress bar over the tiles of every step of every frame
                (with its ETA), labelled ``desc``.
            hashed_noise_seed: when given, each frame's chains start from
                :func:`ddpm.hashed_noise.hashed_normal` of this seed, placed so that pixel (y, x) of the frame
                gets the value of (y, x) whatever the padding, as the exported package does, instead of
                drawing x_T from ``generator``; the package's output is then reproduced exactly.

        Returns:
            The mean of ``sampling.samples`` samples [N, 1, H, W] in [-1, 1], and their per-pixel standard
            deviation [N, 1, H, W] when ``sampling.samples > 1`` (else None), on the CPU.
        """
        tile = self.tile if tile is None else tile
        height, width = images.shape[2:]
        padded, top, left = pad_to_tile(images, tile)
        steps = len(build_sampler(sampling).chain(self.diffusion.steps))
        tiles_per_step = tile_count(*padded.shape[2:], tile, overlap) * sampling.samples
        means, spreads = [], []
        with tqdm(total=len(padded) * steps * tiles_per_step, desc=desc, unit="tile", disable=not progress) as bar:
            network = tiled_network(self.model, tile, overlap, batch_size, self.size_factor, on_tiles=bar.update)
            for index, frame in enumerate(padded):
                bar.set_postfix_str(f"frame {index + 1}/{len(padded)}, {steps} steps of {tiles_per_step} tiles")
                x_T = None
                if hashed_noise_seed is not None:
                    x_T = hashed_normal([sampling.samples, 1, *frame.shape[1:]], hashed_noise_seed, self.device,
                                        offset_y=-top, offset_x=-left)
                mean, std = sample(network, self.diffusion, frame[None].to(self.device), sampling, generator, x_T=x_T)
                means.append(mean[..., top : top + height, left : left + width].cpu())
                spreads.append(None if std is None else std[..., top : top + height, left : left + width].cpu())
        return torch.cat(means), None if spreads[0] is None else torch.cat(spreads)


def _read_config(payload: dict, path: Path) -> RunConfig:
    if "config" not in payload:
        raise InferenceError(
            f"{path}: checkpoint holds no run configuration; use a last.pt or best.pt written by training"
        )
    try:
        config = RunConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as error:
        raise InferenceError(f"{path}: its run configuration cannot be read by this version ({error})") from error
    if not config.train.conditional:
        raise InferenceError(
            f"{path}: this model was trained without a low-resolution condition (train.conditional false); "
            "it generates images but cannot super-resolve an input. Use a conditional run's checkpoint"
        )
    return config


def load_for_inference(checkpoint: str | Path, device: str = "auto") -> Predictor:
    """Build the network and diffusion a checkpoint was trained with and load its weights.

    ``checkpoint``: a ``.pt`` file or a run folder (its ``last.pt``). ``device``: "auto", "cuda", "mps"
    or "cpu". Raises :class:`InferenceError` naming the file (or device) when it cannot be used.
    """
    try:
        target = pick_device(device)
    except (RuntimeError, ValueError) as error:
        raise InferenceError(str(error)) from error
    try:
        payload = load_checkpoint(checkpoint)
    except (FileNotFoundError, ValueError) as error:
        raise InferenceError(str(error)) from error
    path = Path(checkpoint)
    path = path / LAST if path.is_dir() else path
    config = _read_config(payload, path)
    weights = next((key for key in WEIGHT_KEYS if key in payload), None)
    if weights is None:
        raise InferenceError(f"{path}: checkpoint holds no weights (neither of the keys {WEIGHT_KEYS})")
    model = build_model(config, target)
    try:
        model.load_state_dict(payload[weights])
    except RuntimeError as error:
        raise InferenceError(
            f"{path}: its {weights!r} weights do not fit the network of its own configuration ({error})"
        ) from error
    return Predictor(
        # The layout training ran in (channels_last by default; unet.speed has its measured forward gain).
        model=optimize_for_speed(model.eval(), channels_last=config.train.channels_last),
        diffusion=build_diffusion(config, target),
        config=config,
        checkpoint=path.resolve(),
        digest=file_digest(path),
        weights=weights,
        device=target,
        tile=min(payload.get(IMAGE_SIZE_KEY, [LEGACY_IMAGE_SIDE])),
    )
