"""The checkpoint format: what a ``.pt`` file of this project holds, written atomically and read back typed.

Training writes, and resumes from, a :class:`Checkpoint` with its :class:`Progress`; prediction, export,
evaluation and publishing read the same file; :func:`inference_only` keeps what they read, for shipping (with
its :class:`Source`). On disk it is a plain dict of tensors and Python values (``torch.load(...,
weights_only=True)`` reads it; its keys are this module's, in :meth:`Checkpoint.to_payload`), so files written
by earlier versions load: those without an image size, a data grid or EMA weights.

    checkpoint = read_checkpoint("runs/demo-20260101-120000")       # its last.pt
    name, weights = checkpoint.sampling_weights()                  # EMA weights when present
    write_checkpoint(inference_only("runs/.../best.pt"), "pretrained/x/model.pt")
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddpm.settings import UserError
from experiments.integrity.atomic import atomic_path, temporaries_of
from experiments.integrity.finite import count_non_finite

LAST = "last.pt"
BEST = "best.pt"
# The weight sets a checkpoint may hold, preferred first: the averaged weights usually sample better
# than the last optimiser step.
WEIGHT_KEYS = ("ema", "model")
# The payload's keys beside the weights, in the order they are written.
CONFIG_KEY = "config"
# [H, W] of the training images; checkpoints written before it was recorded lack it.
IMAGE_SIZE_KEY = "image_size"
# The training data's task and input pixel (experiments.data.task.DataGrid.to_json); checkpoints written
# before it was recorded lack it (then: the tutorial task on BioSR's camera pixel).
GRID_KEY = "grid"
# Where an inference-only checkpoint came from: run, checkpoint, epoch, training seconds.
SOURCE_KEY = "source"
# A shipped model's std-map calibration (experiments.trust.calibration.StdCalibration as a dict), fitted on the
# validation split by experiments.evaluate and stored by experiments.publish; others lack it.
CALIBRATION_KEY = "calibration"
# A residual model's regression part (experiments.build.ResidualModel): the regression's RunConfig dict and the
# checkpoint it was read from (path and digest); its weights are in the weight sets, under "base.".
BASE_KEY = "base"
PROGRESS_KEYS = ("optimizer", "epoch", "batch_in_epoch", "global_step", "epoch_loss_sum", "epoch_seconds", "rng")


class CheckpointError(UserError):
    """A file is not a checkpoint this project can read; the message names it."""


class NonFiniteCheckpoint(UserError):
    """A checkpoint would hold NaN or inf weights; it is not written, so every checkpoint on disk is usable."""


@dataclass(frozen=True)
class Progress:
    """Where a training run stands, all a resumed run continues from: the optimiser's state, the position
    (epoch, batch within it, global step), the current epoch's loss sum and seconds so far, every random
    state (:func:`rng_state`), the epochs' records (``EpochRecord.to_json()`` each) and the best score."""

    optimizer: dict[str, Any]
    epoch: int
    batch_in_epoch: int
    global_step: int
    epoch_loss_sum: float
    epoch_seconds: float
    rng: dict[str, Any]
    history: list[dict[str, Any]]
    best_score: float | None


@dataclass(frozen=True)
class Source:
    """Where an inference-only checkpoint came from: its run folder's name, the file, the epoch and the seconds
    of training (the epochs' own times)."""

    run: str
    checkpoint: str
    epoch: int | None
    training_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "checkpoint": self.checkpoint, "epoch": self.epoch,
                "training_seconds": self.training_seconds}


@dataclass(frozen=True)
class Checkpoint:
    """The contents of a checkpoint: the run's configuration (``RunConfig.to_dict()``), its weight sets
    (:data:`WEIGHT_KEYS` -> state dict), the training image size and data grid where recorded, and either the
    training :class:`Progress` (a run's ``last.pt`` / ``best.pt``) or the :class:`Source` (an inference-only
    one), or neither (a bare file of weights and configuration)."""

    config: dict[str, Any]
    weights: dict[str, dict[str, torch.Tensor]]
    image_size: list[int] | None = None
    grid: dict[str, Any] | None = None
    progress: Progress | None = None
    source: Source | None = None
    calibration: dict[str, Any] | None = None
    base: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(WEIGHT_KEYS)
        if unknown or not self.weights:
            raise ValueError(f"a checkpoint holds one or both weight sets {WEIGHT_KEYS}, got {sorted(self.weights)}")

    def sampling_weights(self) -> tuple[str, dict[str, torch.Tensor]]:
        """The weight set to sample with, and its name: EMA weights when present."""
        name = next(key for key in WEIGHT_KEYS if key in self.weights)
        return name, self.weights[name]

    def to_payload(self) -> dict[str, Any]:
        """The dict ``torch.save`` writes, its keys in the order this project has always written them."""
        if self.progress is not None:
            progress = self.progress
            return {
                **{key: self.weights[key] for key in ("model", "ema") if key in self.weights},
                "optimizer": progress.optimizer, "epoch": progress.epoch, "batch_in_epoch": progress.batch_in_epoch,
                "global_step": progress.global_step, "epoch_loss_sum": progress.epoch_loss_sum,
                "epoch_seconds": progress.epoch_seconds, "rng": progress.rng,
                CONFIG_KEY: self.config,
                **self._recorded(),
                "history": progress.history, "best_score": progress.best_score,
            }
        return {**self.weights, CONFIG_KEY: self.config, **self._recorded(),
                **({SOURCE_KEY: self.source.to_json()} if self.source is not None else {})}

    def _recorded(self) -> dict[str, Any]:
        return {key: value for key, value in ((IMAGE_SIZE_KEY, self.image_size), (GRID_KEY, self.grid),
                                              (CALIBRATION_KEY, self.calibration), (BASE_KEY, self.base))
                if value is not None}

    @classmethod
    def from_payload(cls, payload: Any, path: str | Path) -> "Checkpoint":
        """The checkpoint a loaded ``payload`` holds; :class:`CheckpointError` naming ``path`` when it is not one."""
        if not isinstance(payload, dict) or CONFIG_KEY not in payload or not any(key in payload for key in WEIGHT_KEYS):
            raise CheckpointError(f"{path}: not a checkpoint of this project (it needs weights and a configuration); "
                                  "pass a .pt file written by experiments.train, or a run folder")
        progress = None
        if all(key in payload for key in PROGRESS_KEYS):
            progress = Progress(*(payload[key] for key in PROGRESS_KEYS), history=payload.get("history", []),
                                best_score=payload.get("best_score"))
        source = payload.get(SOURCE_KEY)
        return cls(payload[CONFIG_KEY], {key: payload[key] for key in WEIGHT_KEYS if key in payload},
                   payload.get(IMAGE_SIZE_KEY), payload.get(GRID_KEY), progress,
                   Source(**source) if source is not None else None, payload.get(CALIBRATION_KEY),
                   payload.get(BASE_KEY))


