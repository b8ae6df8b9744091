"""OME-Zarr images in and out: read 2-D images and t / z stacks, write results frame by frame.

    image = open_image("cells.ome.zarr")          # the full-resolution level of an NGFF 0.4 / 0.5 image
    frames, info = image, image.info               # image[i]: frame i, float32 [H, W] in source units
    store = FrameStore.create("out/cells_sr.ome.zarr", stack, (H, W), pixel_size_um, metadata)
    store.write(i, frame)                          # one chunk: finished frames survive an interruption

Inputs are NGFF images (``multiscales`` in the group's attributes: NGFF 0.4 on Zarr v2, or under
``"ome"`` as NGFF 0.5 on Zarr v3), also inside a bioformats2raw layout (the image in ``0/``). Only the
first, full-resolution level is read, frame by frame: every axis but y, x and the channel axis is a
stack of frames, as in a TIF. Outputs are NGFF 0.4 on Zarr v2, which Fiji (n5-zarr, MoBIE),
napari-ome-zarr, QuPath and the ``ome-zarr`` library all read: one level, the input's stack axes then
y, x, with the pixel size in µm in the level's scale; one chunk per frame, filled with NaN until the
frame is written. Zarr writes each chunk to a temporary file renamed into place, so a frame is either
complete or NaN: :meth:`FrameStore.finished` finds the frames a resumed run may skip.

Needs the ``[zarr]`` extra (``zarr``); the TIF route needs nothing more.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.image_io.images import SUPPORTED_DTYPES, FrameInfo, InputError, Reduce, collapse
from experiments.data.normalization import unit_divisor
from experiments.image_io.ome_tiff import valid_pixel_size
from experiments.integrity.atomic import TEMPORARY_SUFFIX
from experiments.integrity.deferred_signals import deferred_signals
from experiments.integrity.finite import count_non_finite
from experiments.integrity.json_files import strict_json
from experiments.integrity.outputs import ZARR_SUFFIX

OME_ZARR_SUFFIX = f".ome{ZARR_SUFFIX}"  # what the outputs are named, as OME-Zarr images usually are
NGFF_VERSION = "0.4"  # what is written; 0.4 and 0.5 are read
METADATA_KEY = "diffusion_sr"  # our JSON metadata in the output group's attributes
IMAGE_ARRAY = "0"  # the path of the one level written
# NGFF's length units in micrometres (the ones microscopes use).
UNITS_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6,
            "angstrom": 1e-4}
_MARKERS = ("zarr.json", ".zgroup", ".zattrs", ".zarray")
_INSTALL = "install the [zarr] extra (pip install -e '.[zarr]', or make install)"


def _zarr():
    try:
        import zarr
    except ImportError as error:
        raise InputError(f"OME-Zarr needs the zarr package: {_INSTALL}") from error
    return zarr


def stack_position(index: int, stack_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Frame ``index`` (in frame order, the last stack axis fastest) as its position along the stack axes."""
    return tuple(int(at) for at in np.unravel_index(index, stack_shape)) if stack_shape else ()


def is_zarr_path(path: str | Path) -> bool:
    """True for a ``.zarr`` path or a folder holding Zarr metadata: a store, not a folder of files."""
    path = Path(path)
    return path.suffix.lower() == ZARR_SUFFIX or (path.is_dir() and any((path / m).is_file() for m in _MARKERS))


@dataclass(frozen=True)
class StackAxis:
    """An axis of frames (t, z, ...): its NGFF name, type and unit, size and step (its scale)."""

    name: str
    size: int
    type: str | None = None
    unit: str | None = None
    scale: float = 1.0

    def ngff(self) -> dict:
        axis = {"name": self.name}
        axis.update({key: value for key, value in (("type", self.type), ("unit", self.unit)) if value})
        return axis


