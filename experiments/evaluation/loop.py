"""Evaluation: reverse diffusion on a test level, the tutorial's metrics, and the bicubic baseline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ddpm import Diffusion, Sampler, make_sampler, sampler_options
from experiments.config import EvalConfig
from experiments.data import PairedImageDataset
from experiments.evaluation.metrics import MetricAccumulator
from experiments.runtime import Distributed
from unet.config import check_value, field_range


@dataclass
class Evaluation:
    """Metrics of one split (see :class:`experiments.evaluation.metrics.MetricAccumulator` for the keys) and
    the first few (input, output, target) images for figures, each [N, 1, H, W] on the CPU."""

    metrics: dict[str, float]
    inputs: torch.Tensor
    outputs: torch.Tensor
    targets: torch.Tensor


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


class UsageError(ValueError):
    """A command-line setting cannot be used; the message names the option and what to do."""


# Each command-line sampler option and the sampler field it sets.
_SAMPLER_FLAGS = {"variance": ("--variance", "variance"), "sampling_steps": ("--sampling-steps", "num_steps"),
                  "eta": ("--eta", "eta")}


def build_sampler(config: EvalConfig) -> Sampler:
    """The sampler ``config.sampler`` names, with those of the config's sampler options it takes."""
    return make_sampler(config.sampler, **{field: getattr(config, key) for key, (_, field) in _SAMPLER_FLAGS.items()})


def sampling_config(
    base: EvalConfig,
    diffusion_steps: int,
    sampler: str | None = None,
    variance: str | None = None,
    sampling_steps: int | None = None,
    eta: float | None = None,
    samples: int | None = None,
) -> EvalConfig:
    """The checkpoint's evaluation settings with the given options replaced, checked by building the
    sampler, and the options the sampler does not take reset, so that what is recorded is what runs
    (DDIM's step count made explicit: 50, or every trained step when the schedule has fewer)."""
    given = dict(sampler=sampler, variance=variance, sampling_steps=sampling_steps, eta=eta, samples=samples)
    given = {key: value for key, value in given.items() if value is not None}
    for name in given.keys() & {"sampling_steps", "eta", "samples"}:
        # The ranges EvalConfig declares, reported under this command's own flag names.
        try:
            check_value(given[name], field_range(EvalConfig, name), f"--{name.replace('_', '-')}")
        except ValueError as error:
            raise UsageError(str(error)) from error
    config = replace(base, **given)
    taken = sampler_options(config.sampler)
    flags = [flag for key, (flag, field) in _SAMPLER_FLAGS.items() if field in taken]
    for key, (flag, field) in _SAMPLER_FLAGS.items():
        if given.get(key) is not None and field not in taken:
            raise UsageError(
                f"{flag} does not apply to the {config.sampler!r} sampler (its options: {', '.join(flags)})"
            )
    try:
        chain = build_sampler(config).chain(diffusion_steps)
    except ValueError as error:
        raise UsageError(
            f"{error}; change {' or '.join(flags)} (the model has {diffusion_steps} trained steps)"
        ) from None
    return replace(
        config,
        variance=config.variance if "variance" in taken else None,
        sampling_steps=len(chain) if "num_steps" in taken else None,
        eta=config.eta if "eta" in taken else 0.0,
    )


