"""Users' own TIFs in and results out: find inputs, read frames strictly, write float32 TIFs with metadata.

    paths = find_inputs(["cells/", "extra.tif"])
    frames, info = read_frames(paths[0])                      # float32 [N, H, W] in source units
    model_in = to_model_frames(frames, info, "tutorial")      # [-1, 1], each frame on its own
    out = output_path_for(paths[0], "results", "_sr")
    ensure_not_overwriting(paths, [out])
    write_frames(out, result, {"seed": 0, "checkpoint_sha256": "..."})

Every error names the file or folder and says what to do. Pixel scaling reuses
:mod:`experiments.normalization`, colour reduction :func:`experiments.data.images.reduce_to_2d`, so a
user's TIF is normalised exactly as the training data were.
"""

import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from experiments.data.images import COLOUR_CHANNELS, REDUCTIONS, Reduce, reduce_to_2d
from experiments.data.layout import TIF_SUFFIXES, DatasetError
from experiments.normalization import Normalization, normalize, unit_divisor
from experiments.ome_tiff import ome_description, ome_metadata

SUPPORTED_DTYPES: tuple[str, ...] = ("uint8", "uint16", "float16", "float32", "float64")
_RESERVED_KEYS = ("shape",)  # tifffile reads a JSON description with "shape" as its own layout


class InputError(DatasetError):
    """A user's input path cannot be used; the message names the path and what to do."""


class OverwriteError(ValueError):
    """An output would replace an input, or two outputs would land on the same file."""


@dataclass(frozen=True)
class FrameInfo:
    """Where frames came from and how to scale them.

    ``unit_divisor`` is what the training data's scaling (:func:`experiments.normalization.to_unit_range`)
    divides the stored values by: the dtype maximum for integers (255, 65535), 1 for floats.
    """

    path: Path
    dtype: str  # stored dtype, e.g. "uint16"
    stored_shape: tuple[int, ...]  # as in the file, e.g. (H, W), (N, H, W), (H, W, 3)
    unit_divisor: float
    colour_reduced: Reduce  # how RGB(A) was collapsed, None if the file was greyscale


def _is_tif(path: Path) -> bool:
    return path.suffix.lower() in TIF_SUFFIXES


def find_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """TIF files named in ``paths``: files as given, folders as their TIFs sorted by name (not recursive).

    Suffixes .tif / .tiff match in any case; hidden files (``.name``, e.g. macOS ``._x.tif``) in folders
    are skipped. A file reached twice is kept once, at its first place. Raises :class:`InputError`
    naming the path when it does not exist, a folder holds no TIF, or a file is not a TIF.
    """
    if not paths:
        raise InputError("no input given: pass one or more TIF files or folders of TIFs")
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            inside = sorted(p for p in given.iterdir() if p.is_file() and _is_tif(p) and not p.name.startswith("."))
            if not inside:
                raise InputError(f"{given}: folder holds no .tif / .tiff files; point to a folder of TIF images")
            found.extend(inside)
        elif given.is_file():
            if not _is_tif(given):
                raise InputError(f"{given}: not a TIF file (suffix {given.suffix!r}); expected .tif or .tiff")
            found.append(given)
        else:
            raise InputError(f"{given}: no such file or folder; check the path")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _check_finite(array: np.ndarray, path: Path, what: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise InputError(f"{path}: {bad} NaN or infinite pixel values{what}; fix or remove this file")


def read_frames(path: str | Path, reduce: Reduce = None) -> tuple[np.ndarray, FrameInfo]:
    """The TIF at ``path`` as float32 frames [N, H, W] in source units (a uint16 of 1000 stays 1000.0).

    A 2-D image gives N = 1; a stack (time, z, or more leading axes) gives one frame per 2-D plane, in
    file order. RGB(A) (a trailing axis of 3 or 4) is an error unless ``reduce`` ("first", "mean" or
    "max") says how to collapse the colours; greyscale files ignore ``reduce``. Raises
    :class:`InputError` naming the file when it cannot be read, its dtype is not one of
    ``SUPPORTED_DTYPES``, or it holds NaN / inf (also after float64 -> float32).
    """
    path = Path(path)
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}; choose one of {REDUCTIONS}")
    try:
        array = tifffile.imread(path)
    except (OSError, ValueError) as error:  # tifffile.TiffFileError is a ValueError
        raise InputError(f"{path}: cannot be read as a TIF ({error}); check that the file is complete") from error
    if array.dtype.name not in SUPPORTED_DTYPES:
        raise InputError(
            f"{path}: pixel type {array.dtype.name} is not supported; save it as one of {SUPPORTED_DTYPES}"
        )
    if array.ndim < 2 or min(array.shape) == 0:
        raise InputError(f"{path}: shape {array.shape} is not an image (needs at least 2 non-empty axes)")
    _check_finite(array, path, "")
    coloured = array.ndim >= 3 and array.shape[-1] in COLOUR_CHANNELS
    if coloured and reduce is None:
        raise InputError(
            f"{path}: shape {array.shape} looks like an RGB(A) image; convert it to greyscale or pass "
            f"reduce='first', 'mean' or 'max' to collapse the colour channels"
        )
    planes = array.reshape(-1, *array.shape[-3:]) if coloured else array.reshape(-1, *array.shape[-2:])
    if coloured:
        planes = np.stack([reduce_to_2d(plane, reduce, path) for plane in planes])
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, reported just below
        frames = planes.astype(np.float32)
    _check_finite(frames, path, " after conversion to float32 (values beyond +-3.4e38)")
    info = FrameInfo(
        path=path,
        dtype=array.dtype.name,
        stored_shape=tuple(array.shape),
        unit_divisor=unit_divisor(array.dtype),
        colour_reduced=reduce if coloured else None,
    )
    return frames, info