def stack_axes_of_tif(info: FrameInfo, frames: int) -> tuple[StackAxis, ...]:
    """The stack axes of a TIF's frames for an OME-Zarr output: one axis of ``frames`` (none for one frame),
    named after the TIF's stack axis when it has exactly one (tifffile's letter: Z space, else time)."""
    if frames == 1:
        return ()
    letters = [axis for axis in info.axes if axis not in "YXSC"]
    letter = letters[0].lower() if len(letters) == 1 else "t"
    return (StackAxis(letter, frames, "space" if letter == "z" else "time"),)


class ZarrImage:
    """The full-resolution level of an OME-Zarr image, read frame by frame: ``image[i]`` is frame i as
    float32 [H, W] in source units (channels collapsed by ``reduce``), ``len(image)`` the frame count."""

    def __init__(self, path: Path, array, axes: list[dict], scale: list[float], reduce: Reduce,
                 content_note: str | None = None):
        self.path, self.array, self.reduce = path, array, reduce
        self.axes, self.scale = axes, scale  # NGFF's, one per axis of the array
        names = [axis["name"].lower() for axis in axes]
        self._y, self._x = names.index("y"), names.index("x")
        self._channels = [i for i, axis in enumerate(axes) if axis.get("type") == "channel" or names[i] == "c"]
        self._stack = [i for i in range(len(axes)) if i not in (self._y, self._x, *self._channels)]
        shape = array.shape
        self.stack = tuple(StackAxis(names[i], shape[i], axes[i].get("type"), axes[i].get("unit"), scale[i])
                           for i in self._stack if shape[i] > 1)
        channels = math.prod(shape[i] for i in self._channels)
        if channels > 1 and reduce is None:
            raise InputError(
                f"{path}: shape {shape} (axes {''.join(names)}) holds {channels} channels per pixel, not one grey "
                "value; pass --reduce first, mean or max to collapse them"
            )
        unit = axes[self._x].get("unit")
        stated = scale[self._x] * UNITS_UM[unit] if unit in UNITS_UM else None
        size, note = valid_pixel_size(stated)
        if unit is not None and unit not in UNITS_UM:
            note = f"its x axis has unit {unit!r}, not one of {sorted(UNITS_UM)}"
        self.info = FrameInfo(
            path=path,
            dtype=array.dtype.name,
            stored_shape=tuple(shape),
            axes="".join(names).upper(),
            unit_divisor=unit_divisor(array.dtype),
            colour_reduced=reduce if channels > 1 else None,
            pixel_size_um=size,
            pixel_size_note=note,
            content_note=content_note,
        )

    def __len__(self) -> int:
        return math.prod(self.array.shape[i] for i in self._stack)

    @property
    def channel_axis(self) -> int | None:
        """The index of the channel axis, if the image has one."""
        return self._channels[0] if self._channels else None

    @property
    def plane(self) -> tuple[int, int]:
        return self.array.shape[self._y], self.array.shape[self._x]

    def __getitem__(self, index: int) -> np.ndarray:
        position = stack_position(index, tuple(self.array.shape[i] for i in self._stack))
        where: list = [slice(None)] * self.array.ndim
        for axis, at in zip(self._stack, position):
            where[axis] = at
        try:
            block = np.asarray(self.array[tuple(where)])
        except Exception as error:  # a damaged chunk surfaces as any codec's error
            raise InputError(f"{self.path}: frame {index} cannot be read ({type(error).__name__}: {error}); "
                             "the store is damaged: copy it again") from error
        kept = [axis for axis in range(self.array.ndim) if axis not in self._stack]  # channels, y, x in order
        order = [kept.index(axis) for axis in (*self._channels, self._y, self._x)]
        planes = block.transpose(order).reshape(-1, *self.plane)
        frame = collapse(planes, 0, self.reduce).astype(np.float32, copy=False)
        bad = count_non_finite(frame)
        if bad:
            raise InputError(f"{self.path}: {bad} NaN or infinite pixel values in frame {index}; fix or remove this image")
        return frame


