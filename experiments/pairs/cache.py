"""On-disk cache of a folder of TIFs as one memory-mapped float32 array [N, H, W] in the model range.

Reading 82,080 small TIFs every epoch would starve a GPU; a ``.npy`` file read through ``np.load(...,
mmap_mode="r")`` is served from the page cache at memory speed. One file per folder (``training_wf``,
``test_gt``, ...), so the test targets are cached once for all nine levels.

A cache file's name holds a fingerprint of everything its content depends on: the folder, the file
names, sizes and modification times, the normalisation settings and this module's format version.
Any change gives a new name, so a stale file is never read; it is deleted once the new one is written.
Files are written under a temporary name and renamed, so an interrupted build leaves no half-written cache.
"""

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from experiments.data.layout import DatasetError
from experiments.integrity.atomic import atomic_path

CACHE_DIRNAME = ".cache"
FORMAT_VERSION = 1


def folder_fingerprint(paths: Sequence[Path], settings: dict) -> str:
    """Hex digest of the files' names, sizes and mtimes (ns), their folder, and ``settings`` (JSON-able)."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": FORMAT_VERSION, "settings": settings}, sort_keys=True).encode())
    digest.update(str(Path(paths[0]).parent.resolve()).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"\0{Path(path).name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def cache_path(cache_dir: Path, tag: str, fingerprint: str) -> Path:
    """``<cache_dir>/<tag>-<first 20 hex digits of fingerprint>.npy``."""
    return cache_dir / f"{tag}-{fingerprint[:20]}.npy"


def _remove_stale(cache_dir: Path, tag: str, keep: Path) -> None:
    for old in cache_dir.glob(f"{tag}-*.npy"):
        if old != keep:
            old.unlink(missing_ok=True)


def build_cache(
    target: Path,
    paths: Sequence[Path],
    shape: tuple[int, int],
    read: Callable[[Path], np.ndarray],
    description: str = "",
) -> None:
    """Write ``read(path)`` for every path into the ``.npy`` file ``target`` as float32 [N, *shape].

    Each read image must have ``shape`` (an error names the file otherwise). Written to a temporary
    file, then renamed. (Reading in threads was measured slower than this plain loop: decoding holds the GIL.)
    """
    with atomic_path(target) as temporary:
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=(len(paths), *shape))
        progress = tqdm(paths, desc=description or f"caching {target.name}", disable=None, leave=False)
        for index, path in enumerate(progress):
            image = read(path)
            if image.shape != shape:
                raise DatasetError(
                    f"{path}: shape {image.shape} differs from {shape}, the shape of the other images; "
                    "every image of a data set must have the same size"
                )
            array[index] = image
        array.flush()
        del array  # close the map before the rename (needed on Windows)


def ensure_cache(
    cache_dir: Path,
    tag: str,
    paths: Sequence[Path],
    settings: dict,
    shape: Callable[[], tuple[int, int]],
    read: Callable[[Path], np.ndarray],
) -> Path:
    """Path of an up-to-date cache of ``paths`` under ``cache_dir``, building it when missing.

    ``shape`` is called (and may raise on inconsistent files) only when a build is needed.
    """
    target = cache_path(cache_dir, tag, folder_fingerprint(paths, settings))
    if not target.exists():
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DatasetError(
                f"cannot create the cache folder {cache_dir} ({error}); pass cache=<a writable folder> "
                "or cache=False to read the TIFs directly"
            ) from error
        build_cache(target, paths, shape(), read, description=f"caching {tag}")
        _remove_stale(cache_dir, tag, keep=target)
    return target
