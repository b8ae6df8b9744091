"""Users' own images in and TIF results out: find inputs, read frames strictly, write float32 TIFs with metadata.

    paths = find_inputs(["cells/", "extra.tif", "big.ome.zarr"])
    frames, info = read_frames(paths[0])                      # float32 [N, H, W] in source units
    source = read_input(paths[2])                             # a TIF or an OME-Zarr image, frame by frame
    model_in = to_model_frames(frames, info, "tutorial")      # [-1, 1], each frame on its own
    out = output_path_for(paths[0], "results", "_sr")
    write_frames(out, result, {"seed": 0, "checkpoint_sha256": "..."})

Every error names the file or folder and says what to do. Files are read and scaled by
:mod:`experiments.image_io.images` and folders listed by :func:`experiments.data.layout.list_tifs`, the
same code the data loader uses, so a user's TIF is checked and normalised exactly as the training data were.
OME-Zarr images are read by :mod:`experiments.image_io.ome_zarr`, which checks them alike.
"""

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

# Reading lives in experiments.image_io.images, shared with the data loader; re-exported for users of this module.
from experiments.image_io.images import FrameInfo, InputError, Reduce, plane_layout, read_frames, read_tif, to_model_frames
from experiments.data.layout import TIF_SUFFIXES, list_tifs
from experiments.image_io.ome_zarr import OME_ZARR_SUFFIX, StackAxis, is_zarr_path, open_image, stack_axes_of_tif

__all__ = [
    "FrameInfo",
    "InputError",
    "InputImage",
    "find_inputs",
    "output_path_for",
    "read_frames",
    "read_input",
    "read_metadata",
    "to_model_frames",
    "write_frames",
]
from experiments.image_io.ome_tiff import ome_description, ome_metadata
from experiments.integrity.atomic import atomic_path
from experiments.integrity.json_files import json_text
from experiments.integrity.outputs import ZARR_SUFFIX

_RESERVED_KEYS = ("shape",)  # tifffile reads a JSON description with "shape" as its own layout


def _is_tif(path: Path) -> bool:
    return path.suffix.lower() in TIF_SUFFIXES


def find_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Images named in ``paths``: TIF files and OME-Zarr stores as given, folders as their TIFs and stores
    sorted by name (not recursive).

    Folders are listed by :func:`experiments.data.layout.list_tifs`, as the data loader lists its
    splits: suffixes .tif / .tiff in any case, hidden files (``.name``, e.g. macOS ``._x.tif``) skipped;
    beside them, the ``.zarr`` stores they hold. A path reached twice is kept once, at its first place.
    Raises :class:`InputError` naming the path when it does not exist, a folder holds no image, or a file
    is not a TIF.
    """
    if not paths:
        raise InputError("no input given: pass one or more TIF files, OME-Zarr stores or folders of them")
    found: list[Path] = []
    for given in map(Path, paths):
        if is_zarr_path(given):
            if not given.is_dir():
                raise InputError(f"{given}: no such OME-Zarr store (a folder ending in .zarr); check the path")
            found.append(given)
        elif given.is_dir():
            stores = [path for path in given.iterdir() if path.suffix.lower() == ZARR_SUFFIX and path.is_dir()
                      and not path.name.startswith(".")]
            inside = sorted(list_tifs(given) + stores)
            if not inside:
                raise InputError(f"{given}: folder holds no .tif / .tiff files or .zarr stores; point to a folder "
                                 "of images")
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


def write_frames(path: str | Path, frames: np.ndarray, metadata: dict, pixel_size_um: float | None = None) -> None:
    """Write ``frames`` [N, H, W] as a float32 OME-TIFF (one page for N = 1, a stack of N pages otherwise).

    ``metadata`` (JSON-serialisable, key "shape" reserved by tifffile) is stored as JSON in the OME
    ``Image/Description``; read it back with :func:`read_metadata`. ``pixel_size_um`` becomes OME's
    PhysicalSizeX / Y in µm (:mod:`experiments.image_io.ome_tiff`); None leaves them out. The file is written to a
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
        description = json_text(metadata, indent=None)  # strict: an undefined measure is null with a note
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{path}: metadata is not JSON-serialisable ({error}); use numbers, strings, lists and dicts"
        ) from error
    data = frames.astype(np.float32)
    ome = ome_metadata("YX" if len(data) == 1 else "TYX", pixel_size_um, description)
    # OME's file UUID from the content instead of the clock: the same prediction gives the same bytes.
    digest = hashlib.sha256(description.encode() + data.tobytes()).hexdigest()
    ome["UUID"] = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, digest)}"
    with atomic_path(path) as temporary:
        # minisblack keeps a 3-frame stack from being stored as one RGB-like page.
        tifffile.imwrite(temporary, data[0] if len(data) == 1 else data, ome=True, metadata=ome,
                         photometric="minisblack")


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata :func:`write_frames` stored in ``path``; :class:`InputError` naming the file if none."""
    path = Path(path)
    stored = read_tif(path, pixels=False)
    description = ome_description(stored.description) or "" if stored.is_ome else stored.description
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


@dataclass(frozen=True)
class InputImage:
    """An input's frames, read one at a time (``frames[i]``: float32 [H, W] in source units; a TIF is read
    whole, an OME-Zarr image chunk by chunk), where they came from, and the axes they were stacked along."""

    frames: Sequence[np.ndarray]
    info: FrameInfo
    stack: tuple[StackAxis, ...]
    plane: tuple[int, int]  # [H, W] of every frame


def read_input(path: str | Path, reduce: Reduce = None, pixels: bool = True) -> InputImage | None:
    """The TIF or OME-Zarr image at ``path`` (:func:`read_frames`, :func:`experiments.image_io.ome_zarr.open_image`).
    With ``pixels=False`` only the header is checked (every error a bad file can give before its pixels are
    read) and None returned."""
    path = Path(path)
    if is_zarr_path(path):
        image = open_image(path, reduce)
        return InputImage(image, image.info, image.stack, image.plane) if pixels else None
    if not pixels:
        plane_layout(read_tif(path, pixels=False), reduce)
        return None
    frames, info = read_frames(path, reduce)
    return InputImage(frames, info, stack_axes_of_tif(info, len(frames)), frames.shape[1:])


def output_path_for(input_path: str | Path, out_dir: str | Path, suffix: str, extension: str = ".tif") -> Path:
    """``out_dir / <input stem><suffix><extension>``, e.g. ("cells/a.tiff", "out", "_sr") -> out/a_sr.tif and
    ("b.ome.zarr", "out", "_sr", ".ome.zarr") -> out/b_sr.ome.zarr (a store's stem drops .ome.zarr / .zarr)."""
    name = Path(input_path).name
    lower = name.lower()
    stem = next((name[: -len(end)] for end in (OME_ZARR_SUFFIX, ZARR_SUFFIX) if lower.endswith(end)), Path(name).stem)
    return Path(out_dir) / f"{stem}{suffix}{extension}"
