"""The documentation's screenshot of the widget, from a headless napari viewer on a real widefield image.

    xvfb-run -s "-screen 0 1600x1200x24" env QT_QPA_PLATFORM=xcb python -m experiments.napari_plugin.screenshot

Opens the shipped real widefield crop (BioSR microtubules, 62.6 nm pixels) at its physical scale, docks the
widget, runs the shipped native-task model with 8 samples and the check through the widget's own Run button
and worker thread, shows input, output, std and consistency in napari's grid and saves the window. The
canvas is drawn with OpenGL, which Qt's offscreen platform does not give a widget (the canvas would be
blank): run it on a screen, or on Xvfb with Qt's xcb platform as above (Debian: xvfb, libxcb-cursor0).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from experiments.image_io.images import read_frames
from experiments.napari_plugin.widget import SuperResolveWidget

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "pretrained" / "example_widefield.ome.tif"
MODEL = REPO / "pretrained" / "native" / "model.pt"
TIMEOUT_S = 600


def take(out: Path, samples: int) -> Path:
    frames, info = read_frames(EXAMPLE)
    viewer = napari.Viewer(show=False)
    viewer.window._qt_window.resize(1400, 1000)
    size = info.pixel_size_um
    viewer.add_image(frames[0], name="widefield", scale=(size, size), units="µm", colormap="gray")
    widget = SuperResolveWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Super-resolve", area="right")
    widget.model.setText(str(MODEL.relative_to(REPO) if Path.cwd() == REPO else MODEL))
    widget.samples.setValue(samples)
    widget.check.setChecked(True)
    widget.run_button.click()
    start = time.monotonic()
    while widget.running:
        QApplication.processEvents()
        time.sleep(0.05)
        if time.monotonic() - start > TIMEOUT_S:
            raise TimeoutError(f"the widget's run took over {TIMEOUT_S} s")
    if not widget.status.text().startswith("Done"):
        raise RuntimeError(widget.status.text())
    viewer.grid.enabled = True
    viewer.grid.shape = (2, 2)
    viewer.layers.selection = {viewer.layers["widefield SR"]}
    viewer.reset_view()
    QApplication.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    viewer.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.napari_plugin.screenshot", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "napari_widget.png")
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args(argv)
    print(take(args.out, args.samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