def _ngff_attributes(group) -> dict:
    """The group's NGFF attributes: under "ome" in NGFF 0.5, at the top in 0.4 and before."""
    attributes = dict(group.attrs)
    ome = attributes.get("ome")
    return ome if isinstance(ome, dict) else attributes


def _image_group(path: Path):
    zarr = _zarr()
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as error:
        raise InputError(f"{path}: not a readable Zarr group ({type(error).__name__}: {error}); an OME-Zarr image "
                         "is a folder with zarr.json (NGFF 0.5) or .zgroup and .zattrs (NGFF 0.4)") from error
    if "multiscales" not in _ngff_attributes(group) and "bioformats2raw.layout" in _ngff_attributes(group):
        try:
            group = group["0"]
        except KeyError as error:
            raise InputError(f"{path}: a bioformats2raw layout without its image 0/; the store is incomplete") from error
    return group


def open_image(path: str | Path, reduce: Reduce = None) -> ZarrImage:
    """The OME-Zarr image at ``path``; an :class:`InputError` naming it when it is not OME (no multiscales),
    its level 0 is missing, its pixel type is not supported, or it has no y, x. Chunks not stored read as the
    fill value, as zarr reads them, noted in ``info.content_note``."""
    path = Path(path)
    group = _image_group(path)
    multiscales = _ngff_attributes(group).get("multiscales")
    if not multiscales:
        raise InputError(f"{path}: a Zarr store but not an OME-Zarr image (no 'multiscales' metadata); convert it "
                         "with bioformats2raw or ome-zarr, or save it as OME-Zarr from Fiji or napari")
    image = multiscales[0]
    axes = [{"name": axis} if isinstance(axis, str) else dict(axis) for axis in image.get("axes", ["t", "c", "z", "y", "x"])]
    dataset = image["datasets"][0]
    try:
        array = group[dataset["path"]]
    except KeyError as error:
        raise InputError(f"{path}: level {dataset['path']!r} named in its multiscales is missing: the store is "
                         "truncated; copy it again") from error
    if array.dtype.name not in SUPPORTED_DTYPES:
        raise InputError(f"{path}: pixel type {array.dtype.name} is not supported; save it as one of {SUPPORTED_DTYPES}")
    names = [axis["name"].lower() for axis in axes]
    if len(axes) != array.ndim or not {"y", "x"} <= set(names) or 0 in array.shape:
        raise InputError(f"{path}: axes {names} do not describe its array of shape {array.shape}; an image needs "
                         "non-empty y and x axes")
    # zarr leaves out chunks equal to the fill value (zarr 3 by default): a store with an empty region has no
    # chunk for it, and every reader (zarr, ome-zarr) reads the fill value there; so does this one, and says so
    missing = array.nchunks - array.nchunks_initialized
    note = None if not missing else (
        f"{missing} of the {array.nchunks} chunks of level {dataset['path']!r} are not stored and read as the store's "
        f"fill value ({array.fill_value}), as zarr leaves out chunks equal to it; if the store was copied, check that "
        "the copy is whole")
    scale = [1.0] * array.ndim
    for transforms in (dataset.get("coordinateTransformations", []), image.get("coordinateTransformations", [])):
        for transform in transforms:
            if transform.get("type") == "scale":
                scale = [a * float(b) for a, b in zip(scale, transform["scale"])]
    return ZarrImage(path, array, axes, scale, reduce, note)


def _remove_store(path: Path) -> None:
    """Delete the Zarr store at ``path``; refuse a folder that is not one (a user's data never goes)."""
    if not is_zarr_path(path) or not any((path / m).is_file() for m in _MARKERS):
        raise InputError(f"{path}: exists and is not a Zarr store; it is not replaced: remove it or choose another output")
    shutil.rmtree(path)


