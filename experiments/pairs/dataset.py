"""PairedImageDataset: (widefield input, SIM target) pairs of the BioSR layout, as [-1, 1] tensors."""

import hashlib
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ddpm.settings import UsageError
from experiments.pairs.augment import dihedral_batch, dihedral_choices
from experiments.pairs.cache import CACHE_DIRNAME, ensure_cache
from experiments.image_io.images import REDUCTIONS, Reduce, read_image, tif_shape
from experiments.data.layout import DatasetError, PairedFiles, Split, pair_files, resolve_root, split_dirs
from experiments.data.normalization import NORMALIZATIONS, Normalization
from experiments.data.task import ENLARGEMENT, Task, data_grid, enlarge, task_enlargement, read_grid

Index = int | Sequence[int] | np.ndarray | torch.Tensor


def check_shapes(files: PairedFiles, reduce: Reduce, enlargement: int = 1) -> tuple[tuple[int, int], tuple[int, int]]:
    """The common [H, W] of the inputs and of the targets, read from TIF headers; each target is ``enlargement``
    times its input along each axis (:mod:`experiments.data.task`). An error names the first mismatching file."""
    expected = None
    for name, wf_path, gt_path in zip(files.names, files.wf_paths, files.gt_paths):
        wf_shape, gt_shape = tif_shape(wf_path, reduce), tif_shape(gt_path, reduce)
        if gt_shape != tuple(enlargement * side for side in wf_shape):
            ratio = gt_shape[0] / max(wf_shape[0], 1)
            tasks = [task for task, factor in ENLARGEMENT.items() if factor == ratio]
            raise DatasetError(
                f"shape mismatch for {name}: input {wf_shape} in {files.wf_dir}, target {gt_shape} in {files.gt_dir}; "
                f"targets must be {enlargement}x their inputs' side, these are {ratio:g}x"
                + (f" (a data set for --data.task {tasks[0]})" if tasks else "")
            )
        if expected is None:
            expected = (wf_shape, gt_shape)
        elif wf_shape != expected[0]:
            raise DatasetError(
                f"{name} in {files.wf_dir} and {files.gt_dir} has shape {wf_shape}, but {files.names[0]} has "
                f"{expected[0]}; every image of a data set must have the same size"
            )
    return expected


def _cache_tag(folder: Path, root: Path) -> str:
    """A readable cache name for ``folder`` (e.g. ``test_wf_level_09``) plus a hash of its absolute
    path, so that data sets sharing one cache folder never collide."""
    readable = "_".join(folder.relative_to(root).parts)
    return f"{readable}-{hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]}"


