"""The one output guard: no output replaces an input, another output or an existing file unasked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ddpm.settings import UserError

ZARR_SUFFIX = ".zarr"  # a Zarr store, e.g. an OME-Zarr image: a folder
# Outputs that are folders by their format (OME-Zarr stores); every other output is a file.
FOLDER_SUFFIXES = (ZARR_SUFFIX,)


class OverwriteError(UserError):
    """An output would replace an input, an existing file not asked to be replaced, or another output."""


def _inside(path: Path, folder: Path) -> bool:
    return folder in path.parents


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
