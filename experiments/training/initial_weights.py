"""Fine-tuning: a run that starts from the weights of another checkpoint (``train --init CHECKPOINT``), e.g. a
shipped model trained further on a user's own widefield / SIM pairs or on their microscope's PSF.

Only what the weights mean is checked against the new run: the network (kind and every size), the
objective, the diffusion schedule and the task must be the checkpoint's, and the data's input pixel within
25 % of the checkpoint's (:data:`experiments.data.task.PIXEL_SIZE_TOLERANCE`); everything else (data,
learning rate, epochs, loss) may change. The sampling weights (EMA where present) start both the trained weights
and the new run's EMA. The run's ``config.json`` records ``train.init``; a resumed run continues from its
own checkpoint, never from the initial one again.
"""

from __future__ import annotations

from torch import nn

from ddpm.settings import UsageError
from experiments.checkpoint import Checkpoint, read_checkpoint
from experiments.config.schema import RunConfig
from experiments.data.task import GRID_FILE, DataGrid, data_grid

# Sections and fields whose values give the weights their meaning.
MUST_MATCH = (("network", None), ("diffusion", None), ("train", "objective"), ("train", "conditional"),
              ("data", "task"))


def check_input_pixel(checkpoint: Checkpoint, config: RunConfig, flag: str, advice: str) -> None:
    """Refuse a checkpoint trained on input pixels more than 25 % off those of the run's data (its recorded grid
    against ``config.data.root``'s), naming it by ``flag`` and saying what to do (``advice``)."""
    if checkpoint.grid is None:
        return
    theirs, ours = DataGrid.from_json(checkpoint.grid), data_grid(config.data.root, config.data.task)
    if not theirs.suits_pixel_size(ours.input_pixel_um):
        raise UsageError(f"{flag}: it was trained on inputs of {theirs.input_pixel_um * 1000:.1f} nm pixels, "
                         f"{config.data.root} holds {ours.input_pixel_um * 1000:.1f} nm ones (its {GRID_FILE}); {advice}")


def load_initial_weights(model: nn.Module, config: RunConfig) -> str:
    """Load ``config.train.init``'s sampling weights into ``model``; returns the weight set's name.

    Raises :class:`UsageError` naming the checkpoint and the first field that differs from the new run's."""
    path = config.train.init
    checkpoint = read_checkpoint(path)
    # read as today's schema reads it: a field an older version did not write holds the default it meant
    theirs, ours = RunConfig.from_dict(checkpoint.config).to_dict(), config.to_dict()
    for section, name in MUST_MATCH:
        old = theirs[section] if name is None else theirs[section][name]
        new = ours[section] if name is None else ours[section][name]
        if old != new:
            flag = f"--{section}" if name is None else f"--{section}.{name}"
            raise UsageError(f"--train.init {path}: its {flag[2:]} is {old}, this run's is {new}; fine-tuning keeps the "
                             f"network, objective, schedule and task of the checkpoint (drop the {flag}* flags that "
                             "change them, or train from scratch)")
    check_input_pixel(checkpoint, config, f"--train.init {path}",
                      "resample your images to the model's pixel, or train from scratch")
    name, weights = checkpoint.sampling_weights()
    model.load_state_dict(weights)
    return name
