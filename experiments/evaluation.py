"""Evaluation: reverse diffusion on a test level, the tutorial's metrics, and the bicubic baseline."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ddpm import Diffusion
from ddpm.ddim import DEFAULT_DDIM_STEPS
from experiments.config import EvalConfig
from experiments.data import PairedImageDataset
from experiments.metrics import MetricAccumulator
from experiments.runtime import Distributed


@dataclass
class Evaluation:
    """Metrics of one split (see :class:`experiments.metrics.MetricAccumulator` for the keys) and
    the first few (input, output, target) images for figures, each [N, 1, H, W] on the CPU."""

    metrics: dict[str, float]
    inputs: torch.Tensor
    outputs: torch.Tensor
    targets: torch.Tensor


class UsageError(ValueError):
    """A command-line setting cannot be used; the message names the option and what to do."""


def sampling_config(
    base: EvalConfig,
    diffusion_steps: int,
    sampler: str | None = None,
    variance: str | None = None,
    sampling_steps: int | None = None,
    eta: float | None = None,
    samples: int | None = None,
) -> EvalConfig:
    """The checkpoint's evaluation settings with the given options replaced, checked, and DDIM's step count
    made explicit (50, or every trained step when the schedule has fewer), so it can be recorded."""
    given = dict(sampler=sampler, variance=variance, sampling_steps=sampling_steps, eta=eta, samples=samples)
    config = replace(base, **{key: value for key, value in given.items() if value is not None})
    if config.samples < 1:
        raise UsageError(f"--samples must be at least 1, got {config.samples}")
    if config.sampler != "ddim":
        if sampling_steps is not None or eta is not None:
            raise UsageError(
                f"--sampling-steps and --eta apply to --sampler ddim only; the {config.sampler!r} sampler "
                f"always runs all {diffusion_steps} trained steps"
            )
        return replace(config, sampling_steps=None, eta=0.0)
    if variance is not None:
        raise UsageError("--variance applies to the 'simple' and 'x0' samplers; DDIM sets its noise with --eta")
    steps = min(DEFAULT_DDIM_STEPS, diffusion_steps) if config.sampling_steps is None else config.sampling_steps
    if not 1 <= steps <= diffusion_steps:
        raise UsageError(
            f"--sampling-steps must be within 1..{diffusion_steps} (the model's trained steps), got {steps}"
        )
    if not 0.0 <= config.eta <= 1.0:
        raise UsageError(f"--eta must be within 0..1 (0: deterministic DDIM, 1: DDPM-like), got {config.eta}")
    return replace(config, sampling_steps=steps, variance=None)


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
    (DDIM only) replaces the drawn start of the chains, sample-major.
    """
    if config.samples < 1:
        raise ValueError(f"eval.samples must be at least 1, got {config.samples}")
    if x_T is not None and config.sampler != "ddim":
        raise ValueError(f"a given x_T needs the ddim sampler, not {config.sampler!r}")
    batch = condition.shape[0]
    # All samples of a batch go through the network together: one chain on samples x B images.
    repeated = condition.repeat(config.samples, 1, 1, 1)
    options = dict(shape=(repeated.shape[0], 1, *condition.shape[2:]), generator=generator, progress=progress)
    repeated = repeated if conditional else None
    if config.sampler == "ddim":
        images = diffusion.ddim_sample(
            model, repeated, num_steps=config.sampling_steps, eta=config.eta, x_T=x_T, **options
        )
    else:
        images = diffusion.reverse_diffusion(model, repeated, sampler=config.sampler, variance=config.variance, **options)
    images = images.float().view(config.samples, batch, *images.shape[1:])
    spread = images.std(dim=0, unbiased=False) if config.samples > 1 else None
    return images.mean(dim=0), spread


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
) -> Evaluation | None:
    """Sample every image of ``dataset`` (or its first ``max_images``) and score it against its target.

    Batches are dealt round-robin to the ranks of a DDP run and gathered on rank 0, which computes
    the metrics in data-set order, exactly as one process would. Returns None on other ranks.
    """
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    starts = list(range(0, count, config.batch_size))
    mine = starts[place.rank :: place.world_size]
    device = diffusion.device
    results: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    was_training = model.training
    model.eval()
    for start in tqdm(mine, desc=description, disable=not (progress and place.is_main), leave=False):
        wf, gt = dataset.get_batch(range(start, min(start + config.batch_size, count)))
        generator = batch_generator(device, seed, start // config.batch_size)
        output, _ = sample(model, diffusion, wf.to(device), config, generator, conditional)
        results[start] = (wf, output.float().cpu(), gt)
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
