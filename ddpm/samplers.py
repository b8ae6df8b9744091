"""The reverse-process samplers, one small object each, all called the same way.

``SimpleSampler`` is Eq. 11 (the tutorial's), ``X0Sampler`` Appendix B (reconstruct x0, clamp,
posterior mean) and ``DDIMSampler`` Song et al. (2021) on a subset of the trained steps;
``RegressionSampler`` is the regression baseline's single evaluation (no diffusion). Each is a
frozen dataclass whose fields are its options, checked once when it is built, and whose defaults
are the paper's algorithm:

    images = sampler(diffusion, model, condition, x_T=None, generator=generator)

A sampler chooses its own time steps (:meth:`chain`: all T, or DDIM's subset) and its own
step (:meth:`stepper`); :func:`run_chain` is the loop they share. ``SAMPLERS`` maps each sampler's
``name`` to its class: a class joins it with :func:`register_sampler`, so a new sampler is one new
module (as :mod:`ddpm.dpm_solver`) imported by ``ddpm/__init__.py``, and every command offers it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Callable, ClassVar, Sequence, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from .ddim import (
    DEFAULT_DDIM_STEPS,
    SPACINGS,
    Spacing,
    check_eta,
    check_timesteps,
    ddim_coefficients,
    ddim_step,
    ddim_timesteps,
)
from .diffusion import REGRESSION_STEP, VARIANCES, Diffusion, Timestep, Variance, laplace_std
from .settings import check_choice

# One reverse step: (x_t, t, t_prev, predicted noise, z) -> x_{t_prev}; z is None on the final step.
StepFn = Callable[[torch.Tensor, int, int, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
# A key of SAMPLERS: "simple", "x0", "ddim", "regression", "dpmpp2m" and whatever a fork registers.
SamplerName = str


def run_chain(
    diffusion: Diffusion,
    model: nn.Module,
    x: torch.Tensor,
    timesteps: Sequence[int],
    step: StepFn,
    condition: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    save_steps: Sequence[int] | None = None,
    progress: bool = True,
    model_kwargs: dict | None = None,
    draws_noise: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``step`` along ``timesteps`` (descending) from ``x`` [B, C, H, W]: Listing 10 / 27's loop.

    The model sees ``cat([condition, x_t], dim=1)`` (the low-resolution image as extra input
    channels, as in the tutorial) or ``x_t`` alone when ``condition`` is None. Nothing in the
    loop synchronises with the device: time encodings are looked up, coefficients are indexed
    by Python ints, and the noise is drawn into one reused buffer. Every step draws noise except
    the last (the one from the chain's final step to ``-1``, which returns the mean); with
    ``draws_noise=False`` (a deterministic sampler) none does, and ``generator`` is left as it was.

    Returns:
        ``(x_final, saved)``: the last images and, stacked [S, B, C, H, W], for each ``t`` in
        ``save_steps`` met on the way the images right after that step, in the order they were
        produced (S = 0 when none).
    """
    model_kwargs = model_kwargs or {}
    if condition is not None:
        condition = condition.to(diffusion.device, diffusion.dtype)
    wanted = set(save_steps or ())
    batch = x.shape[0]
    z = torch.empty_like(x)
    saved = []
    schedule = list(timesteps)
    for i, t in enumerate(tqdm(schedule, desc="reverse diffusion", disable=not progress, leave=False)):
        t_prev = schedule[i + 1] if i + 1 < len(schedule) else -1
        model_input = x if condition is None else torch.cat([condition, x], dim=1)
        predicted_noise = model(model_input, diffusion.time_encodings[t].expand(batch, -1), **model_kwargs)
        noise = z.normal_(generator=generator) if draws_noise and t_prev >= 0 else None
        x = step(x, t, t_prev, predicted_noise.to(x.dtype), noise)
        if t in wanted:
            saved.append(x)
    return x, torch.stack(saved) if saved else x.new_empty(0, *x.shape)


