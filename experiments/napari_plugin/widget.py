"""A napari dock widget: super-resolve an image layer with a checkpoint or a Model Zoo package.

Plugins > Super-resolve (Diffusion super-resolution) docks it. Pick a model (a ``.pt`` checkpoint, a run
folder, or a Model Zoo ``.zip`` from ``experiments.export``) and an image layer (2-D, or a stack: every
axis before y, x is a stack of frames), then Run. The work runs in a worker thread (the viewer stays live)
with a progress bar; Cancel stops it within one network call and adds nothing. The results come back as layers on the input's physical
grid: the output (the mean of the samples), its per-pixel std (several samples) and, with Check, the
re-degradation consistency map (:mod:`experiments.trust.check`), whose numbers go in the output
layer's metadata. Nothing is written to disk; save the layers from napari (File > Save Selected Layers).

The route is prediction's own (:mod:`experiments.napari_plugin.layer_run`, the Qt-free part): the same seed and
settings give the numbers ``experiments.predict`` writes for the same frames.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ddpm import SAMPLERS
from ddpm.settings import SEEDS, UserError
from experiments.command import one_line
from experiments.config.schema import SamplingConfig
from experiments.image_io.ome_zarr import UNITS_UM
from experiments.inference.sampling import PREDICTION_SAMPLING
from experiments.napari_plugin.image_files import file_pixel_size
from experiments.napari_plugin.layer_run import AUTO, MAX_SAMPLES, MAX_STEPS, Cancelled, Request, Result, run_request
from napari.layers import Image
from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                            QProgressBar, QPushButton, QSpinBox, QWidget)


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
        self.sampler.addItems([AUTO, *SAMPLERS])  # auto: the model's own, as predict without --sampler
        self.sampler.setCurrentText(AUTO)
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
        self.steps.setEnabled(sampler != AUTO and "sampling_steps" in SamplingConfig(sampler=sampler).sampler_options())

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
        warnings = (text[0].upper() + text[1:] + "." for text in result.warnings)
        self.status.setText(" ".join([f"Done: added {added}.", *warnings]))

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

