"""The denoising diffusion probabilistic model of the tutorial (Ho et al. 2020), as plain math.

:class:`Diffusion` owns no network: the model is an argument of every call that needs one, so any
``nn.Module`` mapping ``(noisy image with condition channels [B, C_cond + C, H, W], time encoding
[B, D])`` to predicted noise ``[B, C, H, W]`` works, and the math can be tested with an oracle
model that returns the true noise.

Images live in [-1, 1]. Time steps follow the tutorial's code: ``t = 0 .. T-1``, with
``alpha_bar_{-1} = 1`` (see :mod:`ddpm.schedule`). A time argument ``t`` is either a Python int (one
step for the whole batch, as in the sampling loop) or a long tensor [B] (one step per image).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from .encoding import positional_encoding
from .schedule import ScheduleKind, ScheduleTables, make_betas
from .settings import check_choice

Timestep = int | torch.Tensor
Variance = Literal["beta", "beta_tilde"]
# "laplace": the regression baseline's probabilistic form (its second output channel a per-pixel scale)
LossKind = Literal["mse", "l1", "laplace"]
# "none": every time step weighs alike (the tutorial); "min_snr": Hang et al. (2023), see min_snr_weights.
LossWeighting = Literal["none", "min_snr"]
VARIANCES: tuple[str, ...] = get_args(Variance)
LOSSES: tuple[str, ...] = get_args(LossKind)
DIFFUSION_LOSSES: tuple[str, ...] = ("mse", "l1")  # the losses of predicted noise
# The Laplace scale's log where the probabilistic regression's network can put it: a scale of 1e-3 to 20
# in [-1, 1] units, so that the loss stays finite on pixels the network fits exactly or not at all.
LOG_SCALE_RANGE = (-7.0, 3.0)
LOSS_WEIGHTINGS: tuple[str, ...] = get_args(LossWeighting)
# The step whose encoding the regression baseline's network sees: the noisiest, where x_t holds nothing.
REGRESSION_STEP = -1


def laplace_std(log_scale: torch.Tensor) -> torch.Tensor:
    """The std of a Laplace distribution of log-scale ``log_scale`` (clamped to :data:`LOG_SCALE_RANGE`, as
    trained): sqrt(2) b."""
    return math.sqrt(2.0) * torch.exp(log_scale.clamp(*LOG_SCALE_RANGE))


class Diffusion:
    """Forward process, posterior, reverse-step variances and training loss of a DDPM (samplers: :mod:`ddpm.samplers`).

    Args:
        steps: number of diffusion steps T (the tutorial: 2,000).
        beta_start, beta_end: ends of the linear schedule (the tutorial: 1e-6 and 0.01).
        schedule: ``"linear"`` (the tutorial's) or ``"cosine"`` (Nichol & Dhariwal 2021).
        time_encoding_dim: width D of the sinusoidal time encoding passed to the model.
        device, dtype: where and in which precision the coefficient tables live; they are computed
            in float64 first (:class:`ddpm.schedule.ScheduleTables`).
    """

    def __init__(
        self,
        steps: int = 2000,
        beta_start: float = 1e-6,
        beta_end: float = 0.01,
        schedule: ScheduleKind = "linear",
        time_encoding_dim: int = 256,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.steps = steps
        self.time_encoding_dim = time_encoding_dim
        self.device = torch.device(device)
        self.dtype = dtype
        self.tables = ScheduleTables.from_betas(make_betas(schedule, steps, beta_start, beta_end)).to(
            self.device, dtype
        )
        # Encoded once: the sampling loop then only indexes this table.
        self.time_encodings = positional_encoding(
            torch.arange(steps, device=self.device), time_encoding_dim
        ).to(dtype)
        # Standard deviation of each reverse step for either variance; 0 at t = 0, where Eq. 11 adds no noise.
        self._reverse_sigma = {
            "beta": self._no_noise_at_first_step(self.tables.beta.sqrt()),
            "beta_tilde": self._no_noise_at_first_step((0.5 * self.tables.log_beta_tilde).exp()),
        }

    @staticmethod
    def _no_noise_at_first_step(sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma.clone()
        sigma[0] = 0.0
        return sigma

    # ------------------------------------------------------------------ helpers
    def _at(self, table: torch.Tensor, t: Timestep, like: torch.Tensor) -> torch.Tensor:
        """``table[t]`` shaped to broadcast against ``like`` [B, ...] (one helper for every table)."""
        if isinstance(t, int):
            return table[t]
        return table[t].reshape(-1, *([1] * (like.ndim - 1)))

    def encode_time(self, t: torch.Tensor) -> torch.Tensor:
        """Time encodings [B, D] of the long tensor ``t`` [B] (Listing 11, looked up, not recomputed)."""
        return self.time_encodings[t]

    def _randn_like(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    # ---------------------------------------------------------- forward process
    def forward_diffusion(
        self,
        x0: torch.Tensor,
        t: Timestep,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 3, closed-form forward process: ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise``.

        Args:
            x0: clean images [B, C, H, W] in [-1, 1].
            t: time step(s), int or long [B].
            noise: the Gaussian noise to use, [B, C, H, W]; drawn with ``generator`` when omitted.

        Returns:
            ``(x_t, noise)``, both [B, C, H, W].
        """
        if noise is None:
            noise = self._randn_like(x0, generator)
        x_t = self._at(self.tables.sqrt_alpha_bar, t, x0) * x0 + self._at(
            self.tables.sqrt_one_minus_alpha_bar, t, x0
        ) * noise
        return x_t, noise

    def forward_step(
        self,
        x_prev: torch.Tensor,
        t: Timestep,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Eq. 2, one forward step: ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) noise``.

        In the code's 0-based convention step ``t`` takes ``x_{t-1}`` to ``x_t``, with ``x_{-1} = x0``,
        so that iterating steps ``0 .. t`` reaches the ``x_t`` of Eq. 3.
        """
        if noise is None:
            noise = self._randn_like(x_prev, generator)
        return self._at(self.tables.sqrt_alpha, t, x_prev) * x_prev + self._at(
            self.tables.beta, t, x_prev
        ).sqrt() * noise

    def forward_trajectory(
        self,
        x0: torch.Tensor,
        steps: int,
        noises: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Iterate Eq. 2 for ``steps`` steps from ``x0`` (for figures and tests).

        Args:
            x0: clean images [B, C, H, W].
            steps: how many steps to take, at most T.
            noises: the noise of every step [steps, B, C, H, W]; drawn with ``generator`` when omitted.

        Returns:
            ``[x_0, x_1, .., x_{steps-1}]`` stacked: [steps, B, C, H, W].
        """
        if not 1 <= steps <= self.steps:
            raise ValueError(f"steps must be within 1..{self.steps}, got {steps}")
        x, trajectory = x0, []
        for t in range(steps):
            x = self.forward_step(x, t, None if noises is None else noises[t], generator)
            trajectory.append(x)
        return torch.stack(trajectory)

    # ---------------------------------------------------------------- posterior
    def predict_x0(self, x_t: torch.Tensor, t: Timestep, noise: torch.Tensor) -> torch.Tensor:
        """Eq. 7 / 27, the clean image from a noisy one and its noise:
        ``x0 = sqrt(1 / alpha_bar_t) x_t - sqrt(1 / alpha_bar_t - 1) noise``."""
        return self._at(self.tables.x0_coef_xt, t, x_t) * x_t - self._at(
            self.tables.x0_coef_noise, t, x_t
        ) * noise

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t: Timestep) -> torch.Tensor:
        """Eq. 5 / 26, mean of q(x_{t-1} | x_t, x0):
        ``sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x0 + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t``."""
        return self._at(self.tables.posterior_coef_x0, t, x_t) * x0 + self._at(
            self.tables.posterior_coef_xt, t, x_t
        ) * x_t

    def posterior_variance(self, t: Timestep, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 6, ``beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t`` and its log
        (floored at 1e-20, since ``beta_tilde_0 = 0``), shaped to broadcast against ``like``."""
        return self._at(self.tables.beta_tilde, t, like), self._at(self.tables.log_beta_tilde, t, like)

    def simplified_mean(self, x_t: torch.Tensor, t: Timestep, noise: torch.Tensor) -> torch.Tensor:
        """Eq. 8 / 10, the posterior mean written with the noise:
        ``(x_t - beta_t / sqrt(1 - alpha_bar_t) noise) / sqrt(alpha_t)``."""
        return (x_t - self._at(self.tables.eps_coef, t, x_t) * noise) / self._at(self.tables.sqrt_alpha, t, x_t)

    # ------------------------------------------------------------ reverse steps
    def reverse_sigma(self, t: Timestep, like: torch.Tensor, variance: Variance) -> torch.Tensor:
        """Standard deviation sigma_t of a reverse step: ``sqrt(beta_t)`` (Eq. 11, the tutorial) or
        ``sqrt(beta_tilde_t)`` (Appendix B); 0 at ``t = 0``, the last step, which adds no noise."""
        check_choice("variance", variance, VARIANCES)
        return self._at(self._reverse_sigma[variance], t, like)

    # -------------------------------------------------------------------- loss
    def training_loss(
        self,
        model: nn.Module,
        x0: torch.Tensor,
        condition: torch.Tensor | None = None,
        loss: LossKind = "mse",
        generator: torch.Generator | None = None,
        model_kwargs: dict | None = None,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        weighting: LossWeighting = "none",
        snr_gamma: float = 5.0,
    ) -> torch.Tensor:
        """Eq. 12-13: ``|| noise - model(x_t, t) ||`` with ``t ~ U{0 .. T-1}`` and x_t from Eq. 3.

        Args:
            x0: clean targets [B, C, H, W] in [-1, 1].
            condition: low-resolution inputs [B, C_cond, H, W], concatenated before x_t (Listing 19).
            loss: ``"mse"`` (the tutorial's first run) or ``"l1"`` (its second).
            generator: draws t and the noise when they are not given (must live on x0's device).
            t, noise: the time steps [B] and noise [B, C, H, W] to use instead of drawing them.
            weighting: ``"none"`` (the tutorial's plain mean) or ``"min_snr"``: each image's loss times
                :meth:`min_snr_weights` of its t (with ``snr_gamma``).

        Returns:
            the scalar loss, averaged over pixels and images, in float32.
        """
        check_choice("loss", loss, LOSSES)
        check_choice("loss weighting", weighting, LOSS_WEIGHTINGS)
        check_choice("diffusion loss", loss, DIFFUSION_LOSSES)
        if t is None:
            t = torch.randint(0, self.steps, (x0.shape[0],), device=x0.device, generator=generator)
        x_t, noise = self.forward_diffusion(x0, t, noise=noise, generator=generator)
        model_input = x_t if condition is None else torch.cat([condition, x_t], dim=1)
        predicted = model(model_input, self.encode_time(t), **(model_kwargs or {}))
        criterion = F.mse_loss if loss == "mse" else F.l1_loss
        if weighting == "none":
            return criterion(predicted.float(), noise.float())
        per_image = criterion(predicted.float(), noise.float(), reduction="none").flatten(1).mean(1)
        return (self.min_snr_weights(t, snr_gamma) * per_image).mean()

    def min_snr_weights(self, t: torch.Tensor, gamma: float) -> torch.Tensor:
        """Min-SNR-gamma loss weights (Hang et al., "Efficient Diffusion Training via Min-SNR Weighting
        Strategy", ICCV 2023, Eq. 9 for a noise-predicting network): ``min(SNR_t, gamma) / SNR_t`` with
        ``SNR_t = alpha_bar_t / (1 - alpha_bar_t)``, float32 [B]. Steps of little noise (high SNR) weigh
        less, so that they stop dominating the gradient; steps with SNR below gamma weigh 1."""
        snr = (self.tables.sqrt_alpha_bar[t].double() / self.tables.sqrt_one_minus_alpha_bar[t].double()) ** 2
        return (snr.clamp(max=gamma) / snr).float()

    def regression_output(self, model: nn.Module, condition: torch.Tensor) -> torch.Tensor:
        """The regression baseline's one evaluation: ``model([condition, 0], e)`` with the image channel zero
        and ``e`` the encoding of :data:`REGRESSION_STEP` (training and :class:`ddpm.samplers.RegressionSampler`
        call it alike)."""
        model_input = torch.cat([condition, torch.zeros_like(condition[:, :1])], dim=1)
        t = torch.full((condition.shape[0],), self.steps + REGRESSION_STEP, device=condition.device, dtype=torch.long)
        return model(model_input, self.encode_time(t))

    def regression_loss(
        self, model: nn.Module, x0: torch.Tensor, condition: torch.Tensor, loss: LossKind = "l1"
    ) -> torch.Tensor:
        """The regression baseline's loss (CARE-style, no diffusion), so that the same network maps the input
        straight to the target in one evaluation (:meth:`regression_output`): ``|| x0 - output ||`` (``mse``,
        ``l1``), or with ``laplace`` the negative log-likelihood of ``x0`` under a Laplace distribution per pixel
        whose location is the output's first channel and whose log-scale is its second (probabilistic CARE,
        Weigert et al. 2018): ``|x0 - mu| / b + log b``, averaged over pixels (the constant log 2 left out)."""
        check_choice("loss", loss, LOSSES)
        predicted = self.regression_output(model, condition).float()
        if loss != "laplace":
            criterion = F.mse_loss if loss == "mse" else F.l1_loss
            return criterion(predicted, x0.float())
        if predicted.shape[1] != 2:
            raise ValueError(f"the laplace loss needs a network with 2 output channels (location, log-scale); "
                             f"this one has {predicted.shape[1]}")
        location, log_scale = predicted[:, :1], predicted[:, 1:].clamp(*LOG_SCALE_RANGE)
        return ((x0.float() - location).abs() * torch.exp(-log_scale) + log_scale).mean()
