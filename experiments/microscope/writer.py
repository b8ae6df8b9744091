"""Writing a generated data set in the BioSR layout: names, per-image seeds, folders.

Shared by the procedural look-alike and the real-structure set (``experiments.microscope.synthetic``).
"""

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from ddpm.settings import SEEDS, bounded, check_ranges, within
from experiments.data.task import GRID_FILE
from experiments.microscope.widefield import LEVELS

TEST_LEVELS = tuple(f"level_{i:02d}" for i in range(1, LEVELS + 1))
SPLIT_IDS = {"train": 0, "validate": 1, "test": 2}
SPLIT_PREFIX = {"train": "training", "validate": "validate"}
LAYOUT_DIRS = ("training_wf", "training_gt", "validate_wf", "validate_gt", "test_wf", "test_gt")


@dataclass(frozen=True)
class DataSetSize:
    """How many pairs a generated data set holds (each test field at all nine levels) and its seed; the
    command's flags (``--train``, ...) take these ranges, and every generator checks them before writing."""

    train: int = bounded(4096, 1)
    validate: int = bounded(256, 0)  # 0: no validation split (training then writes no best.pt)
    test_per_level: int = bounded(150, 1)
    seed: int = within(0, SEEDS)

    def __post_init__(self) -> None:
        check_ranges(self, "")


def image_rng(seed: int, split: str, index: int, *more: int) -> np.random.Generator:
    """Generator of one image: a child seed of ``(seed, split, index, *more)`` (order-independent)."""
    return np.random.default_rng([seed, SPLIT_IDS[split], index, *more])


def file_name(split: str, index: int) -> str:
    """BioSR's names: 1-based, 8 digits for training / validation (``00000001.tif``), 3 for test (``001.tif``)."""
    return f"{index + 1:0{3 if split == 'test' else 8}d}.tif"


def write_images(folder: Path, split: str, start: int, images: np.ndarray, pool: ThreadPoolExecutor) -> None:
    """Write images [N, H, W] as float32 TIFs named for indices ``start ..`` of ``split``."""
    folder.mkdir(parents=True, exist_ok=True)
    list(pool.map(lambda item: tifffile.imwrite(folder / file_name(split, start + item[0]), item[1]),
                  enumerate(images.astype(np.float32))))


def clear_output(out: Path, overwrite: bool, extra: tuple[str, ...] = ()) -> None:
    """Make room for a new data set in ``out``: refuse to replace one unless ``overwrite``."""
    existing = [out / d for d in (*LAYOUT_DIRS, ".cache", GRID_FILE, *extra) if (out / d).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds {existing[0].name}; pass --overwrite to replace the data set")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
