"""A trained network ready to super-resolve images of any size: frame by frame, the network tile by tile.

    predictor = load_for_inference("runs/demo-20260101-120000/best.pt")     # experiments.inference.loading
    prediction = predictor.sample(widefield, FrameRequest(predictor.config.sampling), generator)   # [-1, 1] in and out
    mean, std = prediction.mean, prediction.std                                        # std None for one sample
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import torch
from torch import nn
from tqdm.auto import tqdm

from ddpm import Diffusion
from ddpm.hashed_noise import hashed_normal
from experiments.config.schema import RunConfig, SamplingConfig
from experiments.data.task import BIOSR_CAMERA_PIXEL_UM, DataGrid, enlarge
from experiments.inference.sampling import Sampling, mean_and_spread
from experiments.build import refines
from experiments.inference.tiling import TileLayout, pad_to_tile, tiled_network
from experiments.trust.calibration import PREDICTED, StdCalibration

DEFAULT_OVERLAP = 32  # pixels shared by neighbouring tiles (cut to a quarter of smaller tiles)
# The side of BioSR's images: the training size of checkpoints that do not record theirs.
LEGACY_IMAGE_SIDE = 128


def default_overlap(tile: int) -> int:
    """:data:`DEFAULT_OVERLAP`, at most a quarter of ``tile``."""
    return min(DEFAULT_OVERLAP, tile // 4)


@dataclass(frozen=True)
class FrameRequest:
    """How the frames of an input are sampled, the one record down the sampling path (:meth:`Predictor.sample`,
    :meth:`Predictor.sample_frames`, :func:`experiments.inference.frames.super_resolve`).

    ``sampling``: sampler, variance, sampling steps, eta and number of samples. ``layout``: tile side,
    overlap and tiles per network call (None: :meth:`Predictor.layout`). ``hashed_noise_seed``: when given,
    each frame's chains start from :func:`ddpm.hashed_noise.hashed_normal` of this seed, placed so that pixel
    (y, x) of the frame gets the value of (y, x) whatever the padding, as the exported package does, instead
    of drawing x_T from the generator; the package's output is then reproduced exactly. ``keep``: return the
    first ``keep`` chains themselves too (the independent pair of :mod:`experiments.trust.check`); chains
    beyond ``sampling.samples`` are drawn after the samples and not averaged. ``progress``, ``desc``: a
    progress bar over the tiles of every step of every frame (with its ETA), labelled ``desc``. ``on_tiles``:
    called as ``on_tiles(done, total)`` after every network call, with the tiles sampled so far and in all (a
    GUI's progress, or its cancel: an exception raised there stops sampling within one network call).
    """

    sampling: SamplingConfig
    layout: TileLayout | None = None
    hashed_noise_seed: int | None = None
    keep: int = 0
    progress: bool = False
    desc: str | None = None
    on_tiles: Callable[[int, int], None] | None = None


@dataclass(frozen=True)
class Prediction:
    """What :meth:`Predictor.sample` returns, on the CPU, in the model range [-1, 1]: the ``mean`` [N, 1, H, W]
    of the samples, their per-pixel ``std`` (None for one sample) and the first chains ``kept`` [K, N, 1, H, W]."""

    mean: torch.Tensor
    std: torch.Tensor | None
    kept: torch.Tensor


@dataclass(frozen=True)
class Predictor:
    """A network in eval mode with the diffusion and configuration it was trained with.

    ``checkpoint`` is the ``.pt`` file read, ``digest`` its short SHA-256 (recorded with every output),
    ``weights`` which of its weight sets was loaded (``"ema"`` or ``"model"``), ``tile`` the side of the
    training images (on the output's grid): the default tile of prediction, ``grid`` the training data's
    task and input pixel size: what the inputs should look like; ``calibration`` the std map's, where the
    checkpoint ships one (:meth:`calibrated_by`).
    """

    model: nn.Module
    diffusion: Diffusion
    config: RunConfig
    checkpoint: Path
    digest: str
    weights: str
    device: torch.device
    tile: int = LEGACY_IMAGE_SIDE
    grid: DataGrid = DataGrid("tutorial", BIOSR_CAMERA_PIXEL_UM)
    calibration: StdCalibration | None = None

    @property
    def enlargement(self) -> int:
        """The output's side over the input's: 2 for a native-task model, which enlarges its inputs itself."""
        return self.config.data.enlargement

    @property
    def size_multiple(self) -> int:
        """Tile sides must be multiples of this: the network's declared ``size_multiple``."""
        return self.config.network.size_multiple

    def input_pixel_um(self, upsample: bool = False) -> float:
        """The pixel size in µm the model's inputs had in training (twice it for an input enlarged by ``upsample``
        first, which halves its pixel)."""
        return self.grid.input_pixel_um * (2 if upsample else 1)

    def suits_pixel_size(self, size_um: float, upsample: bool = False) -> bool:
        """Whether an input of ``size_um`` pixels suits the training inputs' (:meth:`DataGrid.suits_pixel_size`;
        an input enlarged by ``upsample`` first has half its pixel)."""
        return self.grid.suits_pixel_size(size_um / (2 if upsample else 1))

    @property
    def predicts_std(self) -> bool:
        """Whether the model is a probabilistic regression: one evaluation gives its output and the std of that
        output's error (``--train.loss laplace``), no samples needed."""
        return self.config.train.predicts_std

    def std_samples(self, sampling: SamplingConfig) -> int:
        """The sample count the std of ``sampling``'s output comes from (:data:`PREDICTED` for a predicted std)."""
        return PREDICTED if self.predicts_std else sampling.samples

    def calibrated_by(self, sampling: SamplingConfig) -> StdCalibration | None:
        """The calibration that turns the std of ``sampling``'s samples (or the model's predicted std) into the
        std of the output's error: the shipped one where it was fitted on that very sampler, evaluation count
        and sample count, else None."""
        fitted, count = self.calibration, self.std_samples(sampling)
        if fitted is None or count == 1 or (fitted.samples == PREDICTED) != (count == PREDICTED):  # 1: no std
            return None
        same = (fitted.sampler, fitted.evaluations) == (sampling.sampler, sampling.network_evaluations(self.diffusion.steps))
        return fitted if same and fitted.eta == sampling.eta else None

    def layout(self, tile: int | None = None, overlap: int | None = None, batch_size: int = 16) -> TileLayout:
        """The tile layout of ``tile`` (default: the training image side) and ``overlap`` (default
        :data:`DEFAULT_OVERLAP`, at most a quarter of the tile: a model trained on small images has small
        tiles), checked against the network. Prediction and the exported package tile so by default."""
        tile = self.tile if tile is None else tile
        layout = TileLayout(tile, default_overlap(tile) if overlap is None else overlap, batch_size)
        layout.check_size_multiple(self.size_multiple)
        return layout

    def sample(
        self,
        images: torch.Tensor,
        request: FrameRequest,
        generator: torch.Generator,
    ) -> Prediction:
        """Sample super-resolved images for widefield inputs of any size: :meth:`sample_frames` of every
        frame of ``images`` [N, 1, h, w], all drawing from the one ``generator`` in turn, gathered.

        Returns:
            A :class:`Prediction` on the CPU, at H, W = :attr:`enlargement` x h, w.
        """
        parts = [part for _, part in self.sample_frames(enumerate(images), len(images), request, lambda _: generator)]
        std = None if parts[0].std is None else torch.cat([part.std for part in parts])
        return Prediction(torch.cat([part.mean for part in parts]), std, torch.cat([part.kept for part in parts], dim=1))

    def sample_frames(
        self,
        frames: Iterable[tuple[int, torch.Tensor]],
        count: int,
        request: FrameRequest,
        generator_of: Callable[[int], torch.Generator],
    ) -> Iterator[tuple[int, Prediction]]:
        """Sample each frame as it comes, yielding ``(index, its Prediction)`` so a caller can write it at once.

        A native-task model's inputs are first enlarged onto the output's grid (:attr:`enlargement`,
        :func:`experiments.data.task.enlarge`), as its training inputs were. Each frame is sampled as one
        image (:func:`experiments.inference.tiling.tiled_network`): one noise field per frame and sample,
        the network run on overlapping tiles at every step and its noise predictions blended, so the result
        agrees with sampling the whole frame at once and shows no tile grid. All chains of a frame run as one
        batch, their tiles pooled into the network's calls. A frame smaller than a tile is padded once,
        before sampling, and cropped back.

        Args:
            frames: ``(index, image [1, h, w])`` pairs, in the model range [-1, 1] (normalised as the training
                inputs were), on the input grid the model was trained on; read lazily, one at a time.
            count: how many ``frames`` there are (for the progress bar).
            request: how to sample them (:class:`FrameRequest`).
            generator_of: frame index -> the generator (on ``self.device``) its noise is drawn from: the only
                source of sampling noise, so fixed seeds give fixed output. Each frame draws the starts of its
                chains in turn (:meth:`Sampling.draw`), so the first ``sampling.samples`` chains do not
                depend on ``keep``; a generator of its own per frame (:func:`frame_generator`) makes a
                frame's output independent of the frames sampled before it.

        Yields:
            ``(index, Prediction)`` of one frame, on the CPU, at H, W = :attr:`enlargement` x h, w.
        """
        sampling, keep, on_tiles = request.sampling, request.keep, request.on_tiles
        layout = self.layout() if request.layout is None else request.layout
        layout.check_size_multiple(self.size_multiple)
        chains = max(sampling.samples, keep)
        drawer = Sampling(replace(sampling, samples=chains), self.diffusion)
        steps = len(drawer.chain)
        calibration, std_samples = self.calibrated_by(sampling), self.std_samples(sampling)
        sampled = 0  # tiles through the network so far
        with tqdm(total=None, desc=request.desc, unit="tile", disable=not request.progress) as bar:
            for done, (index, image) in enumerate(frames):
                image = enlarge(image[None], self.enlargement)
                height, width = image.shape[2:]
                padded, top, left = pad_to_tile(image, layout.tile)
                tiles_per_step = layout.count(*padded.shape[2:]) * chains
                base_tiles = layout.count(*padded.shape[2:]) if refines(self.model) else 0
                total = count * (base_tiles + steps * tiles_per_step)  # the frames of an input share one size
                if bar.total is None:
                    bar.total = total
                bar.set_postfix_str(f"frame {done + 1}/{count}, {steps} steps of {tiles_per_step} tiles")

                def counted(tiles: int) -> None:
                    nonlocal sampled
                    sampled += tiles
                    bar.update(tiles)
                    if on_tiles is not None:
                        on_tiles(sampled, total)

                x_T = None
                if request.hashed_noise_seed is not None:
                    x_T = hashed_normal([chains, 1, *padded.shape[2:]], request.hashed_noise_seed, self.device,
                                        offset_y=-top, offset_x=-left)
                network = tiled_network(self.model, layout, on_tiles=counted)
                padded = padded.to(self.device)
                # a residual model's base: its regression on the same tiles, once per frame
                base = self.model.base_output(padded, lambda net: tiled_network(net, layout, counted)) if base_tiles else None
                draws = drawer.draw(network, padded, generator_of(index), x_T=x_T, base=base)
                draws = draws[..., top : top + height, left : left + width].cpu()
                mean, std = mean_and_spread(draws[: sampling.samples])
                if std is not None and calibration is not None:
                    std = calibration.error_std(std, std_samples)
                yield index, Prediction(mean, std, draws[:keep, :, :1])


def frame_generator(seed: int, frame: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The sampling noise of frame ``frame`` of an input: a stream of its own, seeded by ``seed`` and the
    frame's index (:class:`numpy.random.SeedSequence`), so a frame's output does not depend on which frames
    were sampled before it: a resumed stack equals an uninterrupted one, frame for frame."""
    state = np.random.SeedSequence([seed, frame]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))
