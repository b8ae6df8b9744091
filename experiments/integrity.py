"""Guards on what the project writes and reads: no output replaces an input or an existing file unasked
(:func:`check_outputs`), files replaced atomically, arrays checked for NaN and inf, JSON kept strict.

Shared by the checkpoints (:mod:`experiments.checkpoint`), the prediction TIFs
(:mod:`experiments.image_io.tif_io`), the data cache (:mod:`experiments.pairs.cache`) and every JSON file
the project writes (:func:`write_json`).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ddpm.settings import UserError

TEMPORARY_SUFFIX = ".tmp"
ZARR_SUFFIX = ".zarr"  # a Zarr store, e.g. an OME-Zarr image: a folder
# Outputs that are folders by their format (OME-Zarr stores); every other output is a file.
FOLDER_SUFFIXES = (ZARR_SUFFIX,)


class OverwriteError(UserError):
    """An output would replace an input, an existing file not asked to be replaced, or another output."""


def _inside(path: Path, folder: Path) -> bool:
    return folder in path.parents


def portable_path(path: str | Path) -> str:
    """``path`` as a record states it: relative to the working directory when it lies inside it (a run folder
    or a checkpoint of the checkout), else as given, so that records written and committed in a checkout hold
    no path of the machine that wrote them."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def check_outputs(outputs: Sequence[str | Path], inputs: Sequence[str | Path] = (), overwrite: bool = False,
                  flag: str = "--overwrite") -> None:
    """Refuse, before anything is written, every output path that would destroy something.

    Raises :class:`OverwriteError` naming the output when it resolves to one of ``inputs`` (files or
    folders: a checkpoint, a test image, a data root, input TIFs) or lies inside an input folder, when two
    outputs are one file, when it is an existing folder where a file is to be written (an output ending in
    :data:`FOLDER_SUFFIXES` is a folder, an OME-Zarr store), or when it exists and ``overwrite`` is false
    (``flag`` is the command's option that allows it). Paths are compared after resolving symlinks and
    ``..``, so ``out/../cells/a.tif`` is caught too.
    """
    resolved_inputs = {Path(p).resolve(): Path(p) for p in inputs}
    seen: dict[Path, Path] = {}
    for output in map(Path, outputs):
        resolved = output.resolve()
        if resolved in resolved_inputs:
            raise OverwriteError(f"{output}: this output would overwrite the input {resolved_inputs[resolved]}; "
                                 "choose another output path (inputs are never replaced)")
        folder = next((given for path, given in resolved_inputs.items() if _inside(resolved, path)), None)
        if folder is not None:
            raise OverwriteError(f"{output}: this output lies inside the input folder {folder}; "
                                 "choose an output path outside it")
        if resolved in seen:
            raise OverwriteError(f"{output}: two outputs would be written to the same file (also {seen[resolved]}); "
                                 "inputs with the same name in different folders need separate output folders")
        seen[resolved] = output
        if output.is_dir() and output.suffix.lower() not in FOLDER_SUFFIXES:
            raise OverwriteError(f"{output}: is a folder, where a file is to be written; choose a file path")
        if output.exists() and not overwrite:
            raise OverwriteError(f"{output}: exists; pass {flag} to replace it, or choose another output path")


def check_output_folder(folder: str | Path, inputs: Sequence[str | Path] = ()) -> None:
    """Refuse an output folder that is an existing file, one of ``inputs`` or inside an input folder
    (:class:`OverwriteError` naming it); the files to be written in it go through :func:`check_outputs`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OverwriteError(f"{folder}: is a file, where a folder is to be written; choose a folder path")
    resolved = folder.resolve()
    for given in map(Path, inputs):
        path = given.resolve()
        if resolved == path or (path.is_dir() and _inside(resolved, path)):
            raise OverwriteError(f"{folder}: this output folder is, or lies inside, the input {given}; "
                                 "choose a folder outside it")


def temporaries_of(path: Path) -> list[Path]:
    """The temporary files :func:`atomic_path` makes for ``path`` (left behind only by a killed writer)."""
    return sorted(path.parent.glob(f".{path.name}.*{TEMPORARY_SUFFIX}"))


@contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block ends normally,
    deleted when it raises.

    A crash at any moment leaves either the old ``path`` or the new one, never a torn file. The name is
    hidden and unique (``.<name>.<random>.tmp``), so concurrent writers never share it; the writer opens
    it as any new file, so it gets the usual mode (0666 less the umask; ``tempfile.mkstemp`` would force
    0600). ``durable`` flushes the file to disk before the rename (for checkpoints, which a power loss
    must not take). Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMPORARY_SUFFIX}")
    try:
        yield temporary
        if durable:
            handle = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def count_non_finite(values: np.ndarray | torch.Tensor) -> int:
    """How many entries of a floating-point array or tensor are NaN or +-inf (0 for integer types)."""
    if isinstance(values, torch.Tensor):
        return int(values.numel() - torch.isfinite(values).sum()) if values.is_floating_point() else 0
    if not np.issubdtype(values.dtype, np.floating):
        return 0
    return int(values.size - np.count_nonzero(np.isfinite(values)))


NOTE_SUFFIX = "_note"


def strict_json(data):
    """``data`` with every NaN or infinite float replaced by ``None`` and, inside an object, a sibling
    ``"<key>_note"`` saying which value was undefined: JSON has no NaN or infinity (``json.dumps`` would
    write the invalid tokens ``NaN`` and ``Infinity``). A producer that knows why a measure is undefined
    writes ``None`` and its own note; this catches the rest."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        cleaned = {}
        for key, value in data.items():
            cleaned[key] = strict_json(value)
            if isinstance(value, float) and not math.isfinite(value):
                cleaned.setdefault(f"{key}{NOTE_SUFFIX}", f"undefined (the measure came out as {value})")
        return cleaned
    if isinstance(data, (list, tuple)):
        return [strict_json(value) for value in data]
    return data


def json_text(data, indent: int | None = 2) -> str:
    """Strict JSON text of ``data`` (:func:`strict_json`), ending in a newline when indented."""
    text = json.dumps(strict_json(data), indent=indent, allow_nan=False)
    return text + "\n" if indent is not None else text


def write_json(path: str | Path, data, indent: int = 2) -> Path:
    """Write ``data`` as strict JSON (:func:`json_text`) to ``path``, replaced atomically (:func:`atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(json_text(data, indent), encoding="utf-8")
    return path
