"""A trained checkpoint made ready to super-resolve images of any size: a :class:`~experiments.inference.predictor.Predictor`.

    predictor = load_for_inference("runs/demo-20260101-120000/best.pt")
    prediction = predictor.sample(widefield, FrameRequest(predictor.config.sampling), generator)   # [-1, 1] in and out
    mean, std = prediction.mean, prediction.std                                        # std None for one sample

The checkpoint carries everything needed: the network weights (its ``"ema"`` averaged weights when
present, else ``"model"``), and the run's :class:`~experiments.config.schema.RunConfig` with the network shape,
the noise schedule, the pixel normalisation of the training data and the sampling settings it was
evaluated with.
"""

from __future__ import annotations

from pathlib import Path

from ddpm.settings import UserError
from experiments.build import base_config, build_diffusion, build_model
from experiments.config.schema import RunConfig
from experiments.inference.predictor import LEGACY_IMAGE_SIDE, Predictor
from experiments.runtime import pick_device
from experiments.data.task import BIOSR_CAMERA_PIXEL_UM, DataGrid
from experiments.checkpoint import BASE_KEY, CALIBRATION_KEY, GRID_KEY, LAST, Checkpoint, file_digest, read_checkpoint
from experiments.trust.calibration import StdCalibration
from unet import optimize_for_speed


class InferenceError(UserError):
    """A checkpoint or device cannot be used for prediction; the message names it and says what to do."""


def _read_config(checkpoint: Checkpoint, path: Path) -> RunConfig:
    try:
        config = RunConfig.from_dict(checkpoint.config)
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

    ``checkpoint``: a ``.pt`` file or a run folder (its ``last.pt``). ``device``: one of
    ``experiments.runtime.DEVICES``. Raises :class:`InferenceError` naming the file (or device) when it cannot be used.
    """
    try:
        target = pick_device(device)
    except (RuntimeError, ValueError) as error:
        raise InferenceError(str(error)) from error
    try:
        contents = read_checkpoint(checkpoint)
    except (FileNotFoundError, ValueError) as error:
        raise InferenceError(str(error)) from error
    path = Path(checkpoint)
    path = path / LAST if path.is_dir() else path
    config = _read_config(contents, path)
    weights, state = contents.sampling_weights()
    model = build_model(config, target, _read_base(contents, config, path))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise InferenceError(
            f"{path}: its {weights!r} weights do not fit the network of its own configuration ({error})"
        ) from error
    return Predictor(
        # The memory layout training ran in (channels_last by default).
        model=optimize_for_speed(model.eval(), channels_last=config.train.channels_last),
        diffusion=build_diffusion(config, target),
        config=config,
        checkpoint=path.resolve(),
        digest=file_digest(path),
        weights=weights,
        device=target,
        tile=min(contents.image_size or [LEGACY_IMAGE_SIDE]),
        grid=_read_grid(contents, config, path),
        calibration=_read_calibration(contents, path),
    )


def _read_base(checkpoint: Checkpoint, config: RunConfig, path: Path) -> RunConfig | None:
    """A residual model's regression configuration (its checkpoint's ``base``), None for any other model."""
    if config.train.objective != "residual":
        return None
    try:
        return base_config(checkpoint.base)
    except (KeyError, TypeError, ValueError) as error:
        raise InferenceError(f"{path}: a residual model without a readable {BASE_KEY!r} entry ({error}); use a "
                             "checkpoint written by experiments.train") from error


def _read_calibration(checkpoint: Checkpoint, path: Path) -> StdCalibration | None:
    """The std map's calibration a shipped checkpoint records, or None."""
    if checkpoint.calibration is None:
        return None
    try:
        return StdCalibration(**checkpoint.calibration)
    except (TypeError, ValueError) as error:
        raise InferenceError(f"{path}: its {CALIBRATION_KEY!r} entry cannot be read ({error}); publish the model "
                             "again, or load its run's checkpoint") from error


def _read_grid(checkpoint: Checkpoint, config: RunConfig, path: Path) -> DataGrid:
    """The training data's grid the checkpoint records (older ones: its task on BioSR's camera pixel)."""
    if checkpoint.grid is None:
        return DataGrid(config.data.task, BIOSR_CAMERA_PIXEL_UM)
    try:
        grid = DataGrid.from_json(checkpoint.grid)
    except (KeyError, TypeError, ValueError) as error:
        raise InferenceError(f"{path}: its {GRID_KEY!r} entry cannot be read ({error})") from error
    if grid.task != config.data.task:
        raise InferenceError(f"{path}: its data grid ({grid.task}) contradicts its configuration ({config.data.task})")
    return grid
