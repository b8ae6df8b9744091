"""Where prediction puts a result, frame by frame: an OME-TIFF written whole, or an OME-Zarr store written as
each frame finishes; both resumable.

    output = open_output(path, count, stack, plane, pixel_size_um, metadata, resume=False)
    for index in sorted(set(range(count)) - output.finished()):
        output.write(index, frame, check_entry)
    output.close()

A TIF is written once, atomically, when :meth:`close` is called after the last frame: an interrupted run
leaves none. A store (:class:`experiments.image_io.ome_zarr.FrameStore`) gets each frame's chunk at once, so
an interrupted run keeps its finished frames. Resumed (``resume=True``), an existing output written with
the same settings (its metadata, ``metadata`` but for the per-frame ``"check"`` entries) gives back its
finished frames and their check entries: all of a TIF's, the written ones of a store's. One written with
other settings is an error naming the first setting that differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ddpm.settings import UserError
from experiments.image_io.images import InputError
from experiments.image_io.ome_zarr import OME_ZARR_SUFFIX, FrameStore, StackAxis
from experiments.image_io.tif_io import read_frames, read_metadata, write_frames

OutputFormat = Literal["tif", "ome-zarr"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
EXTENSIONS = {"tif": ".tif", "ome-zarr": OME_ZARR_SUFFIX}
CHECK_KEY = "check"  # the per-frame check entries in the metadata (None for a frame not yet checked)


class ResumeError(UserError):
    """An output to resume was written by a run with other settings."""


def _compare(path: Path, stored: dict, expected: dict) -> None:
    for key in sorted((set(stored) | set(expected)) - {CHECK_KEY}):
        if stored.get(key) != expected.get(key):
            raise ResumeError(
                f"{path}: was written with {key} {stored.get(key)!r}, not {expected.get(key)!r}; --resume only "
                "continues a run with the same settings: pass --overwrite to replace it, or choose another --output"
            )


class TifOutput:
    """An OME-TIFF of ``count`` frames, written by :meth:`close` (see the module's docstring)."""

    def __init__(self, path: Path, count: int, pixel_size_um: float | None, metadata: dict, resume: bool):
        self.path, self.pixel_size_um, self.metadata = path, pixel_size_um, metadata
        self.frames: list[np.ndarray | None] = [None] * count
        self.checks: list[dict | None] = [None] * count
        self.changed = False
        if resume and path.exists():
            try:
                stored = read_metadata(path)
                _compare(path, stored, metadata)
                self.frames = list(read_frames(path)[0])
            except InputError as error:  # damaged, or not ours: the reader's line, and what --resume needs
                raise InputError(f"{error}; as an output to resume: pass --overwrite to predict it again") from error
            self.checks = stored.get(CHECK_KEY) or self.checks

    def finished(self) -> set[int]:
        return {index for index, frame in enumerate(self.frames) if frame is not None}

    def write(self, index: int, frame: np.ndarray, check: dict | None = None) -> None:
        self.frames[index], self.checks[index], self.changed = frame, check, True

    def read(self, index: int) -> np.ndarray:
        return self.frames[index]

    def check_entry(self, index: int) -> dict | None:
        return self.checks[index]

    def close(self) -> None:
        if self.changed:
            metadata = {**self.metadata, CHECK_KEY: self.checks} if any(self.checks) else self.metadata
            write_frames(self.path, np.stack(self.frames), metadata, self.pixel_size_um)


class ZarrOutput:
    """An OME-Zarr store of ``count`` frames, each written at once (see the module's docstring). A new store
    is made when its first frame comes, so an input refused before any frame leaves none."""

    def __init__(self, path: Path, count: int, stack: tuple[StackAxis, ...], plane: tuple[int, int],
                 pixel_size_um: float | None, metadata: dict, resume: bool):
        self.path, self.store = path, None
        self._new = (stack, plane, pixel_size_um, metadata)
        self.checks: list[dict | None] = [None] * count
        if resume and path.exists():
            self.store = FrameStore.open(path)
            _compare(path, self.store.metadata, metadata)
            self.checks = self.store.metadata.get(CHECK_KEY) or self.checks

    def finished(self) -> set[int]:
        return set() if self.store is None else self.store.finished()

    def write(self, index: int, frame: np.ndarray, check: dict | None = None) -> None:
        if self.store is None:
            self.store = FrameStore.create(self.path, *self._new)
        self.store.write(index, frame)
        if check is not None:  # after the frame: a frame counts as written only once its chunk exists
            self.checks[index] = check
            self.store.update_metadata(**{CHECK_KEY: self.checks})

    def read(self, index: int) -> np.ndarray:
        return self.store.read(index)

    def check_entry(self, index: int) -> dict | None:
        return self.checks[index]

    def close(self) -> None:
        """Nothing is left to write: every frame went to the store as it finished."""


FrameOutput = TifOutput | ZarrOutput


def open_output(path: Path, count: int, stack: tuple[StackAxis, ...], plane: tuple[int, int],
                pixel_size_um: float | None, metadata: dict, resume: bool) -> FrameOutput:
    """The output at ``path``, a TIF or a store by its extension (:data:`EXTENSIONS`)."""
    if path.name.lower().endswith(EXTENSIONS["ome-zarr"]):
        return ZarrOutput(path, count, stack, plane, pixel_size_um, metadata, resume)
    return TifOutput(path, count, pixel_size_um, metadata, resume)


def finished_everywhere(outputs: Sequence[FrameOutput]) -> set[int]:
    """The frames every output holds: those a resumed run skips."""
    return set.intersection(*(output.finished() for output in outputs))
