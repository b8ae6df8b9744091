"""Where the images of each split live in the BioSR layout, and how they pair up.

    <root>/training_wf/*.tif   training_gt/*.tif        split "train"
    <root>/validate_wf/*.tif   validate_gt/*.tif        split "validate"
    <root>/test_wf/level_01 .. level_09/*.tif  test_gt/*.tif   split "test" (one level at a time)

``<root>`` is the folder holding these sub-folders (for the real data ``biosr_dataset/BioSR/Microtubules``);
the clone root ``biosr_dataset`` is accepted too. An input (``wf``, the condition) and its target
(``gt``) share a file name.
"""

import re
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

from ddpm.settings import UserError

Split = Literal["train", "validate", "test"]
SPLITS: tuple[str, ...] = get_args(Split)

TIF_SUFFIXES = (".tif", ".tiff")
CLONE_SUBPATH = Path("BioSR") / "Microtubules"
_SPLIT_PREFIX = {"train": "training", "validate": "validate", "test": "test"}
_LEVEL_PATTERN = re.compile(r"level_\d+")
_SHOWN = 5  # how many file names an error message lists


class DatasetError(UserError):
    """The files on disk do not form a valid paired data set; the message names folder and files."""


@dataclass(frozen=True)
class PairedFiles:
    """Matching input / target files of one split, sorted by name."""

    wf_dir: Path
    gt_dir: Path
    names: tuple[str, ...]
    wf_paths: tuple[Path, ...]
    gt_paths: tuple[Path, ...]


def _shortlist(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _SHOWN else "")


def _is_layout_root(folder: Path) -> bool:
    return any((folder / sub).is_dir() for sub in ("training_wf", "validate_wf", "test_wf"))


def resolve_root(root: str | Path) -> Path:
    """The folder holding ``training_wf`` etc.: ``root`` itself, or ``root/BioSR/Microtubules`` for a clone."""
    root = Path(root)
    if _is_layout_root(root):
        return root
    if _is_layout_root(root / CLONE_SUBPATH):
        return root / CLONE_SUBPATH
    raise DatasetError(
        f"{root} is not a BioSR-style data set: expected training_wf/, validate_wf/ or test_wf/ in it "
        f"(or in {root / CLONE_SUBPATH}). Run `make data` for the real data, `make real-data` for the "
        "real-structure set or `make synthetic-data` for the synthetic look-alike."
    )


def list_test_levels(root: str | Path) -> list[str]:
    """Names of the test noise levels present (``level_01`` ... ``level_09``), sorted."""
    test_wf = resolve_root(root) / "test_wf"
    if not test_wf.is_dir():
        raise DatasetError(f"missing folder {test_wf}: this data set has no test split")
    return sorted(p.name for p in test_wf.iterdir() if p.is_dir() and _LEVEL_PATTERN.fullmatch(p.name))


def check_level_name(level: str) -> None:
    """Refuse a test level name that is not ``level_01`` .. ``level_09``-like (:class:`DatasetError`)."""
    if not isinstance(level, str) or not _LEVEL_PATTERN.fullmatch(level):
        raise DatasetError(f"a test level is named like 'level_09', got {level!r}")


def check_levels(root: str | Path, levels: Sequence[str]) -> None:
    """Refuse, before any work, test ``levels`` that ``root`` does not hold, naming them and those it holds."""
    present = list_test_levels(root)
    missing = [level for level in levels if level not in present]
    if missing:
        raise DatasetError(
            f"{resolve_root(root)} has no test level {', '.join(missing)}; it holds {', '.join(present) or 'none'}"
        )


def split_dirs(root: Path, split: Split, level: str = "level_09") -> tuple[Path, Path]:
    """(input folder, target folder) of ``split`` under a resolved ``root``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    prefix = _SPLIT_PREFIX[split]
    if split == "test":
        check_level_name(level)
        return root / "test_wf" / level, root / "test_gt"
    return root / f"{prefix}_wf", root / f"{prefix}_gt"


def list_tifs(folder: Path) -> list[Path]:
    """The .tif / .tiff files (any case) directly in ``folder``, sorted by name, hidden ones skipped.

    Every folder listing of images (data set splits, prediction inputs) goes through here. Hidden files
    (``.name``) are metadata, not images: macOS writes a ``._x.tif`` resource fork beside every file it
    copies to a foreign disk.
    """
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in TIF_SUFFIXES
                  and not p.name.startswith("."))


def tif_names(folder: Path) -> list[str]:
    """Sorted names of the TIF files in ``folder`` (:func:`list_tifs`); other and hidden files are ignored."""
    if not folder.is_dir():
        raise DatasetError(f"missing folder {folder}")
    names = [p.name for p in list_tifs(folder)]
    if not names:
        raise DatasetError(f"no .tif / .tiff files in {folder}")
    return names


def pair_files(wf_dir: Path, gt_dir: Path) -> PairedFiles:
    """Pair inputs and targets by file name; a name on one side only is an error naming both folders."""
    wf_names, gt_names = tif_names(wf_dir), tif_names(gt_dir)
    only_wf = sorted(set(wf_names) - set(gt_names))
    only_gt = sorted(set(gt_names) - set(wf_names))
    if only_wf or only_gt:
        problems = []
        if only_wf:
            problems.append(f"in {wf_dir} but not in {gt_dir}: {_shortlist(only_wf)}")
        if only_gt:
            problems.append(f"in {gt_dir} but not in {wf_dir}: {_shortlist(only_gt)}")
        raise DatasetError(
            "inputs and targets must pair up by file name; " + "; ".join(problems)
            + ". Remove or restore the unmatched files."
        )
    return PairedFiles(
        wf_dir, gt_dir, tuple(wf_names), tuple(wf_dir / n for n in wf_names), tuple(gt_dir / n for n in wf_names)
    )
