"""Evaluation: reverse diffusion on a test level, the tutorial's metrics, and the bicubic baseline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ddpm import Diffusion
from experiments.build import base_of
from experiments.config.schema import EvalConfig, SamplingConfig
from experiments.pairs.dataset import PairedImageDataset
from experiments.evaluation.metrics import MetricAccumulator
from experiments.inference.sampling import Sampling, mean_and_spread
from experiments.runtime import Distributed, gather_objects


@dataclass
class Evaluation:
    """Metrics of one split (see :class:`experiments.evaluation.metrics.MetricAccumulator` for the keys) and
    the first few (input, output, target) images for figures, each [N, 1, H, W] on the CPU; ``per_image``:
    each image's fitted metrics (:meth:`~experiments.evaluation.metrics.MetricAccumulator.per_image`)."""

    metrics: dict[str, float]
    inputs: torch.Tensor
    outputs: torch.Tensor
    targets: torch.Tensor
    per_image: dict[str, list[float]]


class EvaluationStopped(RuntimeError):
    """``should_stop`` asked an evaluation to end early; its partial results are dropped."""


def stop_checked(model: nn.Module, should_stop: Callable[[], bool]) -> Callable[..., torch.Tensor]:
    """``model`` behind a check of ``should_stop`` before every call, i.e. before every sampling step of a
    chain, so that a stop request ends a long evaluation within one network evaluation."""

    def call(*args, **kwargs) -> torch.Tensor:
        if should_stop():
            raise EvaluationStopped("evaluation stopped on request")
        return model(*args, **kwargs)

    return call


def batch_generator(device: torch.device, seed: int, batch_index: int) -> torch.Generator:
    """The sampling noise of a batch depends on its index only, so any split across ranks gives
    the same images."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + batch_index)


def evaluate(
    model: nn.Module,
    diffusion: Diffusion,
    dataset: PairedImageDataset,
    sampling: SamplingConfig,
    schedule: EvalConfig,
    max_images: int | None = None,
    conditional: bool = True,
    place: Distributed = Distributed(),
    progress: bool = True,
    description: str = "evaluate",
    should_stop: Callable[[], bool] | None = None,
    observe: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> Evaluation | None:
    """Sample every image of ``dataset`` (or its first ``max_images``) as ``sampling`` says and score it
    against its target, in batches of ``schedule.batch_size`` with the noise of ``schedule.seed``.

    Batches are dealt round-robin to the ranks of a DDP run and gathered on rank 0, which computes
    the metrics in data-set order, exactly as one process would. Returns None on other ranks.
    ``should_stop`` is asked before every sampling step; when it answers True the evaluation is
    abandoned with :class:`EvaluationStopped` (single process only: ranks would not stop together).
    ``observe(inputs, samples, targets)``, when given, sees every batch the rank samples, with all its
    samples [S, B, 1, H, W] on the CPU (e.g. :class:`experiments.evaluation.trust_report.TrustAccumulator`).
    """
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    starts = list(range(0, count, schedule.batch_size))
    mine = starts[place.rank :: place.world_size]
    device = diffusion.device
    results: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    was_training = model.training
    model.eval()
    network = model if should_stop is None else stop_checked(model, should_stop)
    drawer = Sampling(sampling, diffusion)
    try:
        for start in tqdm(mine, desc=description, disable=not (progress and place.is_main), leave=False):
            wf, gt = dataset.get_batch(range(start, min(start + schedule.batch_size, count)))
            generator = batch_generator(device, schedule.seed, start // schedule.batch_size)
            wf_device = wf.to(device)
            images = drawer.draw(network, wf_device, generator, conditional=conditional, base=base_of(model, wf_device))
            output, _ = mean_and_spread(images)
            if observe is not None:
                observe(wf, images.cpu(), gt)
            results[start] = (wf, output.float().cpu(), gt)
    finally:
        model.train(was_training)
    if place.enabled:
        results = {k: v for part in gather_objects(results, place) for k, v in part.items()}
    if not place.is_main:
        return None
    accumulator = MetricAccumulator()
    for start in starts:
        wf, output, gt = results[start]
        accumulator.update(output, gt)
    first = results[starts[0]]
    shown = schedule.figure_images
    return Evaluation(accumulator.compute(), first[0][:shown], first[1][:shown], first[2][:shown],
                      accumulator.per_image())


def bicubic_scores(dataset: PairedImageDataset, max_images: int | None = None, batch_size: int = 64) -> MetricAccumulator:
    """The metrics of the (bicubic-upsampled or -enlarged) input itself, image by image, in the dataset's order."""
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    accumulator = MetricAccumulator()
    for start in range(0, count, batch_size):
        wf, gt = dataset.get_batch(range(start, min(start + batch_size, count)))
        accumulator.update(wf, gt)
    return accumulator


def bicubic_baseline(dataset: PairedImageDataset, max_images: int | None = None, batch_size: int = 64) -> dict[str, float]:
    """The metrics of the input itself (:func:`bicubic_scores`): what every result is read against."""
    return bicubic_scores(dataset, max_images, batch_size).compute()