class FrameStore:
    """An NGFF 0.4 output image written frame by frame (:meth:`create`, or :meth:`open` to resume)."""

    def __init__(self, path: Path, group):
        self.path, self.group = path, group
        self.array = group[IMAGE_ARRAY]
        self.stack_shape = tuple(self.array.shape[:-2])

    @classmethod
    def create(cls, path: str | Path, stack: tuple[StackAxis, ...], plane: tuple[int, int],
               pixel_size_um: float | None, metadata: dict) -> "FrameStore":
        """A new store of NaN frames, made under a temporary name and renamed into place (replacing an
        existing store at ``path``), so ``path`` is always a whole store."""
        zarr, path = _zarr(), Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMPORARY_SUFFIX}")
        with deferred_signals():  # Ctrl-C inside would leave the temporary behind
            try:
                group = zarr.open_group(str(temporary), mode="w", zarr_format=2)
                group.create_array(IMAGE_ARRAY, shape=(*[axis.size for axis in stack], *plane), dtype="float32",
                                   chunks=(*[1] * len(stack), *plane), fill_value=float("nan"),
                                   chunk_key_encoding={"name": "v2", "separator": "/"})
                space = {"type": "space", "unit": "micrometer"} if pixel_size_um is not None else {"type": "space"}
                size = 1.0 if pixel_size_um is None else pixel_size_um
                group.attrs.update({
                    "multiscales": [{
                        "version": NGFF_VERSION,
                        "name": path.name,
                        "axes": [axis.ngff() for axis in stack] + [{"name": "y", **space}, {"name": "x", **space}],
                        "datasets": [{"path": IMAGE_ARRAY, "coordinateTransformations": [
                            {"type": "scale", "scale": [axis.scale for axis in stack] + [size, size]}]}],
                    }],
                    METADATA_KEY: strict_json(metadata),
                })
                if path.exists():
                    _remove_store(path)
                os.replace(temporary, path)
            except BaseException:
                shutil.rmtree(temporary, ignore_errors=True)
                raise
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path) -> "FrameStore":
        """An existing output store (to resume); an :class:`InputError` naming it when it is not one of ours."""
        path = Path(path)
        try:
            group = _zarr().open_group(str(path), mode="r+")
            store = cls(path, group)
        except InputError:
            raise
        except Exception as error:
            raise InputError(f"{path}: not an output store of experiments.predict ({type(error).__name__}: "
                             f"{error}); remove it or pass --overwrite") from error
        if METADATA_KEY not in group.attrs:
            raise InputError(f"{path}: not an output store of experiments.predict (no {METADATA_KEY!r} metadata); "
                             "remove it or pass --overwrite")
        return store

    @property
    def metadata(self) -> dict:
        return dict(self.group.attrs[METADATA_KEY])

    def update_metadata(self, **entries) -> None:
        with deferred_signals():
            self.group.attrs[METADATA_KEY] = strict_json({**self.metadata, **entries})

    def __len__(self) -> int:
        return math.prod(self.stack_shape)

    def write(self, index: int, frame: np.ndarray) -> None:
        """Frame ``index`` (in frame order) as its one chunk, written whole even when Ctrl-C comes during it."""
        with deferred_signals():
            self.array[stack_position(index, self.stack_shape)] = np.asarray(frame, dtype=np.float32)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index``; an :class:`InputError` naming the store when its chunk cannot be decoded."""
        try:
            return np.asarray(self.array[stack_position(index, self.stack_shape)])
        except Exception as error:  # a damaged chunk surfaces as any codec's error
            raise InputError(f"{self.path}: frame {index} of this output cannot be read ({type(error).__name__}: "
                             f"{error}); the store is damaged: pass --overwrite to predict it again, or remove it") from error

    def finished(self) -> set[int]:
        """The frames written (no NaN: an unwritten chunk is all NaN and an output never holds one)."""
        return {index for index in range(len(self)) if not np.isnan(self.read(index)).any()}
