"""Guards on what the project writes and reads: files replaced atomically, arrays checked for NaN and inf.

Shared by the checkpoints (:mod:`experiments.training.checkpoint`), the prediction TIFs
(:mod:`experiments.data.tif_io`) and the data cache (:mod:`experiments.data.cache`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

TEMPORARY_SUFFIX = ".tmp"


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
