"""Diffusion core: the DDPM mathematics of Bachimanchi & Volpe (2024), independent of any network."""

from .ddim import SPACINGS, DDIMCoefficients, check_timesteps, ddim_coefficients, ddim_step, ddim_timesteps
from .dpm_solver import DPMSolverSampler, multistep_rows
from .diffusion import LOSS_WEIGHTINGS, LOSSES, VARIANCES, Diffusion
from .encoding import positional_encoding
from .samplers import (
    SAMPLERS,
    register_sampler,
    DDIMSampler,
    RegressionSampler,
    Sampler,
    SimpleSampler,
    X0Sampler,
    make_sampler,
    run_chain,
    sampler_options,
)
from .residual import refined, refiner_condition, residual_of
from .schedule import SCHEDULES, ScheduleTables, cosine_betas, linear_betas, make_betas

__all__ = [
    "Diffusion",
    "positional_encoding",
    "ScheduleTables",
    "linear_betas",
    "cosine_betas",
    "make_betas",
    "SCHEDULES",
    "SAMPLERS",
    "register_sampler",
    "Sampler",
    "SimpleSampler",
    "X0Sampler",
    "DDIMSampler",
    "DPMSolverSampler",
    "multistep_rows",
    "RegressionSampler",
    "make_sampler",
    "sampler_options",
    "run_chain",
    "VARIANCES",
    "LOSSES",
    "LOSS_WEIGHTINGS",
    "ddim_timesteps",
    "check_timesteps",
    "ddim_coefficients",
    "DDIMCoefficients",
    "ddim_step",
    "SPACINGS",
    "refiner_condition",
    "residual_of",
    "refined",
]