class PairedImageDataset(Dataset):
    """Pairs (wf, gt) of one split: wf is the widefield input (the condition), gt the SIM target.

    Each item is a tuple of float32 tensors [1, H, W] in [-1, 1] (tutorial normalisation; percentile
    normalisation may exceed it); for ``enlargement`` 2 (the native task) the inputs on disk are half the
    targets' side and are enlarged onto the targets' grid on read (:func:`experiments.data.task.enlarge`).
    Indexing with a list of indices returns the batch ([B, 1, H, W], [B, 1, H, W]) in one read;
    :func:`make_loader` uses that.

    Args:
        root: folder holding training_wf/ etc., or the clone root holding BioSR/Microtubules/.
        split: "train", "validate" or "test".
        level: test noise level folder, "level_01" (noisiest) to "level_09"; used by split="test" only.
        normalization: "tutorial" (dtype scaling to [0, 1], then (v - 0.5) / 0.5) or "percentile".
        percentiles: (low, high) percentiles mapped to 0 and 1 per image by "percentile".
        reduce: how to collapse a 3-D stack or RGB image to 2-D: None (an error), "first", "mean", "max".
        augment: apply one of the 8 dihedral transforms, the same to wf and gt, chosen per (seed, epoch,
            index); call :meth:`set_epoch` each epoch for fresh choices. Needs square images.
        cache: True for a cache in <root>/.cache, a folder path for a cache there, False to read TIFs
            on every access (slow, for checks and one-off use).
        seed: seed of the augmentation choices.
        enlargement: the targets' side over the inputs' (:data:`experiments.data.task.ENLARGEMENT` of the task);
            None: the task the data set states (its ``dataset.json``), else the tutorial's (1).

    Raises:
        DatasetError: missing or empty folder, unpaired file names, shape mismatch. Its subclass
            :class:`~experiments.image_io.images.InputError`, naming the file: a file that cannot be read
            (truncated, empty, not a TIF, unsupported pixel type), NaN / inf values or values that overflow
            when scaled, float values far outside [0, 1] under the tutorial scaling, stack or colour images
            without ``reduce`` (with cache=False the value checks happen on read). Hidden files (``._x.tif``)
            are not listed.
    """

    def __init__(
        self,
        root: str | Path,
        split: Split,
        level: str = "level_09",
        normalization: Normalization = "tutorial",
        percentiles: tuple[float, float] = (1.0, 99.8),
        reduce: Reduce = None,
        augment: bool = False,
        cache: bool | str | Path = True,
        seed: int = 0,
        enlargement: int | None = None,
    ):
        if normalization not in NORMALIZATIONS:
            raise UsageError(f"unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}")
        if reduce not in REDUCTIONS:
            raise UsageError(f"unknown reduce {reduce!r}; choose one of {REDUCTIONS}")
        self.root = resolve_root(root)
        if enlargement is None:
            grid = read_grid(self.root)
            enlargement = 1 if grid is None else grid.enlargement
        self.split, self.level = split, level
        self.files = pair_files(*split_dirs(self.root, split, level))
        self.augment, self.seed, self.epoch, self.enlargement = augment, seed, 0, enlargement
        self._arrays = None  # memory maps, opened lazily so that each DataLoader worker opens its own
        self._read = partial(
            read_image, normalization=normalization, percentiles=tuple(percentiles), reduce=reduce
        )
        settings = {"normalization": normalization, "reduce": reduce}
        if normalization == "percentile":
            settings["percentiles"] = list(percentiles)

        # image_shape: the targets' [H, W], which the network sees.
        if cache is False:
            self.cache_paths = None
            self.image_shape = check_shapes(self.files, reduce, enlargement)[1]
        else:
            cache_dir = self.root / CACHE_DIRNAME if cache is True else Path(cache)
            self.cache_paths = tuple(
                ensure_cache(cache_dir, _cache_tag(folder, self.root), paths, settings,
                             lambda side=side: check_shapes(self.files, reduce, enlargement)[side], self._read)
                for side, (folder, paths) in enumerate(((self.files.wf_dir, self.files.wf_paths),
                                                        (self.files.gt_dir, self.files.gt_paths)))
            )
            wf_shape, self.image_shape = (tuple(array.shape[1:]) for array in self._cached())
            if self.image_shape != tuple(enlargement * side for side in wf_shape):
                check_shapes(self.files, reduce, enlargement)  # raises, naming the first mismatching file
        if augment and self.image_shape[0] != self.image_shape[1]:
            raise DatasetError(
                f"augment=True needs square images (rotations), but {self.files.wf_dir} holds "
                f"{self.image_shape}; pass augment=False"
            )

    def _cached(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = tuple(np.load(path, mmap_mode="r") for path in self.cache_paths)
        return self._arrays

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = None  # a worker reopens the maps instead of receiving pickled copies
        return state

    def __len__(self) -> int:
        return len(self.files.names)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation choices of ``epoch``. Call it before iterating a DataLoader; with
        ``persistent_workers=True`` the workers keep their own copy and do not see the change."""
        self.epoch = epoch

    def _read_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """wf, gt as [B, H, W] tensors (copies) for the given indices."""
        if self.cache_paths is None:
            wf = np.stack([self._read(self.files.wf_paths[i]) for i in indices])
            gt = np.stack([self._read(self.files.gt_paths[i]) for i in indices])
            return torch.from_numpy(wf), torch.from_numpy(gt)
        # One copy per side: fancy indexing gathers from the memory map (page cache) into a new array
        # that the tensor then shares.
        wf, gt = (torch.from_numpy(array[indices]) for array in self._cached())
        return wf, gt

    def get_batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs at ``indices`` as (wf, gt), each a float32 tensor [B, 1, H, W]."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"index out of range for a data set of {len(self)} pairs")
        indices = indices % len(self)
        wf, gt = self._read_batch(indices)
        if self.augment:
            choices = dihedral_choices(indices, self.seed, self.epoch)
            wf, gt = dihedral_batch(wf, choices), dihedral_batch(gt, choices)
        return enlarge(wf.unsqueeze(1), self.enlargement), gt.unsqueeze(1)

    def __getitem__(self, index: Index) -> tuple[torch.Tensor, torch.Tensor]:
        """One pair ([1, H, W], [1, H, W]) for an integer, a batch ([B, 1, H, W], ...) for a sequence."""
        if isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.ndim == 0):
            wf, gt = self.get_batch([int(index)])
            return wf[0], gt[0]
        return self.get_batch(index)

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batched read for a plain ``DataLoader(dataset, batch_size=...)``: one read, then per-pair views."""
        wf, gt = self.get_batch(indices)
        return list(zip(wf, gt))


def make_loader(
    dataset: PairedImageDataset,
    batch_size: int = 64,
    shuffle: bool = True,
    drop_last: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    **loader_options,
) -> DataLoader:
    """A DataLoader yielding (wf, gt) batches [B, 1, H, W] read in one slice each (the fast path).

    A BatchSampler hands whole index lists to the dataset, so no per-pair collation copies are made.
    Shuffling draws from a torch.Generator seeded with ``seed`` (the order then follows the epoch count).
    """
    generator = torch.Generator().manual_seed(seed)
    order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        sampler=BatchSampler(order, batch_size, drop_last),
        batch_size=None,  # each "item" the sampler yields is already a batch
        num_workers=num_workers,
        **loader_options,
    )


class DataSource(Protocol):
    """Where a run's pairs are and how it reads them: what :func:`read_pairs` needs of a run's data section
    (``experiments.config.schema.DataConfig``)."""

    root: str
    task: Task
    normalization: Normalization


def read_pairs(data: DataSource, split: Split, level: str = "level_09", root: str | Path | None = None,
               **options) -> PairedImageDataset:
    """``split`` of ``root`` (default: ``data.root``) read as the run of ``data`` reads its pairs: its
    normalisation and task. A data set that states another task is refused, naming the flag to change."""
    root = data.root if root is None else root
    data_grid(root, data.task)
    return PairedImageDataset(root, split, level=level, normalization=data.normalization,
                              enlargement=task_enlargement(data.task), **options)
