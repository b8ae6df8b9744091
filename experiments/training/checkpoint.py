"""Checkpoints that survive a crash: written atomically, loadable with ``weights_only=True``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from ddpm.settings import UserError
from experiments.integrity import atomic_path, count_non_finite, temporaries_of

LAST = "last.pt"
BEST = "best.pt"
# [H, W] of the training images; checkpoints written before it was recorded lack it.
IMAGE_SIZE_KEY = "image_size"
# The training data's task and input pixel (experiments.data.task.DataGrid.to_json); checkpoints written
# before it was recorded lack it (then: the tutorial task on BioSR's camera pixel).
GRID_KEY = "grid"
# The weight sets a checkpoint may hold, preferred first: the averaged weights usually sample better
# than the last optimiser step.
WEIGHT_KEYS = ("ema", "model")
# Where an inference-only checkpoint came from: run, checkpoint, epoch, training seconds.
SOURCE_KEY = "source"


class CheckpointError(UserError):
    """A file is not a checkpoint this project can read; the message names it."""


class NonFiniteCheckpoint(UserError):
    """A checkpoint would hold NaN or inf weights; it is not written, so every checkpoint on disk is usable."""


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
    """``torch.save`` to ``path`` through :func:`experiments.integrity.atomic_path` (flushed to disk).

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
    with atomic_path(path, durable=True) as temporary:
        torch.save(payload, temporary)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by this project (tensors and plain Python values only)."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; pass a run folder holding {LAST} or a .pt file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for a corrupt or foreign file
        # torch's own text runs over many lines and, for a foreign file, advises weights_only=False, which would
        # run whatever code the file holds: its first line is the reason; the advice is ours.
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise CheckpointError(f"{path} is not a readable checkpoint of this project ({reason}); pass a .pt file "
                              "written by experiments.train, or a run folder") from error


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


def inference_only(source: str | Path) -> dict[str, Any]:
    """The payload of ``source`` that prediction and export read, for shipping: the weights it samples with
    (:data:`WEIGHT_KEYS`), the configuration, the training image size, the data grid, and where it came
    from (:data:`SOURCE_KEY`); the optimizer's state, the random states and the history are dropped (the
    demo's network: 4 MB -> 1 MB)."""
    payload = load_checkpoint(source)
    weights = next((key for key in WEIGHT_KEYS if key in payload), None)
    if weights is None or "config" not in payload:
        raise CheckpointError(f"{source}: not a training checkpoint of this project (it needs weights and a config)")
    path = Path(source)
    path = path / LAST if path.is_dir() else path
    return {
        weights: payload[weights],
        "config": payload["config"],
        **{key: payload[key] for key in (IMAGE_SIZE_KEY, GRID_KEY) if key in payload},
        SOURCE_KEY: {"run": path.resolve().parent.name, "checkpoint": path.name, "epoch": payload.get("epoch"),
                     "training_seconds": sum(float(record["seconds"]) for record in payload.get("history", []))},
    }
