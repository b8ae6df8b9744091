"""The two super-resolution tasks a run can learn, and how an input reaches the output's grid.

* ``tutorial``: the tutorial's (and ``reproduce-*``'s) task. Input and target both lie on the camera's
  grid (62.6 nm for BioSR): the input was downscaled 2x and bicubic-upsampled back, the target is the
  SIM image downscaled 2x. The output cannot hold the SIM's 31.3 nm detail.
* ``native``: BioSR's own task (Qiao et al. 2021). The input is the widefield image on the camera's
  grid, the target the SIM image on its own grid, twice as fine. The network conditions on the input
  enlarged 2x by bicubic interpolation onto the output's grid (as SR3 conditions, Saharia et al. 2021),
  so the network and the samplers are those of the tutorial task; data sets and users' files hold the
  camera image itself, and :func:`enlarge` is the one place it is enlarged.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, get_args

import torch
import torch.nn.functional as F

from experiments.data.layout import DatasetError, resolve_root
from experiments.integrity.json_files import write_json

Task = Literal["tutorial", "native"]
TASKS: tuple[str, ...] = get_args(Task)

# Output pixels per input pixel along each axis.
ENLARGEMENT: dict[str, int] = {"tutorial": 1, "native": 2}


def task_enlargement(task: Task) -> int:
    """How many times finer the output's grid is than the input's, along each axis."""
    return ENLARGEMENT[task]


def enlarge(images: torch.Tensor, factor: int, clip: Optional[str] = None) -> torch.Tensor:
    """Bicubic enlargement of [B, C, h, w] to [B, C, factor h, factor w] (``factor`` 1: ``images`` itself): the one
    enlarger of the project. Bicubic interpolation overshoots at bright edges; ``clip`` says what to do:

    * None (a native-task model's condition): nothing. The map stays linear, so it commutes with the linear
      normalisations of the data and gives the same condition whichever is applied first; it also commutes
      with the 8 dihedral transforms.
    * ``"frame"`` (a user's image under ``predict --upsample``): each image clipped to its own [min, max],
      so the enlargement adds no value the image never held.
    * ``"unit"`` (simulated widefield inputs, as BioSR's were made): clipped to [0, 1], the data's range.
    """
    if factor == 1:
        return images
    # A float factor, so that TorchScript compiles this function inside the exported sampler.
    enlarged = F.interpolate(images, scale_factor=float(factor), mode="bicubic", align_corners=False)
    if clip is None:
        return enlarged
    if clip == "frame":
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        high = images.amax(dim=(1, 2, 3), keepdim=True)
        return torch.maximum(torch.minimum(enlarged, high), low)
    if clip == "unit":
        return enlarged.clamp(0, 1)
    raise ValueError("enlarge: clip must be None, 'frame' or 'unit'")


# A generated data set states its task and its input grid here, so that training can check the task and
# record the pixel size a model expects (BioSR's own downloads state nothing: BIOSR_CAMERA_PIXEL_UM).
GRID_FILE = "dataset.json"
BIOSR_CAMERA_PIXEL_UM = 0.0626
# An input pixel more than this factor off the training inputs' gets a warning (predict, the napari widget)
# and a fine-tuning data set is refused (experiments.training.initial_weights).
PIXEL_SIZE_TOLERANCE = 1.25


@dataclass(frozen=True)
class DataGrid:
    """A data set's task and the physical pixel of its inputs (um); the targets' is ``enlargement`` times finer."""

    task: Task
    input_pixel_um: float

    @property
    def enlargement(self) -> int:
        return task_enlargement(self.task)

    @property
    def output_pixel_um(self) -> float:
        return self.input_pixel_um / self.enlargement

    def suits_pixel_size(self, size_um: float) -> bool:
        """Whether an input pixel of ``size_um`` is within :data:`PIXEL_SIZE_TOLERANCE` of this grid's."""
        return 1 / PIXEL_SIZE_TOLERANCE <= size_um / self.input_pixel_um <= PIXEL_SIZE_TOLERANCE

    def to_json(self) -> dict:
        return {"task": self.task, "input_pixel_um": self.input_pixel_um, "output_pixel_um": self.output_pixel_um}

    @classmethod
    def from_json(cls, data: dict) -> "DataGrid":
        return cls(data["task"], float(data["input_pixel_um"]))


def write_grid(root: Path, grid: DataGrid) -> None:
    write_json(Path(root) / GRID_FILE, grid.to_json())


def read_grid(root: Path) -> DataGrid | None:
    """The grid ``<root>/dataset.json`` states, None when there is none; a broken file is a DatasetError."""
    path = Path(root) / GRID_FILE
    if not path.is_file():
        return None
    try:
        grid = DataGrid.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise DatasetError(f"{path} does not state a data set's task and pixel size ({error}); "
                           "regenerate the data set, or delete the file") from None
    if grid.task not in TASKS:
        raise DatasetError(f"{path} names an unknown task {grid.task!r}; choose one of {TASKS}")
    return grid


def data_grid(root: Path, task: Task) -> DataGrid:
    """The grid of the data set at ``root`` for a run of ``task``: the one ``dataset.json`` states (a
    DatasetError when it states another task), else ``task`` on BioSR's camera pixel."""
    grid = read_grid(resolve_root(root))
    if grid is None:
        return DataGrid(task, BIOSR_CAMERA_PIXEL_UM)
    if grid.task != task:
        raise DatasetError(
            f"{resolve_root(root)} holds pairs of the {grid.task} task, but the run is set to the {task} task; "
            f"pass --data.task {grid.task}, or a data set of the {task} task"
        )
    return grid
