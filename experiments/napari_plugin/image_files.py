"""Images in and out of napari through the project's own readers and writer, at their physical scale.

File > Open reads an OME-Zarr image (:mod:`experiments.image_io.ome_zarr`: NGFF 0.4 / 0.5, lazily) or a TIF
(:func:`experiments.image_io.images.read_frames`, as ``experiments.predict`` reads it, with the pixel size of its
OME, ImageJ or resolution tags, which napari's own TIF reader leaves out); File > Save Selected Layers writes
an image layer as an NGFF 0.4 store of one chunk per frame, with its pixel size, as ``experiments.predict``
does. Also a layer's file's pixel size for the widget (:func:`file_pixel_size`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddpm.settings import UserError
from experiments.image_io.images import plane_layout, read_frames, read_tif
from experiments.data.layout import TIF_SUFFIXES
from experiments.image_io.ome_zarr import UNITS_UM, FrameStore, StackAxis, is_zarr_path, open_image

# The NGFF names of a layer's axes before y, x: by napari's axis labels when they name them, else by count.
STACK_NAMES = {("z",): ("z",), ("t",): ("t",), ("t", "z"): ("t", "z"), 0: (), 1: ("t",), 2: ("t", "z")}


def get_reader(path: str | list[str]):
    """npe2's reader hook: :func:`read` for one OME-Zarr store, :func:`read_tif_layer` for one TIF, None for
    anything else (another reader's)."""
    if isinstance(path, list):
        return None
    if is_zarr_path(path):
        return read
    return read_tif_layer if Path(path).suffix.lower() in TIF_SUFFIXES else None


def read_tif_layer(path: str) -> list[tuple]:
    """A greyscale TIF or stack as one image layer, in µm where the file states its pixel size."""
    frames, info = read_frames(path)
    data = frames[0] if len(frames) == 1 else frames
    options = {"name": Path(path).name}
    if info.pixel_size_um is not None:
        options.update(scale=[1.0] * (data.ndim - 2) + [info.pixel_size_um] * 2,
                       units=["pixel"] * (data.ndim - 2) + ["micrometer"] * 2)
    return [(data, options, "image")]


def file_pixel_size(path: str | Path | None) -> float | None:
    """The pixel size in µm that the TIF or OME-Zarr image at ``path`` states (header only); None when it
    states none or ``path`` is no such image."""
    if path is None or not Path(path).exists():
        return None
    if is_zarr_path(path):
        return open_image(path, reduce="first").info.pixel_size_um
    if Path(path).suffix.lower() in TIF_SUFFIXES:
        stored = read_tif(path, pixels=False)
        plane_layout(stored, "first")
        return stored.pixel_size_um
    return None


def read(path: str) -> list[tuple]:
    """The store's full-resolution level as one image layer (or one per channel), lazy, at its scale."""
    image = open_image(path, reduce="first")  # channels stay in the array; napari splits them
    keep = [axis for axis in range(image.array.ndim) if axis != image.channel_axis]
    units = [image.axes[axis].get("unit") or "pixel" for axis in keep]
    options = {"name": Path(path).name, "scale": [image.scale[axis] for axis in keep], "units": units}
    if image.channel_axis is not None:
        options["channel_axis"] = image.channel_axis
    return [(image.array, options, "image")]


def write(path: str, data: np.ndarray, meta: dict) -> list[str]:
    """npe2's single-layer writer hook: an image layer as an NGFF 0.4 store (one axis before y, x is t unless
    labelled z; two are t, z)."""
    if meta.get("rgb"):
        raise UserError(f"{path}: an RGB layer is not a greyscale image; convert it to greyscale first")
    data = np.asarray(data)
    scale, units = list(meta.get("scale") or [1.0] * data.ndim), [str(u) for u in meta.get("units") or []]
    unit = units[-1] if units else "pixel"
    pixel_size = scale[-1] * UNITS_UM[unit] if unit in UNITS_UM else None  # napari's unit names are NGFF's
    labels = [str(label).lower() for label in meta.get("axis_labels") or []][: data.ndim - 2]
    names = STACK_NAMES.get(tuple(labels)) or STACK_NAMES.get(data.ndim - 2)
    if names is None:
        raise UserError(f"{path}: a layer of {data.ndim} axes; OME-Zarr images hold at most t and z before y, x")
    stack = tuple(StackAxis(name, size, "space" if name == "z" else "time", None, float(scale[axis]))
                  for axis, (name, size) in enumerate(zip(names, data.shape[:-2])))
    store = FrameStore.create(path, stack, tuple(data.shape[-2:]), pixel_size,
                              {"source_layer": meta.get("name"), "metadata": meta.get("metadata") or {}})
    frames = data.reshape(-1, *data.shape[-2:])
    for index, frame in enumerate(frames):
        store.write(index, frame)
    return [path]
