"""What the napari widget runs, without Qt: a request (the model, a layer's pixels and grid, the options the
widget shows) through prediction's own route (:func:`experiments.inference.frames.super_resolve`, the trust
check, the provenance record and the pixel-size warning of :mod:`experiments.inference.prediction`) or a
Model Zoo package, into the layers to add. :mod:`experiments.napari_plugin.widget` is the Qt around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm.settings import UserError
from experiments.config.schema import SamplingConfig
from experiments.data.normalization import unit_divisor
from experiments.image_io.images import SUPPORTED_DTYPES, FrameInfo
from experiments.image_io.ome_tiff import valid_pixel_size
from experiments.image_io.ome_zarr import UNITS_UM, stack_position
from experiments.image_io.tif_io import InputImage
from experiments.inference.frames import PAIR, ScaledInput, super_resolve
from experiments.inference.loading import load_for_inference
from experiments.inference.package import load_package, postprocess, preprocess, run_package
from experiments.inference.prediction import PredictOptions, pixel_size_warning, provenance, std_content
from experiments.inference.predictor import FrameRequest
from experiments.inference.sampling import PREDICTION_SAMPLING, prediction_sampling, sampling_from_flags
from experiments.trust import check

PACKAGE_SUFFIX = ".zip"
MAX_SAMPLES = 64
MAX_STEPS = 2000
# The widget's first sampler choice: the model's own, as predict without --sampler (a regression baseline's
# one evaluation, a diffusion model's DPM-Solver++ on its default evaluations).
AUTO = "auto"
# The command-line flags prediction's messages name, in the widget's own words.
WIDGET_CONTROLS = {"--sampling-steps": "Steps", "--sampler": "Sampler", "--samples": "Samples", "--seed": "Seed",
                   " (and --std)": ""}


def in_widget_terms(message: str) -> str:
    """A message of prediction's route with its flags named as the widget's controls (:data:`WIDGET_CONTROLS`)."""
    for flag, control in WIDGET_CONTROLS.items():
        message = message.replace(flag, control)
    return message


class Cancelled(Exception):
    """Raised inside the sampler by Cancel: the run stops at the next network call and adds nothing."""


@dataclass(frozen=True)
class Request:
    """One run: the model, the layer's pixels and grid, and the sampling options the widget shows."""

    model: Path
    name: str
    data: Any  # the layer's array (numpy, zarr or dask): [..., H, W]
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[str, ...]
    file_pixel_um: float | None = None  # the pixel size the layer's file states, for a layer in pixels
    sampler: str = AUTO
    steps: int = PREDICTION_SAMPLING.sampling_steps  # for a sampler that takes steps, not for AUTO
    samples: int = 1
    check: bool = False
    seed: int = 0


@dataclass
class Result:
    """The layers a run adds: ``(data, keyword arguments of viewer.add_image)`` each, and the warnings the
    widget shows with them (an input far from what the model was trained on)."""

    layers: list[tuple[np.ndarray, dict]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class LayerFrames:
    """The frames of a layer's array [..., H, W], read one at a time (a lazy array stays lazy)."""

    def __init__(self, data: Any):
        self.data, self.stack = data, tuple(data.shape[:-2])

    def __len__(self) -> int:
        return int(np.prod(self.stack, dtype=np.int64))

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.data[stack_position(index, self.stack)], dtype=np.float32)


def pixel_size_of(request: Request) -> float | None:
    """The input's pixel size in µm: the layer's x scale in its unit, else (a layer in pixels) its file's."""
    unit = request.units[-1] if request.units else "pixel"
    if unit not in UNITS_UM:
        return request.file_pixel_um
    return valid_pixel_size(request.scale[-1] * UNITS_UM[unit])[0]


def layer_input(request: Request) -> InputImage:
    """The layer as prediction's input: its frames, their type and pixel size, named after the layer."""
    data = request.data
    if data.ndim < 2 or 0 in data.shape:
        raise UserError(f"layer {request.name!r}: shape {data.shape} is not an image; choose a 2-D image or a stack")
    if np.dtype(data.dtype).name not in SUPPORTED_DTYPES:
        raise UserError(f"layer {request.name!r}: pixel type {np.dtype(data.dtype).name} is not supported; convert "
                        f"it to one of {SUPPORTED_DTYPES}")
    info = FrameInfo(path=Path(request.name), dtype=np.dtype(data.dtype).name, stored_shape=tuple(data.shape),
                     axes="Q" * (data.ndim - 2) + "YX", unit_divisor=unit_divisor(np.dtype(data.dtype)),
                     colour_reduced=None, pixel_size_um=pixel_size_of(request))
    return InputImage(LayerFrames(data), info, (), tuple(data.shape[-2:]))


def output_grid(request: Request, factor: int) -> dict:
    """``scale`` and ``translate`` of a layer ``factor`` times finer in y, x over the input's field of view:
    pixel centres move by a quarter of an input pixel for a 2x output, so both images cover the same area."""
    scale, translate = list(request.scale), list(request.translate)
    for axis in (-2, -1):
        translate[axis] += (1 / factor - 1) * scale[axis] / 2
        scale[axis] /= factor
    return {"scale": tuple(scale), "translate": tuple(translate), "units": request.units}


