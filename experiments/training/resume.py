"""Resuming a run: the configuration of its ``last.pt`` reconciled with the ``config.json`` of its folder.

The checkpoint is the truth for what its state was made with (:data:`FIXED`: the network, the diffusion,
the training data and its order, the loss, EMA on or off); an edit of config.json that changes one of
these is refused. Any other edit (learning rate, epochs, evaluation, device, ...) takes effect and is
announced, and what config.json lacks (a field, a section, the whole file) is taken from the checkpoint.
config.json is then rewritten with the complete result, so the run folder says what the run continues with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ddpm.settings import UsageError
from experiments.config.schema import ConfigFileError, RunConfig
from experiments.integrity.json_files import write_json
from experiments.checkpoint import LAST, Checkpoint, read_checkpoint
from experiments.training.run_folder import CONFIG_FILE


@dataclass(frozen=True)
class Fixed:
    """A setting the checkpoint's state was made with: ``compared`` of its value must stay the checkpoint's."""

    name: str  # a field (``train.seed``) or a whole section (``network``, its kind included)
    reason: str  # what in the checkpoint depends on it, for the refusal
    compared: Callable[[Any], Any] = lambda value: value


FIXED = (
    Fixed("network", "the weights are this network's"),
    Fixed("diffusion", "the network learned this noise schedule"),
    Fixed("data.task", "the network learned to map inputs of this grid onto targets of that grid"),
    Fixed("data.normalization", "the network learned images scaled this way"),
    Fixed("data.augment", "the run continues on the checkpoint's training images"),
    Fixed("data.max_train_pairs", "the epochs' batch order is drawn over this many pairs"),
    Fixed("data.crop", "the run continues on the checkpoint's training windows"),
    Fixed("train.batch_size", "the position within the epoch counts batches of this size"),
    Fixed("train.loss", "the run optimises one objective"),
    Fixed("train.objective", "the network learned to predict noise or the image"),
    Fixed("train.base", "the run refines this regression, whose weights its checkpoint holds"),
    Fixed("train.loss_weighting", "the run optimises one objective"),
    Fixed("train.min_snr_gamma", "the run optimises one objective"),
    Fixed("train.conditional", "the network's input holds the condition or not"),
    Fixed("train.seed", "the data order and the random draws continue from it"),
    Fixed(
        "train.ema_decay",
        "the checkpoint holds EMA weights or none, so EMA cannot be switched on or off; a new decay value takes effect",
        compared=lambda decay: decay is None,
    ),
    Fixed("eval.best_metric", "the best score, and so best.pt, was chosen by it"),
)
# Not fixed, as they change how the state is computed, not what it is: train.precision (autocast only:
# the weights and the optimizer's state stay fp32), train.tf32, train.channels_last and train.compile
# (the checkpoint holds the plain module's state_dict), train.device and data.num_workers. A run resumed
# with another of these continues correctly, though not bitwise as it would have (a move between CPU and
# CUDA fails: their random generators' states differ in kind). data.root is where the training images
# lie, which may move.


@dataclass(frozen=True)
class Resumption:
    """What a resumed run continues from: ``last.pt`` (on the CPU) and the reconciled configuration."""

    run_dir: Path
    checkpoint: Checkpoint
    config: RunConfig
    notes: tuple[str, ...]  # one line per field config.json changes or lacks

    def record(self) -> None:
        """Print the notes and rewrite config.json with the complete configuration (on the main rank only)."""
        for note in self.notes:
            print(note)
        write_json(self.run_dir / CONFIG_FILE, self.config.to_dict())


def reconcile(run_dir: str | Path) -> Resumption:
    """Load ``run_dir/last.pt`` and reconcile its configuration with ``run_dir/config.json``.

    Raises:
        UsageError: when there is no ``last.pt``, when config.json changes a :data:`FIXED` setting, or
            asks for fewer epochs than the checkpoint has completed.
        ConfigFileError: when config.json is not JSON or holds invalid values.
    """
    run_dir = Path(run_dir)
    if not (run_dir / LAST).is_file():
        raise UsageError(
            f"cannot resume {run_dir}: it holds no {LAST} (a run writes it after its first epoch, or when "
            "stopped); pass the folder of such a run, or start a new run without --resume"
        )
    # On the CPU: the configuration decides the device; load_state_dict copies the tensors there.
    checkpoint = read_checkpoint(run_dir / LAST)
    if checkpoint.progress is None:
        raise UsageError(f"cannot resume {run_dir}: its {LAST} holds weights but no training state (an inference-only "
                         "or exported checkpoint); resume the run it came from, or start a new run")
    path = run_dir / CONFIG_FILE
    saved = checkpoint.config
    raw = _read(path)
    if raw is None:
        merged, notes = saved, [f"resume: {path} is missing; {LAST}'s configuration is used"]
    else:
        merged, missing = _merge(saved, raw)
        notes = [f"resume: {name} taken from {LAST} ({CONFIG_FILE} lacks it)" for name in missing]
    try:
        config = RunConfig.from_dict(merged)
    except (ValueError, TypeError) as error:
        raise _invalid(path, error) from error
    before, after = _fields(RunConfig.from_dict(saved)), _fields(config)
    changed = {name: (value, after[name]) for name, value in before.items() if name in after and after[name] != value}
    refused = [
        f"{name} is {_text(new)} there but {_text(old)} in {LAST} ({fixed.reason})"
        for name, (old, new) in changed.items()
        if (fixed := _fixed(name)) is not None and fixed.compared(old) != fixed.compared(new)
    ]
    if refused:
        raise UsageError(
            f"cannot resume {run_dir} with its {CONFIG_FILE}: {'; '.join(refused)}. Restore {LAST}'s value "
            f"in {path} to continue this run, or start a new run with the new setting"
        )
    done = checkpoint.progress.epoch
    if config.train.epochs < done:
        raise UsageError(
            f"cannot resume {run_dir}: train.epochs is {config.train.epochs} in {path}, but {LAST} has "
            f"completed {done} epochs; set it to {done} or more"
        )
    notes += [f"resume: {name} {_text(old)} -> {_text(new)} ({CONFIG_FILE})" for name, (old, new) in changed.items()]
    return Resumption(run_dir, checkpoint, config, tuple(notes))


def _read(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is no such file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigFileError(f"{path}: cannot be read ({error.strerror or error}); check its permissions") from error
    try:
        data = json.loads(text)
    except ValueError as error:
        raise _invalid(path, error) from error
    if not isinstance(data, dict):
        raise _invalid(path, f"a JSON {type(data).__name__}, not an object of config sections")
    return data


def _invalid(path: Path, why: Any) -> ConfigFileError:
    return ConfigFileError(
        f"{path} is not a valid run configuration ({why}); repair it, delete it to resume with {LAST}'s "
        "configuration, or start a new run"
    )


def _merge(saved: dict[str, Any], raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``raw`` laid onto ``saved`` section by section, and the dotted names of what ``raw`` lacks.

    A section naming another kind (a network) replaces the checkpoint's, whose fields are another kind's.
    """
    merged, missing = dict(saved), [name for name in saved if name not in raw]
    for name, values in raw.items():
        base = saved.get(name)
        if isinstance(base, dict) and isinstance(values, dict) and values.get("kind", base.get("kind")) == base.get("kind"):
            missing += [f"{name}.{key}" for key in base if key not in values]
            merged[name] = {**base, **values}
        else:
            merged[name] = values
    return merged, missing


def _fields(config: RunConfig) -> dict[str, Any]:
    """Every field of ``config`` by dotted name (``train.lr``, ``network.kind``)."""
    flat = {}
    for name, value in config.to_dict().items():
        if isinstance(value, dict):
            flat.update({f"{name}.{key}": item for key, item in value.items()})
        else:
            flat[name] = value
    return flat


def _fixed(name: str) -> Fixed | None:
    return next((fixed for fixed in FIXED if name == fixed.name or name.startswith(f"{fixed.name}.")), None)


def _text(value: Any) -> str:
    """A value as config.json writes it (``null``, ``[4, 8]``, ``0.0001``)."""
    return json.dumps(value)
