"""Read one TIF as a 2-D float32 image in the model range [-1, 1], strictly.

Also used by prediction on users' own TIFs, so every check names the file and says what to do.
"""

from pathlib import Path
from typing import Literal, get_args

import numpy as np
import tifffile

from experiments.data.layout import DatasetError
from experiments.normalization import Normalization, normalize, to_unit_range

Reduce = Literal[None, "first", "mean", "max"]
REDUCTIONS: tuple = get_args(Reduce)
COLOUR_CHANNELS = (3, 4)  # tifffile returns RGB(A) as [H, W, 3 or 4]


def _reduced_axes(shape: tuple[int, ...], reduce: Reduce, source: Path | str) -> tuple[int, ...]:
    """Axes to collapse so that ``shape`` becomes [H, W]; an error if that needs ``reduce`` and it is None.

    Singleton axes go silently. A trailing axis of 3 or 4 on a 3-D or larger array is taken as colour
    channels (RGB / RGBA); every other axis before the last two is a stack (z, time, ...).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}; choose one of {REDUCTIONS}")
    if len(shape) < 2:
        raise DatasetError(f"{source}: shape {shape} is not an image (needs at least 2 axes)")
    coloured = len(shape) >= 3 and shape[-1] in COLOUR_CHANNELS
    image_axes = (len(shape) - 3, len(shape) - 2) if coloured else (len(shape) - 2, len(shape) - 1)
    axes = tuple(a for a in range(len(shape)) if a not in image_axes)
    if reduce is None and any(shape[a] > 1 for a in axes):
        kind = "an RGB(A) image" if coloured else "a stack of images"
        raise DatasetError(
            f"{source}: shape {shape} looks like {kind}, not a single 2-D image; "
            f"pass reduce='first', 'mean' or 'max' to collapse it"
        )
    return axes


def reduced_shape(shape: tuple[int, ...], reduce: Reduce, source: Path | str) -> tuple[int, int]:
    """The [H, W] shape an image of ``shape`` has after :func:`reduce_to_2d`."""
    axes = _reduced_axes(shape, reduce, source)
    height, width = (n for a, n in enumerate(shape) if a not in axes)
    return height, width


def reduce_to_2d(array: np.ndarray, reduce: Reduce, source: Path | str) -> np.ndarray:
    """Collapse stack / colour axes of ``array`` by ``reduce`` ("first", "mean" or "max") to [H, W]."""
    axes = _reduced_axes(array.shape, reduce, source)
    if not axes:
        return array
    if reduce is None or reduce == "first":  # None only reaches here for singleton axes
        return array[tuple(0 if a in axes else slice(None) for a in range(array.ndim))]
    if reduce == "mean":
        return array.mean(axis=axes, dtype=np.float64).astype(np.float32)
    return array.max(axis=axes)


def tif_shape(path: Path, reduce: Reduce = None) -> tuple[int, int]:
    """[H, W] of the TIF at ``path`` after reduction, read from its header only (fast)."""
    with tifffile.TiffFile(path) as tif:
        shape = tuple(tif.series[0].shape)
    return reduced_shape(shape, reduce, path)


def read_image(
    path: Path | str,
    normalization: Normalization = "tutorial",
    percentiles: tuple[float, float] = (1.0, 99.8),
    reduce: Reduce = None,
) -> np.ndarray:
    """The TIF at ``path`` as float32 [H, W] in the model range (see :mod:`experiments.normalization`).

    Raises :class:`DatasetError` naming the file for NaN / inf values, or for a stack / RGB image when
    ``reduce`` is None.
    """
    array = tifffile.imread(path)
    # Check before reducing and normalising: a NaN would otherwise spread or vanish (max, percentile).
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise DatasetError(f"{path}: {bad} NaN or infinite pixel values; fix or remove this file")
    # Scale by dtype before reducing: the mean of a uint8 stack is a float and would lose its 1/255.
    return normalize(reduce_to_2d(to_unit_range(array), reduce, path), normalization, percentiles)
