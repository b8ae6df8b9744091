"""Every read of a user's TIF: open it strictly, arrange it by tifffile's axes, scale it, check what the network sees.

    frames, info = read_frames("cells/stack.tif")             # float32 [N, H, W] in source units
    model_in = to_model_frames(frames, info, "tutorial")      # [-1, 1], each frame on its own, checked
    image = read_image("training_wf/001.tif")                 # one training image [H, W] in [-1, 1]

The data loader, its cache builder and prediction (:mod:`experiments.image_io.tif_io`) all open files through
:func:`read_tif`, so every failure (a truncated, empty or non-TIF file, an unsupported pixel type,
NaN / inf, values that overflow when scaled) is an :class:`InputError` that names the file and says
what to do.

Axes are tifffile's series axes: Y and X are the plane; S (samples per pixel: RGB(A), interleaved
``YXS`` or planar ``SYX``) and C (channels) are colours, collapsed only when ``reduce`` says how; every
other axis (T, Z, I, Q, ...) is a stack of planes: frames for prediction, collapsed by ``reduce`` into
one training image.
"""

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import tifffile

from ddpm.settings import UsageError
from experiments.data.layout import DatasetError
from experiments.data.normalization import Normalization, normalize, unit_divisor
from experiments.image_io.ome_tiff import pixel_size_um, valid_pixel_size
from experiments.integrity.finite import count_non_finite

Reduce = Literal[None, "first", "mean", "max"]
REDUCTIONS: tuple = get_args(Reduce)
SUPPORTED_DTYPES: tuple[str, ...] = ("uint8", "uint16", "float16", "float32", "float64")
PLANE_AXES = "YX"
CHANNEL_AXES = "SC"
# Float files are taken as they are under the tutorial scaling; beyond this the model never saw such values.
FLOAT_RANGE_TOLERANCE = 0.5


class InputError(DatasetError):
    """A user's file or folder cannot be used; the message names it and says what to do."""


@dataclass(frozen=True)
class StoredTif:
    """The first series of a TIF as stored; ``pixels`` is None when only the header was read."""

    path: Path
    shape: tuple[int, ...]
    axes: str  # tifffile's series axes, one letter per axis of ``shape``, e.g. "YX", "ZYX", "YXS"
    dtype: np.dtype
    description: str  # the first page's ImageDescription ("" when absent); OME-XML when is_ome
    is_ome: bool
    pixel_size_um: float | None  # from OME, ImageJ or resolution tags (experiments.image_io.ome_tiff); None if unknown
    pixel_size_note: str | None  # why a stated size was refused (experiments.image_io.ome_tiff.valid_pixel_size)
    pixels: np.ndarray | None


@dataclass(frozen=True)
class Layout:
    """How a stored array becomes planes: transposed by ``order`` to [stack..., channels..., Y, X], then
    reshaped to [frames, channels, height, width]."""

    order: tuple[int, ...]
    frames: int
    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class FrameInfo:
    """Where frames came from and how to scale them.

    ``unit_divisor`` is what the training data's scaling (:func:`experiments.data.normalization.to_unit_range`)
    divides the stored values by: the dtype maximum for integers (255, 65535), 1 for floats.
    """

    path: Path
    dtype: str  # stored dtype, e.g. "uint16"
    stored_shape: tuple[int, ...]  # as in the file, e.g. (H, W), (N, H, W), (H, W, 3)
    axes: str  # tifffile's axes of stored_shape, e.g. "YX", "QYX", "YXS"
    unit_divisor: float
    colour_reduced: Reduce  # how colour channels were collapsed, None if the file had one
    pixel_size_um: float | None  # as the file's metadata states it, None if it does not or states no valid size
    pixel_size_note: str | None = None  # why a stated size was refused
    content_note: str | None = None  # what the reader filled in (an OME-Zarr's chunks left out as fill values)


def _check_finite(array: np.ndarray, path: Path, what: str) -> None:
    bad = count_non_finite(array)
    if bad:
        raise InputError(f"{path}: {bad} NaN or infinite pixel values{what}; fix or remove this file")


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """The errors tifffile logs inside the block, kept off the terminal. tifffile reads past some damage
    and only logs it: a stack cut short reads as its first page with an "invalid page offset" line."""
    logger, recorder = logging.getLogger("tifffile"), _Recorder()
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(recorder)
    try:
        yield recorder.messages
    finally:
        logger.removeHandler(recorder)
        logger.propagate = propagate