def non_finite_entries(payload: Any, prefix: str = "") -> list[str]:
    """Dotted names of the floating-point tensors in ``payload`` (nested dicts and lists) holding NaN or inf."""
    if isinstance(payload, torch.Tensor):
        return [prefix] if count_non_finite(payload) else []
    if isinstance(payload, dict):
        items = payload.items()
    elif isinstance(payload, (list, tuple)):
        items = enumerate(payload)
    else:
        return []
    return [name for key, value in items for name in non_finite_entries(value, f"{prefix}.{key}" if prefix else str(key))]


def remove_stale_temporaries(path: str | Path) -> None:
    """Delete temporary files of ``path`` left by a writer that was killed (``kill -9``) mid-save."""
    for stale in temporaries_of(Path(path)):
        stale.unlink(missing_ok=True)


def save_atomic(payload: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to ``path`` through :func:`experiments.integrity.atomic.atomic_path` (flushed to disk).

    A crash at any moment leaves either the old checkpoint or the new one, never a torn file. A payload
    with a non-finite floating-point tensor is refused (:class:`NonFiniteCheckpoint`) and the old file kept.
    The file gets the mode any new file of the run gets (0666 less the umask), and temporaries of earlier,
    killed writers are removed.
    """
    path = Path(path)
    bad = non_finite_entries(payload)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise NonFiniteCheckpoint(f"{path} was not written: {shown} hold NaN or inf")
    remove_stale_temporaries(path)
    with atomic_path(path, durable=True) as temporary, open(temporary, "wb") as handle:
        # through a handle: torch names the archive inside after a file path (here a random temporary) and
        # after nothing for a handle, so the same payload gives the same bytes, and a shipped model's digest
        # changes only with its contents
        torch.save(payload, handle)
    return path


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    return path / LAST if path.is_dir() else path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """The checkpoint at ``path`` (a ``.pt`` file, or a run folder: its ``last.pt``), tensors on ``map_location``.

    Raises FileNotFoundError when there is none, :class:`CheckpointError` naming the file when it is not a
    checkpoint of this project (torch's multi-line reason cut to its first line)."""
    path = _resolve(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; pass a run folder holding {LAST} or a .pt file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for a corrupt or foreign file
        # torch's own text runs over many lines and, for a foreign file, advises weights_only=False, which would
        # run whatever code the file holds: its first line is the reason; the advice is ours.
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise CheckpointError(f"{path} is not a readable checkpoint of this project ({reason}); pass a .pt file "
                              "written by experiments.train, or a run folder") from error
    return Checkpoint.from_payload(payload, path)


def write_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """:func:`save_atomic` of ``checkpoint``'s payload."""
    return save_atomic(checkpoint.to_payload(), path)


def file_digest(path: str | Path, length: int = 16) -> str:
    """Short SHA-256 of a file, to record which checkpoint produced an output."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state training draws from: torch's global CPU (and CUDA) generators and the
    generator of time steps and noise."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "train": generator.get_state(),
    }


def restore_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["train"])


def inference_only(source: str | Path) -> Checkpoint:
    """What prediction and export read of the checkpoint at ``source``, for shipping: the weights it samples with,
    the configuration, the training image size, the data grid, a residual model's base, and where it came from (:class:`Source`); the
    optimizer's state, the random states and the history are dropped (the demo's network: 4 MB -> 1 MB)."""
    checkpoint = read_checkpoint(source)
    name, weights = checkpoint.sampling_weights()
    path = _resolve(source)
    progress = checkpoint.progress
    if progress is None and checkpoint.source is not None:  # shipped already: where it came from stays
        origin = checkpoint.source
    else:
        origin = Source(path.resolve().parent.name, path.name, progress.epoch if progress else None,
                        sum(float(record["seconds"]) for record in (progress.history if progress else [])))
    # a calibration is the publisher's to give (experiments.publish --calibration), never carried over unseen
    return Checkpoint(checkpoint.config, {name: weights}, checkpoint.image_size, checkpoint.grid, source=origin,
                      base=checkpoint.base)