def initial_noise(
    diffusion: Diffusion,
    shape: Sequence[int] | None,
    condition: torch.Tensor | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """x_T ~ N(0, I) of ``shape``; by default one channel at the condition's batch and size."""
    if shape is None:
        if condition is None:
            raise ValueError("give the sample shape [B, C, H, W] (or x_T) for unconditional sampling")
        shape = (condition.shape[0], 1, *condition.shape[2:])
    return torch.randn(tuple(shape), generator=generator, device=diffusion.device, dtype=diffusion.dtype)


class Sampler(ABC):
    """What every sampler shares: the call, which starts from x_T and runs :func:`run_chain`.

    A subclass names itself (``name``), chooses its steps (:meth:`chain`) and makes its step
    function for a chain (:meth:`stepper`).
    """

    name: ClassVar[str]

    @abstractmethod
    def chain(self, steps_total: int) -> list[int]:
        """The steps the chain visits, descending, for a model trained on ``steps_total`` steps."""

    @abstractmethod
    def stepper(self, diffusion: Diffusion, timesteps: Sequence[int]) -> StepFn:
        """The step function of a chain along ``timesteps`` (as returned by :meth:`chain`)."""

    @property
    def draws_noise(self) -> bool:
        """Whether the steps take fresh noise ``z``; a deterministic sampler's chain draws nothing after x_T."""
        return True

    @torch.inference_mode()
    def __call__(
        self,
        diffusion: Diffusion,
        model: nn.Module,
        condition: torch.Tensor | None = None,
        *,
        shape: Sequence[int] | None = None,
        x_T: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        save_steps: Sequence[int] | None = None,
        progress: bool = True,
        model_kwargs: dict | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Sample images with this sampler.

        Args:
            diffusion: the schedule the model was trained with.
            model: noise predictor, called as ``model(x, t_encoding, **model_kwargs)``.
            condition: low-resolution images [B, C_cond, H, W] in [-1, 1], or None (unconditional).
            shape: shape of the samples [B, C, H, W]; defaults to one channel at the condition's size.
            x_T: the images to start from [B, C, H, W]; drawn from N(0, I) with ``generator`` when omitted.
            generator: draws x_T (unless given) and the noise of each step.
            save_steps: time steps whose result to keep as well.

        Returns:
            images [B, C, H, W]; with ``save_steps``, ``(images, saved [S, B, C, H, W])`` in sampling order.
        """
        chain = self.chain(diffusion.steps)
        step = self.stepper(diffusion, chain)
        if x_T is None:
            x = initial_noise(diffusion, shape, condition, generator)
        else:
            x = x_T.to(diffusion.device, diffusion.dtype)
        images, saved = run_chain(
            diffusion, model, x, chain, step, condition, generator, save_steps, progress, model_kwargs, self.draws_noise
        )
        return images if save_steps is None else (images, saved)


SAMPLERS: dict[str, type[Sampler]] = {}
SamplerClass = TypeVar("SamplerClass", bound=type[Sampler])


def register_sampler(cls: SamplerClass) -> SamplerClass:
    """Class decorator: offer ``cls`` under its ``name`` to :func:`make_sampler` and every command's ``--sampler``."""
    if cls.name in SAMPLERS and SAMPLERS[cls.name] is not cls:
        raise ValueError(f"sampler name {cls.name!r} is already registered by {SAMPLERS[cls.name].__qualname__}")
    SAMPLERS[cls.name] = cls
    return cls


class _AncestralSampler(Sampler):
    """A sampler on all T trained steps whose step is ``x_{t-1} = mean + sigma_t z`` (Eq. 11)."""

    variance: Variance

    def __post_init__(self) -> None:
        check_choice("variance", self.variance, VARIANCES)

    def chain(self, steps_total: int) -> list[int]:
        return list(range(steps_total - 1, -1, -1))

    @abstractmethod
    def mean(self, diffusion: Diffusion, x_t: torch.Tensor, t: Timestep, predicted_noise: torch.Tensor) -> torch.Tensor:
        """The mean of the step from ``t`` [B, C, H, W]."""

    def step(
        self,
        diffusion: Diffusion,
        x_t: torch.Tensor,
        t: Timestep,
        predicted_noise: torch.Tensor,
        z: torch.Tensor | None,
    ) -> torch.Tensor:
        """One reverse step ``x_{t-1} = mean + sigma_t z`` on images [B, C, H, W].

        ``t`` is an int or a long tensor [B]; ``z`` is standard Gaussian noise [B, C, H, W], or
        ``None`` for the mean alone (as on the chain's final step, from ``t = 0``).
        """
        mean = self.mean(diffusion, x_t, t, predicted_noise)
        if z is None:
            return mean
        return mean + diffusion.reverse_sigma(t, x_t, self.variance) * z

    def stepper(self, diffusion: Diffusion, timesteps: Sequence[int]) -> StepFn:
        return lambda x_t, t, t_prev, predicted_noise, z: self.step(diffusion, x_t, t, predicted_noise, z)


@register_sampler
@dataclass(frozen=True)
class SimpleSampler(_AncestralSampler):
    """Eq. 11, the tutorial's sampler (Listing 10): the mean of Eq. 8 with the predicted noise, and
    ``sigma_t^2 = beta_t`` (``variance="beta"``, the default) or ``beta_tilde_t``."""

    name: ClassVar[str] = "simple"
    variance: Variance = "beta"

    def mean(self, diffusion: Diffusion, x_t: torch.Tensor, t: Timestep, predicted_noise: torch.Tensor) -> torch.Tensor:
        """Eq. 8 / 10: ``(x_t - beta_t / sqrt(1 - alpha_bar_t) noise) / sqrt(alpha_t)``."""
        return diffusion.simplified_mean(x_t, t, predicted_noise)


@register_sampler
@dataclass(frozen=True)
class X0Sampler(_AncestralSampler):
    """Appendix B (Listing 27): reconstruct x0 by Eq. 27, clamp it to [-1, 1] (``clamp``), take the
    posterior mean of Eq. 26, and ``sigma_t^2 = beta_tilde_t`` (the default) or ``beta_t``.
    Without the clamp its mean is Eq. 11's."""

    name: ClassVar[str] = "x0"
    variance: Variance = "beta_tilde"
    clamp: bool = True

    def mean(self, diffusion: Diffusion, x_t: torch.Tensor, t: Timestep, predicted_noise: torch.Tensor) -> torch.Tensor:
        """Eq. 27 then Eq. 26: the posterior mean at the (clamped) reconstructed x0."""
        x0 = diffusion.predict_x0(x_t, t, predicted_noise)
        if self.clamp:
            x0 = x0.clamp(-1.0, 1.0)
        return diffusion.posterior_mean(x0, x_t, t)


@register_sampler
@dataclass(frozen=True)
class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021, Eq. 12 and 16) on a subset of the trained steps.

    Args:
        sampling_steps: how many steps (network evaluations), spread by ``spacing`` over ``0 .. T - 1``
            (:func:`ddpm.ddim.ddim_timesteps`, which bounds them by T when the chain is made);
            None: 50 (every trained step when T is smaller), unless ``timesteps`` is given.
        eta: 0 for deterministic DDIM (the default), up to 1 for DDPM-like noise.
        spacing: ``"uniform"`` (the project's default) or ``"quadratic"``.
        timesteps: the steps to use instead of ``sampling_steps``: distinct ints in ``0 .. T - 1``.
        clamp: clamp each reconstructed x0 to [-1, 1] (see :func:`ddpm.ddim.ddim_step`).
    """

    name: ClassVar[str] = "ddim"
    sampling_steps: int | None = None
    eta: float = 0.0
    spacing: Spacing = "uniform"
    timesteps: Sequence[int] | None = None
    clamp: bool = True

    def __post_init__(self) -> None:
        check_eta(self.eta)
        check_choice("DDIM spacing", self.spacing, SPACINGS)
        if self.sampling_steps is not None and self.timesteps is not None:
            raise ValueError("give either sampling_steps or timesteps for DDIM sampling, not both")
        if self.timesteps is not None:
            # Checked here as far as possible without T (distinct ints >= 0), against T in chain();
            # stored as a tuple, in sampling order, so the frozen sampler holds no mutable list.
            steps = check_timesteps(self.timesteps, max(self.timesteps, default=0) + 1)
            object.__setattr__(self, "timesteps", tuple(steps))

    def chain(self, steps_total: int) -> list[int]:
        if self.timesteps is not None:
            return check_timesteps(self.timesteps, steps_total)
        sampling_steps = min(DEFAULT_DDIM_STEPS, steps_total) if self.sampling_steps is None else self.sampling_steps
        return ddim_timesteps(steps_total, sampling_steps, self.spacing)

    @property
    def draws_noise(self) -> bool:
        return self.eta > 0

    def stepper(self, diffusion: Diffusion, timesteps: Sequence[int]) -> StepFn:
        coefficients = ddim_coefficients(diffusion, timesteps, self.eta)
        return lambda x_t, t, t_prev, predicted_noise, z: ddim_step(
            diffusion, x_t, t, predicted_noise, z, coefficients[t], self.clamp
        )


@register_sampler
@dataclass(frozen=True)
class RegressionSampler(Sampler):
    """The regression baseline's one network evaluation (:meth:`ddpm.Diffusion.regression_loss`): the
    network sees the condition beside zeros at :data:`ddpm.diffusion.REGRESSION_STEP` and its output is
    the image, clamped to [-1, 1] (``clamp``) as every sampler's data prediction is: the target's range. The
    start x_T only sets the shape: the result is deterministic. A probabilistic regression's network (loss
    ``laplace``) has a second channel, its log-scale: the result then has two, the image and the std of its
    error that the model predicts (:func:`ddpm.diffusion.laplace_std`)."""

    name: ClassVar[str] = "regression"
    clamp: bool = True

    def chain(self, steps_total: int) -> list[int]:
        return [steps_total + REGRESSION_STEP]

    draws_noise = False

    def stepper(self, diffusion: Diffusion, timesteps: Sequence[int]) -> StepFn:
        def output(x_t, t, t_prev, predicted, z):
            image = predicted[:, :1].clamp(-1.0, 1.0) if self.clamp else predicted[:, :1]
            return image if predicted.shape[1] == 1 else torch.cat([image, laplace_std(predicted[:, 1:2])], dim=1)

        return output

    def __call__(self, diffusion: Diffusion, model: nn.Module, condition: torch.Tensor | None = None, *,
                 shape: Sequence[int] | None = None, x_T: torch.Tensor | None = None, **options):
        start = initial_noise(diffusion, shape, condition, None) if x_T is None else x_T
        return super().__call__(diffusion, model, condition, x_T=torch.zeros_like(start), **options)


def sampler_options(name: str) -> tuple[str, ...]:
    """The option names (dataclass fields) of the sampler registered as ``name``."""
    check_choice("sampler", name, tuple(SAMPLERS))
    return tuple(field.name for field in fields(SAMPLERS[name]))


def make_sampler(name: str, **options) -> Sampler:
    """The sampler registered as ``name``, built with those of ``options`` it takes.

    Options another sampler takes, and options set to None, are left out (None: the sampler's
    default), so one settings record (e.g. an evaluation config) can build any sampler.
    """
    taken = sampler_options(name)
    return SAMPLERS[name](**{key: value for key, value in options.items() if key in taken and value is not None})
