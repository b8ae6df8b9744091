"""An input's frames super-resolved one at a time: scaled as the training inputs were, sampled, checked.

    scaled = ScaledInput(read_input("cells.ome.zarr"), "tutorial")
    request = FrameRequest(sampling, keep=PAIR)
    for index, result in super_resolve(predictor, scaled, range(len(scaled)), request, seed=0):
        result.mean, result.std, result.pair      # [H, W] in [0, 1]; two independent samples for the check

The one route from an input to its results, shared by ``experiments.predict`` (which writes each frame as it
comes) and the napari widget (which shows them as layers); both check the results with
:func:`experiments.trust.check.check_result` (the trust measures sit above inference). Frame i draws its noise
from its own stream of the seed (:func:`~experiments.inference.predictor.frame_generator`), so any subset of
frames, in any order, gives the frames one run over all of them gives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from experiments.image_io.images import float_range_problem
from experiments.data.normalization import Normalization, from_model_range, min_max_to_model_range
from experiments.data.task import enlarge
from experiments.image_io.tif_io import InputImage, to_model_frames
from experiments.inference.predictor import FrameRequest, Predictor, frame_generator

PAIR = 2  # independent samples kept for the check: the FRC of experiments.trust.check compares two


def upsample_frames(frames: np.ndarray) -> np.ndarray:
    """Frames [N, H, W] -> [N, 2H, 2W] (float32, source units) by :func:`~experiments.data.task.enlarge`,
    each clipped to its own [min, max] (``clip="frame"``): what ``--upsample`` does to a user's image."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[:, None]
    return enlarge(tensor, 2, clip="frame")[:, 0].numpy()


class ScaledInput:
    """The frames of ``source`` as the network sees them (:meth:`model`) and on their own grid in [0, 1]
    (:meth:`native`, what the check re-degrades to).

    ``normalization`` is the checkpoint's (``data.normalization``); ``upsample`` enlarges each frame 2x
    first (tutorial-task models); ``min_max`` scales each frame by its min / max instead, as an exported
    package's pre-processing does (``--hashed-noise`` reproduces the package). A TIF is in memory and scaled
    whole here; an OME-Zarr image is scaled frame by frame as it is read (prediction reads every frame once
    before it writes anything: :func:`experiments.inference.prediction.check_pixels`).
    """

    def __init__(self, source: InputImage, normalization: Normalization, upsample: bool = False,
                 min_max: bool = False):
        self.source, self.normalization, self.upsample, self.min_max = source, normalization, upsample, min_max
        self._scaled = self._scale(source.frames) if isinstance(source.frames, np.ndarray) else None

    def __len__(self) -> int:
        return len(self.source.frames)

    def _scale(self, frames: np.ndarray) -> np.ndarray:
        if self.upsample:
            frames = upsample_frames(frames)
        if self.min_max:
            return min_max_to_model_range(frames)
        return to_model_frames(frames, self.source.info, self.normalization)  # refuses what overflows when scaled

    def model(self, index: int) -> np.ndarray:
        """Frame ``index`` in the model range, [1, H, W]."""
        if self._scaled is not None:
            return self._scaled[index : index + 1]
        return self._scale(self.source.frames[index][None])

    def native(self, index: int) -> np.ndarray:
        """Frame ``index`` on the input's own grid in [0, 1], [h, w]."""
        return from_model_range(to_model_frames(self.source.frames[index][None], self.source.info,
                                                self.normalization))[0]

    def range_problem(self, index: int) -> str | None:
        """Why frame ``index``'s float values do not suit the model (:func:`float_range_problem`), or None;
        frames scaled by min / max suit it whatever their range."""
        if self.min_max:
            return None
        return float_range_problem(self.source.frames[index][None], self.source.info, self.normalization)


@dataclass(frozen=True)
class FrameResult:
    """One frame's results: the ``mean`` of the samples [H, W] and their per-pixel ``std`` (None for one
    sample) in the training targets' units [0, 1], and the ``pair`` of independent samples [2, H, W] (in the
    model range) that the check compares, when asked for."""

    mean: np.ndarray
    std: np.ndarray | None = None
    pair: torch.Tensor | None = None


def super_resolve(
    predictor: Predictor,
    scaled: ScaledInput,
    frames: Sequence[int],
    request: FrameRequest,
    seed: int,
    *,
    warn: Callable[[str], None] = lambda message: None,
) -> Iterator[tuple[int, FrameResult]]:
    """Yield ``(index, FrameResult)`` for each of ``frames`` of ``scaled``, sampled as ``request`` says
    (:class:`~experiments.inference.predictor.FrameRequest`), frame ``i`` from its own stream of ``seed``.

    A ``request.keep`` of :data:`PAIR` also returns two independent samples, the first two (a chain drawn after
    them for one sample), for the check's FRC. A float input far from [0, 1] is told to ``warn`` once.
    """
    warned = False

    def pending() -> Iterator[tuple[int, torch.Tensor]]:
        nonlocal warned
        for index in frames:
            problem = None if warned else scaled.range_problem(index)
            if problem:  # the user has this model and may still want its output: warn, once per input
                warn(f"warning: {problem}; rescale the image to [0, 1] for meaningful output")
                warned = True
            yield index, torch.from_numpy(scaled.model(index))

    sampled = predictor.sample_frames(pending(), len(frames), request,
                                      lambda index: frame_generator(seed, index, predictor.device))
    for index, part in sampled:
        mean = from_model_range(part.mean[0, 0].numpy())
        std = None if part.std is None else part.std[0, 0].numpy() * np.float32(0.5)  # (v + 1) / 2 halves spreads
        yield index, FrameResult(mean, std, part.kept[:, 0, 0] if request.keep else None)
