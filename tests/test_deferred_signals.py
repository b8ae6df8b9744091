"""A signal inside a deferred block reaches the handler in place before it, once, after the block."""

import os
import signal
import threading

import pytest

from experiments.integrity.deferred_signals import deferred_signals


def test_a_signal_inside_the_block_reaches_the_previous_handler_after_it():
    received: list[tuple[int, bool]] = []
    finished = False

    def handler(number, frame):
        received.append((number, finished))

    before = signal.signal(signal.SIGTERM, handler)
    try:
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert received == []
            finished = True
        assert received == [(signal.SIGTERM, True)]  # once, after the block's last statement
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_ctrl_c_inside_raises_keyboard_interrupt_after_the_block_and_an_error_passes_through():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            done.append(True)
    assert done == [True] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(ValueError):
        with deferred_signals():
            raise ValueError("the block's own failure")


def test_outside_the_main_thread_the_block_runs_as_it_is():
    handlers = []

    def worker():
        with deferred_signals():
            handlers.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert handlers == [signal.default_int_handler]
