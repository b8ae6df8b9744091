"""Blocks that Ctrl-C does not cut: a signal arriving inside is delivered when the block ends.

    with deferred_signals():
        store.write(index, frame)   # a chunk and its metadata, written whole

Zarr 3 runs each write as a coroutine on its own event-loop thread and waits for it: a KeyboardInterrupt
landing in that wait leaves the write running (or never scheduled, and asyncio prints "coroutine ... was
never awaited" at exit) after the command has printed its one line. Deferring the signal to the end of the
write keeps both the store and the terminal whole. Outside the main thread (where Python handles no
signals) the block runs as it is.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Run the block with SIGINT and SIGTERM held; those that arrived go to the previous handlers after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, frame: arrived.append(number)) for sig in DEFERRED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        for sig in dict.fromkeys(arrived):  # each once, in order of arrival
            signal.raise_signal(sig)
