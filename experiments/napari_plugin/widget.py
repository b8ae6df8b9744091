"""A napari dock widget: super-resolve an image layer with a checkpoint or a Model Zoo package.

Plugins > Super-resolve (Diffusion super-resolution) docks it. Pick a model (a ``.pt`` checkpoint, a run
folder, or a Model Zoo ``.zip`` from ``experiments.export``) and an image layer (2-D, or a stack: every
axis before y, x is a stack of frames), then Run. The work runs in a worker thread (the viewer stays live)
with a progress bar; Cancel stops it within one network call and adds nothing. The results come back as layers on the input's physical
grid: the output (the mean of the samples), its per-pixel std (several samples) and, with Check, the
re-degradation consistency map (:mod:`experiments.trust.check`), whose numbers go in the output
layer's metadata. Nothing is written to disk; save the layers from napari (File > Save Selected Layers).

The route is prediction's own (:func:`experiments.inference.frames.super_resolve`): the same seed and
settings give the numbers ``experiments.predict`` writes for the same frames.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm import SAMPLERS
from ddpm.settings import SEEDS, UserError
from experiments.command import one_line
from experiments.config.schema import SamplingConfig
from experiments.image_io.images import SUPPORTED_DTYPES, FrameInfo
from experiments.data.normalization import unit_divisor
from experiments.image_io.ome_tiff import valid_pixel_size
from experiments.image_io.ome_zarr import UNITS_UM, stack_position
from experiments.image_io.tif_io import InputImage
from experiments.trust import check
from experiments.inference.frames import PAIR, ScaledInput, super_resolve
from experiments.inference.predictor import FrameRequest
from experiments.inference.loading import load_for_inference
from experiments.inference.prediction import PredictOptions, pixel_size_warning, provenance
from experiments.inference.package import load_package, postprocess, preprocess, run_package
from experiments.inference.sampling import PREDICTION_SAMPLING, prediction_sampling, sampling_from_flags
from experiments.napari_plugin.image_files import file_pixel_size
from napari.layers import Image
from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                            QProgressBar, QPushButton, QSpinBox, QWidget)

PACKAGE_SUFFIX = ".zip"
MAX_SAMPLES = 64
MAX_STEPS = 2000


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
    sampler: str = PREDICTION_SAMPLING.sampler
    steps: int = PREDICTION_SAMPLING.sampling_steps
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


def input_warnings(request: Request, predictor, scaled: ScaledInput) -> list[str]:
    """What prediction would warn about this input (:func:`~experiments.inference.prediction.pixel_size_warning`,
    in the widget's terms): a pixel size far from the training inputs' (or none known), float values far from
    [0, 1] (the first frame's)."""
    found = [pixel_size_warning(f"layer {request.name!r}", scaled.source.info.pixel_size_um, "its scale", False,
                                predictor, stating="the layer's scale")]
    problem = scaled.range_problem(0)
    found.append(f"warning: {problem}; rescale the layer to [0, 1] for meaningful output" if problem else None)
    return [text for text in found if text]


def _layers(request: Request, means: list, stds: list, maps: list, entries: list, factor: int,
            settings: dict) -> Result:
    grid = output_grid(request, factor)
    metadata = {"model": str(request.model), **settings}
    if entries:
        metadata["check"] = entries
    result = Result([(_stacked(means, request), {"name": f"{request.name} SR", "metadata": metadata, **grid})])
    if stds:
        result.layers.append((_stacked(stds, request), {"name": f"{request.name} SR std", "colormap": "magma", **grid}))
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
    takes_steps = "sampling_steps" in SamplingConfig(sampler=request.sampler).sampler_options()
    sampling = sampling_from_flags(base, steps, sampler=request.sampler, samples=request.samples,
                                   sampling_steps=request.steps if takes_steps else None)
    source = layer_input(request)
    size = source.info.pixel_size_um
    scaled = ScaledInput(source, predictor.config.data.normalization)
    means, stds, maps, entries = [], [], [], []
    frames = FrameRequest(sampling, keep=PAIR if request.check else 0, on_tiles=on_tiles)
    for index, frame in super_resolve(predictor, scaled, range(len(scaled)), frames, request.seed):
        means.append(frame.mean)
        stds += [frame.std] if frame.std is not None else []
        if request.check:
            trust = check.check_result(frame.mean, frame.pair, scaled.native(index),
                                       None if size is None else size / predictor.scale)
            maps.append(trust.consistency.error_map.float().numpy())
            entries.append(trust.summary())
    info = source.info
    layer = {"source_layer": request.name, "source_dtype": info.dtype, "source_shape": list(info.stored_shape),
             "frames": len(scaled)}
    record = provenance(predictor, layer, PredictOptions(sampling=sampling, seed=request.seed))
    result = _layers(request, means, stds, maps, entries, predictor.scale, record)
    result.warnings += input_warnings(request, predictor, scaled)
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


class Progress(QObject):
    """Carries the worker thread's progress to the widget's thread (a queued signal)."""

    changed = Signal(int, int)

class SuperResolveWidget(QWidget):
    """The dock widget (see the module's docstring); ``viewer`` is the napari viewer it acts on."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer, self.worker, self._cancel = napari_viewer, None, threading.Event()
        self.model = QLineEdit(placeholderText="checkpoint .pt, run folder or Model Zoo .zip")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        chooser = QHBoxLayout()
        chooser.addWidget(self.model)
        chooser.addWidget(browse)
        self.layer = QComboBox()
        self.sampler = QComboBox()
        self.sampler.addItems([name for name in SAMPLERS])
        self.sampler.setCurrentText(PREDICTION_SAMPLING.sampler)
        self.steps = self._spin(1, MAX_STEPS, PREDICTION_SAMPLING.sampling_steps)
        self.samples = self._spin(1, MAX_SAMPLES, 1)
        self.seed = self._spin(SEEDS.low, min(int(SEEDS.high), 2**31 - 1), 0)
        self.check = QCheckBox("consistency map and FRC (2 extra samples)")
        self.run_button, self.cancel_button = QPushButton("Run"), QPushButton("Cancel")
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("Choose a model and an image layer, then Run.")
        self.status.setWordWrap(True)
        form = QFormLayout(self)
        for label, widget in (("Model", chooser), ("Image", self.layer), ("Sampler", self.sampler),
                              ("Steps", self.steps), ("Samples", self.samples), ("Seed", self.seed),
                              ("Check", self.check)):
            form.addRow(label, widget)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        form.addRow(self.progress)
        form.addRow(self.status)
        self._progress = Progress()
        self._progress.changed.connect(self._show_progress)
        self.sampler.currentTextChanged.connect(self._sampler_changed)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self._refresh_layers()
        self._sampler_changed(self.sampler.currentText())

    @staticmethod
    def _spin(low: int, high: int, value: int) -> QSpinBox:
        box = QSpinBox()
        box.setRange(int(low), int(high))
        box.setValue(value)
        return box

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint or Model Zoo package", "",
                                              "Models (*.pt *.zip);;All files (*)")
        if path:
            self.model.setText(path)

    def _refresh_layers(self, *_) -> None:
        current = self.layer.currentText()
        self.layer.clear()
        self.layer.addItems([layer.name for layer in self.viewer.layers if isinstance(layer, Image)
                             and not layer.rgb])
        if current:
            self.layer.setCurrentText(current)

    def _sampler_changed(self, sampler: str) -> None:
        self.steps.setEnabled("sampling_steps" in SamplingConfig(sampler=sampler).sampler_options())

    def request(self) -> Request:
        name = self.layer.currentText()
        if not self.model.text().strip():
            raise UserError("choose a model: a checkpoint .pt, a run folder or a Model Zoo .zip")
        if not name:
            raise UserError("no image layer: open or add a greyscale image first")
        layer = self.viewer.layers[name]
        units = tuple(str(unit) for unit in layer.units)
        file_pixel_um = None
        if units[-1] not in UNITS_UM:  # napari's own TIF reader leaves the pixel size out: ask the file
            try:
                file_pixel_um = file_pixel_size(layer.source.path)
            except UserError:  # the pixels are in the layer already; a damaged header only loses the size
                file_pixel_um = None
        return Request(model=Path(self.model.text().strip()), name=name, data=layer.data,
                       scale=tuple(layer.scale), translate=tuple(layer.translate), units=units,
                       file_pixel_um=file_pixel_um, sampler=self.sampler.currentText(), steps=self.steps.value(),
                       samples=self.samples.value(), check=self.check.isChecked(), seed=self.seed.value())

    def run(self) -> None:
        """Start a run in a worker thread (the button)."""
        if self.running:
            return
        try:
            request = self.request()
        except UserError as error:
            self.status.setText(f"error: {one_line(error)}")
            return
        self._cancel.clear()
        # Errors are shown in the widget as one line (_failed), not re-raised as a traceback.
        self.worker = create_worker(run_request, request, self._on_tiles, _start_thread=False,
                                    _ignore_errors=True)
        self.worker.returned.connect(self._add_layers)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(f"Running on {request.name}…")
        self.worker.start()

    def cancel(self) -> None:
        """Stop the run at its next network call (the button)."""
        self._cancel.set()
        self.status.setText("Cancelling…")

    def _on_tiles(self, done: int, total: int) -> None:  # in the worker thread
        if self._cancel.is_set():
            raise Cancelled
        self._progress.changed.emit(done, total)

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)

    def _add_layers(self, result: Result) -> None:
        for data, options in result.layers:
            self.viewer.add_image(data, **options)
        added = ", ".join(options["name"] for _, options in result.layers)
        self.status.setText(" ".join([f"Done: added {added}.", *(text[0].upper() + text[1:] + "." for text in result.warnings)]))

    def _failed(self, error: Exception) -> None:
        if isinstance(error, Cancelled):
            self.status.setText("Cancelled: nothing was added.")
        elif isinstance(error, UserError):
            self.status.setText(f"error: {one_line(error)}")
        else:  # a bug or a broken install: its type and message, still one line (the traceback goes nowhere)
            self.status.setText(f"failed: {type(error).__name__}: {one_line(error)}")

    def _finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

