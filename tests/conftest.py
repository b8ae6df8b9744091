"""Shared test set-up: hypothesis settings for torch code and a pinned global seed."""

import os
import shutil
import subprocess
import time
from pathlib import Path

# Qt without a screen, for the napari widget's tests (set before pytest-qt makes the QApplication).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch
from hypothesis import HealthCheck, settings

# torch calls have unpredictable first-call latency, so per-example deadlines only produce flakes.
settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _pin_seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def virtual_display():
    """An X display for OpenGL (napari's canvas draws with it even offscreen): the user's own when DISPLAY is
    set, else a private Xvfb (Debian's xvfb, which make install adds) for the session."""
    if os.environ.get("DISPLAY"):
        return os.environ["DISPLAY"]
    if shutil.which("Xvfb") is None:
        pytest.skip("no X display and no Xvfb: install Debian's xvfb (make install does) or run under a desktop")
    number = next(n for n in range(99, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    # Qt keeps its connection until the process exits, after every fixture: a watcher ends Xvfb once this
    # process is gone (ending it earlier would make Qt's exit fail on the lost connection).
    watcher = (f"Xvfb :{number} -screen 0 1600x1200x24 -nolisten tcp & server=$!; "
               f"while kill -0 {os.getpid()} 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 1; done; "
               "kill $server 2>/dev/null")
    server = subprocess.Popen(["sh", "-c", watcher], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"Xvfb :{number} did not start")
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{number}"
    return os.environ["DISPLAY"]


@pytest.fixture(scope="session")
def qapp_args(virtual_display, pytestconfig):
    """pytest-qt's QApplication arguments (its default), made after :func:`virtual_display`: the application
    must find the X display when it starts, for OpenGL.

    torch._dynamo is imported first: it loads triton, whose own LLVM crashes the process (a segmentation
    fault) when it is loaded after Mesa's software OpenGL has brought in the system's LLVM, as a later
    test's optimizer would do."""
    import torch._dynamo  # noqa: F401

    return [pytestconfig.getini("qt_qapp_name")]