def _stacked(frames: list[np.ndarray], request: Request) -> np.ndarray:
    return np.stack(frames).reshape(*request.data.shape[:-2], *frames[0].shape)


def pixel_size_note(request: Request, predictor, size_um: float | None) -> list[str]:
    """What prediction would say of this layer's pixel size (:func:`~experiments.inference.prediction.pixel_size_warning`,
    in the widget's terms): far from the training inputs', or unknown; nothing when it matches."""
    found = pixel_size_warning(f"layer {request.name!r}", size_um, "its scale", False, predictor,
                               stating="the layer's scale")
    return [found] if found else []


def _layers(request: Request, means: list, stds: list, maps: list, entries: list, factor: int,
            settings: dict, std: str | None = None) -> Result:
    """The layers of a run; ``std`` says what the std layer holds, where there is one (:func:`std_content`)."""
    grid = output_grid(request, factor)
    metadata = {"model": str(request.model), **settings}
    if entries:
        metadata["check"] = entries
    result = Result([(_stacked(means, request), {"name": f"{request.name} SR", "metadata": metadata, **grid})])
    if stds:
        calibrated = "error std (calibrated)" if std and std.startswith("calibrated") else "std"
        result.layers.append((_stacked(stds, request), {"name": f"{request.name} SR {calibrated}", "colormap": "magma",
                                                        "metadata": {"content": std}, **grid}))
    if maps:
        own = {"scale": request.scale, "translate": request.translate, "units": request.units}
        result.layers.append((_stacked(maps, request), {"name": f"{request.name} SR consistency", "colormap": "magma",
                                                        **own}))
    return result


def run_checkpoint(request: Request, on_tiles) -> Result:
    """The request through a checkpoint: prediction's sampler, tiles and check (:func:`super_resolve`)."""
    predictor = load_for_inference(request.model, "auto")
    steps = predictor.diffusion.steps
    base = prediction_sampling(predictor.config.sampling)
    chosen = {} if request.sampler == AUTO else {
        "sampler": request.sampler,
        "sampling_steps": request.steps if "sampling_steps" in SamplingConfig(sampler=request.sampler).sampler_options() else None}
    try:
        sampling = sampling_from_flags(base, steps, samples=request.samples, **chosen)
    except UserError as error:
        raise type(error)(in_widget_terms(str(error))) from None
    source = layer_input(request)
    size = source.info.pixel_size_um
    scaled = ScaledInput(source, predictor.config.data.normalization)
    means, stds, maps, entries, warnings = [], [], [], [], pixel_size_note(request, predictor, size)
    frames = FrameRequest(sampling, keep=PAIR if request.check else 0, on_tiles=on_tiles)
    # float values far from [0, 1] are told as prediction tells them (super_resolve's warn)
    for index, frame in super_resolve(predictor, scaled, range(len(scaled)), frames, request.seed,
                                      warn=warnings.append):
        means.append(frame.mean)
        stds += [frame.std] if frame.std is not None else []
        if request.check:
            trust = check.check_result(frame.mean, frame.pair, scaled.native(index),
                                       None if size is None else size / predictor.enlargement)
            maps.append(trust.consistency.error_map.float().numpy())
            entries.append(trust.summary())
    info = source.info
    layer = {"source_layer": request.name, "source_dtype": info.dtype, "source_shape": list(info.stored_shape),
             "frames": len(scaled)}
    record = provenance(predictor, layer, PredictOptions(sampling=sampling, seed=request.seed))
    result = _layers(request, means, stds, maps, entries, predictor.enlargement, record, std_content(predictor, sampling))
    result.warnings += warnings
    return result


def run_zip(request: Request, on_tiles) -> Result:
    """The request through a Model Zoo package: its weights, stepped call by call (deterministic: one sample;
    the check's consistency map, without the FRC of two samples); ``on_tiles`` counts network calls."""
    module = load_package(request.model)
    source = layer_input(request)
    count = len(source.frames)
    means, maps = [], []
    for index in range(count):
        frame = source.frames[index]
        output = run_package(module, frame,
                             lambda done, total: on_tiles(index * total + done, count * total))
        means.append(output)
        if request.check:
            widefield = torch.from_numpy(postprocess(preprocess(frame[None]))[0])  # the package's scaling, in [0, 1]
            maps.append(check.redegradation(torch.from_numpy(output), widefield).error_map.float().numpy())
    factor = means[0].shape[-1] // request.data.shape[-1]
    return _layers(request, means, [], maps, [], factor, {"source_layer": request.name, "package": request.model.name})


def run_request(request: Request, on_tiles=lambda done, total: None) -> Result:
    """Run ``request`` (in the worker thread); ``on_tiles(done, total)`` after every network call."""
    if not request.model.exists():
        raise UserError(f"{request.model}: no such checkpoint or package; choose a .pt file, a run folder or a .zip")
    if request.model.suffix.lower() == PACKAGE_SUFFIX:
        return run_zip(request, on_tiles)
    return run_checkpoint(request, on_tiles)