def sample(
    model: nn.Module,
    diffusion: Diffusion,
    condition: torch.Tensor,
    config: EvalConfig,
    generator: torch.Generator | None = None,
    conditional: bool = True,
    progress: bool = False,
    x_T: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Super-resolve low-resolution inputs [B, 1, H, W] with the configured sampler.

    Draws ``config.samples`` samples per input and returns their mean [B, 1, H, W] and, for more
    than one sample, their per-pixel standard deviation [B, 1, H, W] (else None): the mean is the
    better estimate on pixel metrics, the spread shows where the model is unsure. With
    ``conditional=False`` the inputs only set the batch and image size. ``x_T`` [samples x B, 1, H, W]
    replaces the drawn start of the chains, sample-major.
    """
    return mean_and_spread(draw_samples(model, diffusion, condition, config, generator, conditional, progress, x_T))


def mean_and_spread(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Samples [S, B, 1, H, W] -> their mean [B, 1, H, W] and population std (None for S = 1)."""
    return images.mean(dim=0), images.std(dim=0, unbiased=False) if len(images) > 1 else None


def draw_samples(
    model: nn.Module,
    diffusion: Diffusion,
    condition: torch.Tensor,
    config: EvalConfig,
    generator: torch.Generator | None = None,
    conditional: bool = True,
    progress: bool = False,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    """The ``config.samples`` samples of :func:`sample` themselves: float [samples, B, 1, H, W]."""
    batch = condition.shape[0]
    # All samples of a batch go through the network together: one chain on samples x B images.
    repeated = condition.repeat(config.samples, 1, 1, 1)
    images = build_sampler(config)(
        diffusion,
        model,
        repeated if conditional else None,
        shape=(repeated.shape[0], 1, *condition.shape[2:]),
        x_T=x_T,
        generator=generator,
        progress=progress,
    )
    return images.float().view(config.samples, batch, *images.shape[1:])


def batch_generator(device: torch.device, seed: int, batch_index: int) -> torch.Generator:
    """The sampling noise of a batch depends on its index only, so any split across ranks gives
    the same images."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + batch_index)


def evaluate(
    model: nn.Module,
    diffusion: Diffusion,
    dataset: PairedImageDataset,
    config: EvalConfig,
    max_images: int | None = None,
    conditional: bool = True,
    place: Distributed = Distributed(),
    seed: int = 0,
    progress: bool = True,
    description: str = "evaluate",
    should_stop: Callable[[], bool] | None = None,
    observe: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> Evaluation | None:
    """Sample every image of ``dataset`` (or its first ``max_images``) and score it against its target.

    Batches are dealt round-robin to the ranks of a DDP run and gathered on rank 0, which computes
    the metrics in data-set order, exactly as one process would. Returns None on other ranks.
    ``should_stop`` is asked before every sampling step; when it answers True the evaluation is
    abandoned with :class:`EvaluationStopped` (single process only: ranks would not stop together).
    ``observe(inputs, samples, targets)``, when given, sees every batch the rank samples, with all its
    samples [S, B, 1, H, W] on the CPU (e.g. :class:`experiments.evaluation.quality_report.QualityAccumulator`).
    """
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    starts = list(range(0, count, config.batch_size))
    mine = starts[place.rank :: place.world_size]
    device = diffusion.device
    results: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    was_training = model.training
    model.eval()
    network = model if should_stop is None else stop_checked(model, should_stop)
    try:
        for start in tqdm(mine, desc=description, disable=not (progress and place.is_main), leave=False):
            wf, gt = dataset.get_batch(range(start, min(start + config.batch_size, count)))
            generator = batch_generator(device, seed, start // config.batch_size)
            images = draw_samples(network, diffusion, wf.to(device), config, generator, conditional)
            output, _ = mean_and_spread(images)
            if observe is not None:
                observe(wf, images.cpu(), gt)
            results[start] = (wf, output.float().cpu(), gt)
    finally:
        model.train(was_training)
    if place.enabled:
        gathered = [None] * place.world_size
        dist.all_gather_object(gathered, results)
        results = {k: v for part in gathered for k, v in part.items()}
    if not place.is_main:
        return None
    accumulator = MetricAccumulator()
    for start in starts:
        wf, output, gt = results[start]
        accumulator.update(output, gt)
    first = results[starts[0]]
    shown = config.figure_images
    return Evaluation(accumulator.compute(), first[0][:shown], first[1][:shown], first[2][:shown])


def bicubic_baseline(dataset: PairedImageDataset, max_images: int | None = None, batch_size: int = 64) -> dict[str, float]:
    """The metrics of the (already bicubic-upsampled) input itself: what every result is read against."""
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    accumulator = MetricAccumulator()
    for start in range(0, count, batch_size):
        wf, gt = dataset.get_batch(range(start, min(start + batch_size, count)))
        accumulator.update(wf, gt)
    return accumulator.compute()