def read_tif(path: str | Path, pixels: bool = True) -> StoredTif:
    """The first series of the TIF at ``path``: shape, axes, dtype, description and (``pixels=True``) values.

    The one place where a user's TIF is opened. Raises :class:`InputError` naming the file when it
    cannot be read (truncated, empty, not a TIF), its dtype is not one of ``SUPPORTED_DTYPES`` (e.g.
    complex or int32), it has no Y and X axes or an empty one, or (pixels read) it holds NaN / inf.
    """
    path = Path(path)
    damaged = "check that the file is complete and really a TIF (save it again), or remove it"
    try:
        with _tifffile_errors() as logged, tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, axes, dtype = tuple(series.shape), series.axes, series.dtype
            description, is_ome, size = tif.pages[0].description, tif.is_ome, pixel_size_um(tif)
            array = series.asarray() if pixels else None
    # A damaged file surfaces as any of many types (TiffFileError, ValueError, struct.error, IndexError,
    # codec errors); whichever it is, the user needs the file's name and what to do.
    except Exception as error:
        raise InputError(f"{path}: cannot be read as a TIF ({type(error).__name__}: {error}); {damaged}") from error
    if logged:
        raise InputError(f"{path}: damaged TIF (tifffile: {logged[0][:160]}); {damaged}")
    if dtype.name not in SUPPORTED_DTYPES:
        raise InputError(f"{path}: pixel type {dtype.name} is not supported; save it as one of {SUPPORTED_DTYPES}")
    if not set(PLANE_AXES) <= set(axes) or 0 in shape:
        raise InputError(
            f"{path}: shape {shape} (tifffile axes {axes!r}) is not an image (needs non-empty Y and X axes); "
            "save it as a 2-D image or a stack of them"
        )
    if array is not None:
        _check_finite(array, path, "")
    return StoredTif(path, shape, axes, dtype, description, is_ome, *valid_pixel_size(size), array)


def plane_layout(stored: StoredTif, reduce: Reduce) -> Layout:
    """The planes of ``stored`` by its axes; an error naming the file when it holds several colour
    channels (S or C axes) and ``reduce`` is None. Singleton axes of any kind are ignored."""
    if reduce not in REDUCTIONS:
        raise UsageError(f"unknown reduce {reduce!r}; choose one of {REDUCTIONS}")
    axes, shape = stored.axes, stored.shape
    stack = [i for i, axis in enumerate(axes) if axis not in PLANE_AXES + CHANNEL_AXES]
    channels = [i for i, axis in enumerate(axes) if axis in CHANNEL_AXES]
    y, x = axes.index("Y"), axes.index("X")
    layout = Layout(
        order=(*stack, *channels, y, x),
        frames=math.prod(shape[i] for i in stack),
        channels=math.prod(shape[i] for i in channels),
        height=shape[y],
        width=shape[x],
    )
    if layout.channels > 1 and reduce is None:
        raise InputError(
            f"{stored.path}: shape {shape} (tifffile axes {axes!r}) holds {layout.channels} colour channels "
            "per pixel (RGB(A) or multichannel), not one grey value; convert it to greyscale, or pass "
            "reduce='first', 'mean' or 'max' (prediction: --reduce) to collapse the channels"
        )
    return layout


def _refuse_stack(path: Path, shape: tuple[int, ...], axes: str, frames: int, reduce: Reduce) -> None:
    """A training image is one plane: a stack of several needs ``reduce``."""
    if frames > 1 and reduce is None:
        raise InputError(
            f"{path}: shape {shape} (tifffile axes {axes!r}) is a stack of {frames} images, not a single 2-D "
            "image; pass reduce='first', 'mean' or 'max' to collapse it"
        )


def collapse(array: np.ndarray, axis: int, reduce: Reduce) -> np.ndarray:
    """``array`` without ``axis``, collapsed by ``reduce`` ("mean" sums in float64; None: a singleton axis)."""
    first = array[(slice(None),) * axis + (0,)]  # a view: no copy for the common singleton axis
    if array.shape[axis] == 1 or reduce in (None, "first"):
        return first
    if reduce == "mean":
        return array.mean(axis=axis, dtype=np.float64).astype(np.float32)
    return array.max(axis=axis)


def read_frames(path: str | Path, reduce: Reduce = None) -> tuple[np.ndarray, FrameInfo]:
    """The TIF at ``path`` as float32 frames [N, H, W] in source units (a uint16 of 1000 stays 1000.0).

    A 2-D image gives N = 1; a stack (every axis but Y, X and the colour axes S, C) gives one frame per
    plane, in file order. Colour channels are an error unless ``reduce`` ("first", "mean" or "max")
    says how to collapse them. Raises :class:`InputError` naming the file for everything
    :func:`read_tif` refuses, and for values beyond float32 (+-3.4e38).
    """
    path = Path(path)
    stored = read_tif(path)
    layout = plane_layout(stored, reduce)
    planes = stored.pixels.transpose(layout.order).reshape(layout.frames, layout.channels, layout.height, layout.width)
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, reported just below
        frames = collapse(planes, 1, reduce).astype(np.float32, copy=False)
    if stored.dtype == np.float64:  # the only supported type whose finite values can overflow float32
        _check_finite(frames, path, " after conversion to float32 (values beyond +-3.4e38)")
    info = FrameInfo(
        path=path,
        dtype=stored.dtype.name,
        stored_shape=stored.shape,
        axes=stored.axes,
        unit_divisor=unit_divisor(stored.dtype),
        colour_reduced=reduce if layout.channels > 1 else None,
        pixel_size_um=stored.pixel_size_um,
        pixel_size_note=stored.pixel_size_note,
    )
    return frames, info


