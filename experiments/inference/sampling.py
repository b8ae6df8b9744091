"""Drawing samples: the sampler of a :class:`~experiments.config.schema.SamplingConfig`, built once, run on a batch.

    sampling = Sampling(config.sampling, diffusion)           # the sampler and its chain, once
    images = sampling.draw(model, widefield, generator)       # [samples, B, 1, H, W]
    mean, std = mean_and_spread(images)

Training's evaluation, ``evaluate``, ``predict`` and the benchmarks all draw their samples here, and the
command-line sampling flags of every command become a config in :func:`sampling_from_flags`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace

import torch

from ddpm import Diffusion
from ddpm.residual import refined, refiner_condition
from ddpm.samplers import initial_noise
from ddpm.settings import UsageError, check_value, field_range
from experiments.config.schema import SAMPLER_FLAGS, SamplingConfig

# The noise predictor a sampler calls: the network, or the network behind tiling or a stop check.
Network = Callable[..., torch.Tensor]

# What predict and export sample a diffusion model with unless told otherwise, whatever its training
# evaluated with: the fewest DPM-Solver++(2M) evaluations as good as 10-step DDIM on the held-out cells
# (python -m experiments.bench.solvers, docs/sampling.md).
PREDICTION_SAMPLING = SamplingConfig(sampler="dpmpp2m", sampling_steps=4)


def prediction_sampling(recorded: SamplingConfig) -> SamplingConfig:
    """The sampling a prediction starts from for a checkpoint that recorded ``recorded``: :data:`PREDICTION_SAMPLING`
    for a diffusion model, its own (one evaluation) for a regression baseline."""
    return recorded if recorded.sampler == "regression" else PREDICTION_SAMPLING


def sampling_from_flags(base: SamplingConfig, diffusion_steps: int, **given) -> SamplingConfig:
    """``base`` (a checkpoint's settings) with the command-line options ``given`` that are not None
    (``sampler``, ``variance``, ``sampling_steps``, ``eta``, ``samples``), resolved against T =
    ``diffusion_steps`` (:meth:`~experiments.config.schema.SamplingConfig.resolved`).

    Raises :class:`~ddpm.settings.UsageError` naming the flag: a value out of its range, an option the
    chosen sampler does not take, or a diffusion sampler for a regression baseline (or the reverse).
    """
    names = {f.name for f in fields(SamplingConfig)}
    unknown = set(given) - names
    if unknown:
        raise TypeError(f"sampling_from_flags: unknown options {sorted(unknown)}; expected some of {sorted(names)}")
    given = {name: value for name, value in given.items() if value is not None}
    for name, value in given.items():
        if name not in ("sampler", "variance"):
            try:  # the declared range, reported under the command's own flag name
                check_value(value, field_range(SamplingConfig, name), f"--{name.replace('_', '-')}")
            except ValueError as error:
                raise UsageError(str(error)) from error
    config = replace(base, **given)
    if (base.sampler == "regression") != (config.sampler == "regression"):
        kind = "a regression baseline, sampled" if base.sampler == "regression" else "a diffusion model, sampled"
        raise UsageError(f"--sampler {config.sampler}: this checkpoint is {kind} by "
                         f"{'--sampler regression only' if base.sampler == 'regression' else 'a diffusion sampler'}")
    if config.sampler == "regression" and config.samples > 1:
        raise UsageError(f"--samples {config.samples}: a regression baseline gives one deterministic image, so its samples "
                         "would be copies with no spread to show; drop --samples (and --std)")
    taken = config.sampler_options()
    for name, flag in SAMPLER_FLAGS.items():
        if name in given and name not in taken:
            options = ", ".join(SAMPLER_FLAGS[option] for option in taken) or "none"
            raise UsageError(f"{flag} does not apply to the {config.sampler!r} sampler (its options: {options})")
    return config.resolved(diffusion_steps)


def predicts_std(images: torch.Tensor) -> bool:
    """Whether sampled ``images`` [S, B, C, H, W] are a probabilistic regression's: each an image beside the
    std of its error that the model predicts (C = 2, :class:`ddpm.samplers.RegressionSampler`)."""
    return images.shape[2] == 2


def mean_and_spread(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Samples [S, B, 1, H, W] -> their mean [B, 1, H, W] and population std (None for S = 1): the mean is
    the better estimate on pixel metrics, the spread shows where the model is unsure. A probabilistic
    regression's one evaluation (:func:`predicts_std`) -> its image and its predicted std."""
    if predicts_std(images):
        return images[0, :, :1], images[0, :, 1:]
    return images.mean(dim=0), images.std(dim=0, unbiased=False) if len(images) > 1 else None


class Sampling:
    """The sampler ``config`` names, built once for a model of ``diffusion``, and the samples per input.

    ``chain`` is the time steps one sample visits: its length is the number of network evaluations.
    """

    def __init__(self, config: SamplingConfig, diffusion: Diffusion) -> None:
        self.config = config
        self.diffusion = diffusion
        self.sampler = config.build()
        self.chain = self.sampler.chain(diffusion.steps)

    @property
    def samples(self) -> int:
        return self.config.samples

    def draw(
        self,
        model: Network,
        condition: torch.Tensor,
        generator: torch.Generator | None = None,
        x_T: torch.Tensor | None = None,
        conditional: bool = True,
        base: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``config.samples`` samples of each input [B, 1, H, W]: float [samples, B, 1, H, W].

        All samples of a batch go through the network together, as one chain on samples x B images
        (so every network call is as full as the batch allows). The start of sample ``s`` is the
        ``s``-th draw of [B, 1, H, W] from ``generator``, so a deterministic sampler gives each sample
        what a chain of it alone, drawn in turn, would give. With ``conditional=False`` the inputs only
        set the batch and image size. ``x_T`` [samples x B, 1, H, W], sample-major, replaces the drawn start.
        ``base`` [B, 1, H, W], a residual model's regression output for each input: the chains then sample the
        residual, conditioned on the input and the base, and the samples are the base plus it (:mod:`ddpm.residual`).
        """
        batch = condition.shape[0]
        if base is not None:
            condition = refiner_condition(condition, base)
        repeated = condition.repeat(self.samples, 1, 1, 1)
        if x_T is None:
            x_T = torch.cat([initial_noise(self.diffusion, (batch, 1, *condition.shape[2:]), None, generator)
                             for _ in range(self.samples)])
        images = self.sampler(
            self.diffusion,
            model,
            repeated if conditional else None,
            x_T=x_T,
            generator=generator,
            progress=False,
        )
        images = images.float().view(self.samples, batch, *images.shape[1:])
        return images if base is None else refined(images, base.float())
