"""The regression that a residual run refines (``--train.base CHECKPOINT``, :mod:`ddpm.residual`): read, checked
against the run, and recorded in every checkpoint of the run (:data:`experiments.checkpoint.BASE_KEY`), so that a
residual model's file is complete without the regression's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ddpm.settings import UsageError
from experiments.checkpoint import LAST, CheckpointError, file_digest, read_checkpoint
from experiments.config.schema import RunConfig
from experiments.training.initial_weights import check_input_pixel


def read_base(config: RunConfig) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The record (the regression's configuration, its file and digest) and the sampling weights of
    ``config.train.base``.

    Raises :class:`UsageError` naming the file when it is not a regression checkpoint of the run's task, input
    scaling and pixel, or when its network cannot take the run's windows."""
    path = Path(config.train.base)
    flag = f"--train.base {path}"
    try:
        checkpoint = read_checkpoint(path)
        base = RunConfig.from_dict(checkpoint.config)
    except (FileNotFoundError, CheckpointError, TypeError, ValueError) as error:
        raise UsageError(f"{flag}: {error}") from error
    if base.train.objective != "regression":
        raise UsageError(f"{flag}: its objective is {base.train.objective}; a residual run refines a regression "
                         "checkpoint (trained with --preset regression or --preset probabilistic)")
    for name in ("task", "normalization"):
        theirs, ours = getattr(base.data, name), getattr(config.data, name)
        if theirs != ours:
            raise UsageError(f"{flag}: its data.{name} is {theirs}, this run's is {ours}; the base must have been "
                             "trained on inputs like this run's")
    if config.network.size_multiple % base.network.size_multiple:
        raise UsageError(f"{flag}: its network takes sides in multiples of {base.network.size_multiple}, which "
                         f"this run's network ({config.network.size_multiple}) does not guarantee; give the refiner "
                         "at least as many resolution levels as the base")
    check_input_pixel(checkpoint, config, flag, "train the base on this data first")
    _, weights = checkpoint.sampling_weights()
    file = path / LAST if path.is_dir() else path
    record = {"config": base.to_dict(), "checkpoint": str(path), "digest": file_digest(file)}
    return record, weights