def to_model_frames(
    frames: np.ndarray,
    info: FrameInfo,
    normalization: Normalization = "tutorial",
    percentiles: tuple[float, float] = (1.0, 99.8),
) -> np.ndarray:
    """Frames [N, H, W] in source units -> float32 [N, H, W] in the model range, as training scaled them.

    Divides by ``info.unit_divisor`` (the dtype scaling of :func:`~experiments.data.normalization.to_unit_range`)
    then applies :func:`~experiments.data.normalization.normalize`, each frame on its own (percentiles are per
    frame). What the network will see is checked: finite values on disk can overflow here (float32 near
    3.4e38 minus 0.5, over 0.5), which is an :class:`InputError` naming ``info.path``.
    """
    missing = count_non_finite(frames)
    if missing:  # a file was checked when read; a napari layer or a zarr array arrives here as it is
        raise InputError(f"{info.path}: {missing} NaN or infinite pixel values; replace them (e.g. with 0) or crop "
                         "them away")
    with np.errstate(over="ignore", invalid="ignore"):  # reported just below, with the file's name
        # Integers are divided in float64, as to_unit_range does; floats (divisor 1) are taken as they are.
        unit = frames if info.unit_divisor == 1.0 else (frames / np.float64(info.unit_divisor)).astype(np.float32)
        model = np.stack([normalize(frame, normalization, percentiles) for frame in unit])
    bad = count_non_finite(model)
    if bad:
        raise InputError(
            f"{info.path}: {bad} pixel values become infinite or NaN when scaled to "
            f"the model range ({normalization!r} normalisation of values in [{frames.min():.3g}, {frames.max():.3g}]); "
            "rescale the file (e.g. to [0, 1]) and save it again"
        )
    return model


def float_range_problem(frames: np.ndarray, info: FrameInfo, normalization: Normalization) -> str | None:
    """Why float frames [N, H, W] do not suit the model, or None: the tutorial scaling takes floats as
    they are, so values well outside [0, 1] (beyond ``FLOAT_RANGE_TOLERANCE``) are far from anything the
    model was trained on. Prediction warns with this message; training refuses."""
    if normalization != "tutorial" or info.unit_divisor != 1.0:
        return None
    low, high = float(frames.min()), float(frames.max())
    if low < -FLOAT_RANGE_TOLERANCE or high > 1.0 + FLOAT_RANGE_TOLERANCE:
        return (
            f"{info.path}: float values span [{low:.3g}, {high:.3g}] but the model works on [0, 1] "
            "(data.normalization 'tutorial' takes float pixels as they are)"
        )
    return None


def tif_shape(path: Path, reduce: Reduce = None) -> tuple[int, int]:
    """[H, W] of the training image :func:`read_image` makes of ``path``, from the TIF header only (fast)."""
    stored = read_tif(path, pixels=False)
    layout = plane_layout(stored, reduce)
    _refuse_stack(stored.path, stored.shape, stored.axes, layout.frames, reduce)
    return layout.height, layout.width


def read_image(
    path: Path | str,
    normalization: Normalization = "tutorial",
    percentiles: tuple[float, float] = (1.0, 99.8),
    reduce: Reduce = None,
) -> np.ndarray:
    """The TIF at ``path`` as one float32 training image [H, W] in the model range.

    Read by :func:`read_frames`, a stack collapsed by ``reduce``, then scaled by :func:`to_model_frames`.
    Raises :class:`InputError` naming the file for everything those refuse, for a stack or colour image
    when ``reduce`` is None, and for float values far outside [0, 1] under the tutorial scaling
    (:func:`float_range_problem`): trained on, they would give a loss in the millions and no usable model.
    """
    frames, info = read_frames(path, reduce)
    _refuse_stack(info.path, info.stored_shape, info.axes, len(frames), reduce)
    image = collapse(frames, 0, reduce)[None]
    problem = float_range_problem(image, info, normalization)
    if problem:
        raise InputError(f"{problem}; rescale the files to [0, 1], or train with --data.normalization percentile")
    return to_model_frames(image, info, normalization, percentiles)[0]