def to_model_frames(
    frames: np.ndarray,
    info: FrameInfo,
    normalization: Normalization = "tutorial",
    percentiles: tuple[float, float] = (1.0, 99.8),
) -> np.ndarray:
    """Frames [N, H, W] in source units -> float32 [N, H, W] in the model range, as training scaled them.

    Divides by ``info.unit_divisor`` (the dtype scaling of :func:`~experiments.normalization.to_unit_range`)
    then applies :func:`~experiments.normalization.normalize`, each frame on its own (percentiles are per
    frame).
    """
    unit = (frames / np.float64(info.unit_divisor)).astype(np.float32)
    return np.stack([normalize(frame, normalization, percentiles) for frame in unit])


def write_frames(path: str | Path, frames: np.ndarray, metadata: dict, pixel_size_um: float | None = None) -> None:
    """Write ``frames`` [N, H, W] as a float32 OME-TIFF (one page for N = 1, a stack of N pages otherwise).

    ``metadata`` (JSON-serialisable, key "shape" reserved by tifffile) is stored as JSON in the OME
    ``Image/Description``; read it back with :func:`read_metadata`. ``pixel_size_um`` becomes OME's
    PhysicalSizeX / Y in µm (:mod:`experiments.ome_tiff`); None leaves them out. The file is written to a
    temporary name in the same folder and renamed into place, so a crash never leaves a half-written
    ``path``. Missing parent folders are created.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 3 or min(frames.shape) == 0:
        raise ValueError(f"{path}: frames must be a non-empty [N, H, W] array, got shape {frames.shape}")
    reserved = [key for key in _RESERVED_KEYS if key in metadata]
    if reserved:
        raise ValueError(f"{path}: metadata keys {reserved} are reserved by the TIF layout; rename them")
    try:
        description = json.dumps(metadata)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{path}: metadata is not JSON-serialisable ({error}); use numbers, strings, lists and dicts"
        ) from error
    data = frames.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its 0600 mode would carry over to the output. A unique name instead.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.part")
    try:
        # minisblack keeps a 3-frame stack from being stored as one RGB-like page.
        tifffile.imwrite(
            temporary,
            data[0] if len(data) == 1 else data,
            ome=True,
            metadata=ome_metadata("YX" if len(data) == 1 else "TYX", pixel_size_um, description),
            photometric="minisblack",
        )
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata :func:`write_frames` stored in ``path``; :class:`InputError` naming the file if none."""
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            description = tif.pages[0].description
            if tif.is_ome:
                description = ome_description(description) or ""
    except (OSError, ValueError) as error:  # tifffile.TiffFileError is a ValueError
        raise InputError(f"{path}: cannot be read as a TIF ({error})") from error
    try:
        metadata = json.loads(description)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}: ImageDescription holds no metadata written by write_frames (it is not JSON)"
        ) from error
    # tifffile writes {"shape": ...} into every TIF it makes unless told not to; that is not our metadata.
    if not isinstance(metadata, dict) or any(key in metadata for key in _RESERVED_KEYS):
        raise InputError(f"{path}: ImageDescription holds no metadata written by write_frames")
    return metadata


def output_path_for(input_path: str | Path, out_dir: str | Path, suffix: str) -> Path:
    """``out_dir / <input stem><suffix>.tif``, e.g. ("cells/a.tiff", "out", "_sr") -> out/a_sr.tif."""
    return Path(out_dir) / f"{Path(input_path).stem}{suffix}.tif"


def ensure_not_overwriting(inputs: Sequence[str | Path], outputs: Sequence[str | Path]) -> None:
    """Raise :class:`OverwriteError` if an output resolves to an input or two outputs to the same file.

    Paths are compared after resolving symlinks and ``..``, so ``out/../cells/a.tif`` is caught too.
    """
    resolved_inputs = {Path(p).resolve(): Path(p) for p in inputs}
    seen: dict[Path, Path] = {}
    for output in map(Path, outputs):
        resolved = output.resolve()
        if resolved in resolved_inputs:
            raise OverwriteError(
                f"{output}: output would overwrite the input {resolved_inputs[resolved]}; "
                f"choose another output folder or suffix"
            )
        if resolved in seen:
            raise OverwriteError(
                f"{output}: two outputs would be written to the same file (also {seen[resolved]}); "
                f"inputs with the same name in different folders need separate output folders"
            )
        seen[resolved] = output
