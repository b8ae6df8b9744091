"""The one atomic file writer: a crash leaves the old file or the new one, never a torn one.

Used by the checkpoints (:mod:`experiments.checkpoint`), the prediction TIFs
(:mod:`experiments.image_io.tif_io`), the data cache (:mod:`experiments.pairs.cache`) and every JSON file
(:func:`experiments.integrity.json_files.write_json`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
