"""The napari widget driven through napari's own viewer fixture, headless (QT_QPA_PLATFORM=offscreen in
conftest): a run on a real widefield crop adds the output, std and consistency layers on the input's physical
grid with prediction's own numbers; Cancel stops it within one network call and adds nothing; a bad
checkpoint gives one clear line in the widget, no traceback, and writes nothing; a Model Zoo package gives
the image ``predict --hashed-noise`` gives."""

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from qtpy.QtCore import Qt

from experiments.image_io.images import read_frames
from experiments.inference.loading import load_for_inference
from experiments.inference.package import WEIGHTS_NAME, run_package
from experiments.inference.scripted_sampler import script_sampler
from experiments.napari_plugin.widget import SuperResolveWidget
from tests.test_predict import run_cli, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
PIXEL_UM = 0.0626
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("run") / "last.pt")


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """A real widefield crop (BioSR microtubules, the shipped example, in [0, 1]) as a camera's uint16."""
    frame = read_frames(REPO / "pretrained" / "example_widefield.ome.tif")[0][0]
    return np.round(frame[100:140, 100:148] * 65535).astype(np.uint16)


@pytest.fixture
def widget_on(make_napari_viewer, qtbot):
    def make(data: np.ndarray, model: Path, **settings):
        viewer = make_napari_viewer()
        viewer.add_image(data, name="cell", scale=(PIXEL_UM, PIXEL_UM), units="µm")
        widget = SuperResolveWidget(viewer)
        qtbot.addWidget(widget)
        widget.model.setText(str(model))
        for name, value in settings.items():
            control = getattr(widget, name)
            control.setChecked(value) if isinstance(value, bool) else \
                control.setCurrentText(value) if isinstance(value, str) else control.setValue(value)
        return viewer, widget
    return make


def run_and_wait(qtbot, widget) -> None:
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)


def test_a_run_adds_output_std_and_consistency_layers_with_predictions_numbers(widget_on, qtbot, checkpoint, crop,
                                                                              capsys, tmp_path):
    viewer, widget = widget_on(crop, checkpoint, samples=2, check=True, sampler="ddim", steps=3)
    run_and_wait(qtbot, widget)
    assert widget.status.text().startswith("Done") and "Warning" not in widget.status.text(), widget.status.text()
    assert [layer.name for layer in viewer.layers] == ["cell", "cell SR", "cell SR std", "cell SR consistency"]
    output, std, consistency = (viewer.layers[name] for name in ("cell SR", "cell SR std", "cell SR consistency"))
    for layer in (output, std, consistency):  # a tutorial-task model: the input's grid, in µm
        np.testing.assert_allclose(layer.scale, (PIXEL_UM, PIXEL_UM))
        assert str(layer.units[-1]) == "micrometer" and layer.data.shape == crop.shape
    entry = output.metadata["check"][0]
    assert np.isfinite(entry["rsp"]) and entry["frc_resolution_nm"] == pytest.approx(PIXEL_UM * 1000 * entry["frc_resolution_px"])
    assert widget.progress.value() == widget.progress.maximum() > 0

    source = tmp_path / "cell.tif"
    tifffile.imwrite(source, crop)  # the same pixels through the command, with the widget's tiles (training side)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", tmp_path / "out",
                        "--samples", 2, "--std", "--check", "--sampler", "ddim", "--sampling-steps", 3,
                        "--pixel-size", PIXEL_UM, "--quiet", "--device", "cpu")
    assert code == 0, err
    np.testing.assert_array_equal(output.data, tifffile.imread(tmp_path / "out" / "cell_sr.tif"))
    np.testing.assert_array_equal(std.data, tifffile.imread(tmp_path / "out" / "cell_sr_std.tif"))
    np.testing.assert_array_equal(consistency.data, tifffile.imread(tmp_path / "out" / "cell_sr_consistency.tif"))


def write_package(checkpoint: Path, path: Path, steps: int, seed: int) -> Path:
    """A minimal package of the checkpoint: the zip with the scripted DDIM sampler's weights, all the widget reads."""
    predictor = load_for_inference(checkpoint, "cpu")
    module = script_sampler(predictor.model, predictor.diffusion, "ddim", steps, seed, predictor.layout())
    weights = io.BytesIO()
    torch.jit.save(module, weights)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(WEIGHTS_NAME, weights.getvalue())
    return path


@pytest.mark.parametrize("kind", ["checkpoint", "package"])
def test_cancel_stops_within_one_network_call_and_adds_nothing(widget_on, qtbot, checkpoint, crop, tmp_path, kind):
    stack = np.stack([crop] * 6)  # six frames: far more network calls than one
    if kind == "checkpoint":
        viewer, widget = widget_on(stack, checkpoint, samples=2, sampler="ddim", steps=10)
    else:  # the package's weights are stepped call by call
        viewer, widget = widget_on(stack, write_package(checkpoint, tmp_path / "model.zip", 10, 0))
    calls = []
    original = widget._on_tiles

    def counting(done, total):
        calls.append((done, total, widget._cancel.is_set()))
        original(done, total)

    widget._on_tiles = counting
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.progress.value() > 0, timeout=WAIT_MS)
    qtbot.mouseClick(widget.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert widget.status.text() == "Cancelled: nothing was added."
    assert [layer.name for layer in viewer.layers] == ["cell"]
    after_cancel = [call for call in calls if call[2]]
    assert len(after_cancel) == 1  # the network call running when Cancel came is the last
    assert calls[-1][0] < calls[-1][1]  # stopped before the end
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_a_bad_checkpoint_gives_one_line_in_the_widget_and_writes_nothing(widget_on, qtbot, crop, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    before = sorted(tmp_path.rglob("*"))
    for model, words in ((bad, str(bad)), (tmp_path / "missing.pt", "no such checkpoint"),
                         (tmp_path / "broken.pt.zip", "no such")):
        viewer, widget = widget_on(crop, model)
        run_and_wait(qtbot, widget)
        text = widget.status.text()
        assert text.startswith("error: ") and words in text and "\n" not in text and "Traceback" not in text, text
        assert [layer.name for layer in viewer.layers] == ["cell"]
    assert sorted(tmp_path.rglob("*")) == before


def test_a_model_zoo_package_gives_the_image_predict_hashed_noise_gives(widget_on, qtbot, checkpoint, crop, capsys,
                                                                        tmp_path):
    viewer, widget = widget_on(crop, write_package(checkpoint, tmp_path / "model.zip", 3, 5), check=True)
    run_and_wait(qtbot, widget)
    assert widget.status.text().startswith("Done"), widget.status.text()
    source = tmp_path / "cell.tif"
    tifffile.imwrite(source, crop)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", tmp_path / "out",
                        "--hashed-noise", "--seed", 5, "--sampler", "ddim", "--sampling-steps", 3, "--quiet",
                        "--device", "cpu")
    assert code == 0, err
    np.testing.assert_allclose(viewer.layers["cell SR"].data, tifffile.imread(tmp_path / "out" / "cell_sr.tif"),
                               atol=1e-4)
    assert viewer.layers["cell SR consistency"].data.shape == crop.shape


def test_ome_zarr_opens_at_its_scale_feeds_the_widget_lazily_and_saves_as_ome_zarr(make_napari_viewer, qtbot,
                                                                                   checkpoint, crop, tmp_path):
    """File > Open of a store the reference library wrote, the widget on that lazy layer, File > Save of its
    output: read back by ome-zarr with the pixel size."""
    from tests.test_ome_zarr import read_back, reference_store, space

    stack = np.stack([crop, crop[::-1]])
    store = reference_store(tmp_path / "cells.ome.zarr", stack, [{"name": "t", "type": "time"}, space("y"), space("x")],
                            [1.0, PIXEL_UM, PIXEL_UM])
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(store), plugin="diffusion-sr-microscopy")
    np.testing.assert_allclose(layer.scale, (1.0, PIXEL_UM, PIXEL_UM))
    assert str(layer.units[-1]) == "micrometer" and not isinstance(layer.data, np.ndarray)  # lazy: the zarr array
    widget = SuperResolveWidget(viewer)
    qtbot.addWidget(widget)
    widget.model.setText(str(checkpoint))
    run_and_wait(qtbot, widget)
    assert widget.status.text().startswith("Done"), widget.status.text()
    output = viewer.layers["cells.ome.zarr SR"]
    assert output.data.shape == stack.shape
    saved = tmp_path / "saved.ome.zarr"
    viewer.layers.selection = {output}
    viewer.layers.save(str(saved), selected=True, plugin="diffusion-sr-microscopy")
    data, metadata = read_back(saved)
    np.testing.assert_array_equal(data, output.data)
    assert metadata["coordinateTransformations"][0][0]["scale"] == pytest.approx([1.0, PIXEL_UM, PIXEL_UM])
    assert [axis["name"] for axis in metadata["axes"]] == ["t", "y", "x"]


def test_a_tif_opens_at_its_pixel_size_and_a_layer_in_pixels_takes_its_files(make_napari_viewer, qtbot, checkpoint,
                                                                              crop, tmp_path):
    """napari's own TIF reader leaves the OME pixel size out; this plugin's reader keeps it, and the widget
    reads it from the layer's file when the layer is in pixels (the FRC then in nm)."""
    source = tmp_path / "cell.ome.tif"
    tifffile.imwrite(source, crop, ome=True, metadata={"axes": "YX", "PhysicalSizeX": PIXEL_UM,
                                                       "PhysicalSizeY": PIXEL_UM})
    viewer = make_napari_viewer()
    [ours] = viewer.open(str(source), plugin="diffusion-sr-microscopy")
    np.testing.assert_allclose(ours.scale, (PIXEL_UM, PIXEL_UM))
    assert str(ours.units[-1]) == "micrometer"
    [builtin] = viewer.open(str(source), plugin="napari")
    assert str(builtin.units[-1]) == "pixel"
    widget = SuperResolveWidget(viewer)
    qtbot.addWidget(widget)
    widget.model.setText(str(checkpoint))
    widget.layer.setCurrentText(builtin.name)
    widget.check.setChecked(True)
    run_and_wait(qtbot, widget)
    output = viewer.layers[f"{builtin.name} SR"]
    assert str(output.units[-1]) == "pixel"  # on the layer's own grid, so it overlays it
    entry = output.metadata["check"][0]
    assert entry["frc_resolution_nm"] == pytest.approx(PIXEL_UM * 1000 * entry["frc_resolution_px"])


def test_a_layer_far_from_the_training_pixel_size_is_super_resolved_with_a_warning(widget_on, qtbot, checkpoint,
                                                                                   crop):
    viewer, widget = widget_on(crop, checkpoint)
    viewer.layers["cell"].scale = (0.2, 0.2)  # 200 nm pixels against the training inputs' 62.6 nm
    run_and_wait(qtbot, widget)
    text = widget.status.text()
    assert text.startswith("Done") and "Warning: layer 'cell' has 200.0 nm pixels (its scale)" in text and "62.6 nm" in text, text
    assert "--pixel-size" not in text and "the layer's scale" in text  # the widget's terms, not the command's


def test_a_package_without_the_stepping_parts_runs_whole(tmp_path):
    """Weights exported before start / step existed are one call: run as such, counted as one."""

    class Whole(torch.nn.Module):
        def forward(self, widefield: torch.Tensor) -> torch.Tensor:
            return -widefield

    frame = np.linspace(0, 5, 48, dtype=np.float32).reshape(6, 8)
    calls = []
    output = run_package(torch.jit.script(Whole()), frame, lambda done, total: calls.append((done, total)))
    np.testing.assert_allclose(output, 1 - (frame - frame.min()) / (frame.max() - frame.min()), atol=1e-6)
    assert calls == [(1, 1)]


def test_a_layer_far_from_the_training_range_is_told_as_prediction_tells_it(checkpoint):
    """Float values far from [0, 1] in any frame (here the second) give prediction's own warning, beside the
    pixel-size one (no pixel size known here), through the Qt-free part of the widget."""
    from experiments.napari_plugin.layer_run import Request, run_request

    frames = np.stack([np.full((32, 32), 0.5, np.float32), np.linspace(0, 40, 32 * 32, dtype=np.float32).reshape(32, 32)])
    result = run_request(Request(model=checkpoint, name="hot", data=frames, scale=(1.0, 1.0, 1.0),
                                 translate=(0.0, 0.0, 0.0), units=("pixel", "pixel", "pixel"), sampler="ddim", steps=2))
    assert len(result.warnings) == 2, result.warnings
    assert result.warnings[0].startswith("note: layer 'hot' states no pixel size")
    assert result.warnings[1].startswith("warning: ") and "rescale the image to [0, 1]" in result.warnings[1]


def test_each_model_kind_gets_its_own_sampler_and_messages_name_the_widgets_controls(tmp_path):
    """The widget's default sampler (auto) is the model's own, as predict's without --sampler: a regression
    baseline runs (it failed on the widget's fixed diffusion default before); a choice it cannot take is told
    in the widget's words (Sampler, Samples), never as a command-line flag."""
    from ddpm.settings import UserError
    from training_helpers import make_tiny_data, tiny_config
    from dataclasses import replace as replaced
    from experiments.config.schema import SamplingConfig
    from experiments.napari_plugin.layer_run import AUTO, Request, run_request
    from experiments.training.trainer import Trainer

    root = make_tiny_data(tmp_path / "data")
    config = replaced(tiny_config(root, objective="regression", loss="l1", epochs=1), sampling=SamplingConfig(sampler="regression"))
    Trainer(config, tmp_path / "run", progress=False).fit()
    frame = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    layer = dict(model=tmp_path / "run" / "last.pt", name="cell", data=frame, scale=(PIXEL_UM, PIXEL_UM),
                 translate=(0.0, 0.0), units=("micrometer", "micrometer"))
    result = run_request(Request(**layer))
    assert Request(**layer).sampler == AUTO and result.layers[0][1]["metadata"]["sampler"] == "regression"
    assert 0.0 <= result.layers[0][0].min() and result.layers[0][0].max() <= 1.0
    for options, words in (({"sampler": "dpmpp2m"}, "Sampler dpmpp2m"), ({"samples": 8}, "Samples 8")):
        with pytest.raises(UserError) as refused:
            run_request(Request(**layer, **options))
        assert words in str(refused.value) and "--" not in str(refused.value), str(refused.value)


def test_a_layer_with_nan_is_refused_in_one_line_that_counts_them(checkpoint):
    """A layer holding NaN (napari passes its array as it is, unchecked by a file reader) is told as such, not
    as values "in [nan, nan]"."""
    from ddpm.settings import UserError
    from experiments.napari_plugin.layer_run import Request, run_request

    frame = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    frame[3:5, 7] = np.nan
    with pytest.raises(UserError) as refused:
        run_request(Request(model=checkpoint, name="holes", data=frame, scale=(PIXEL_UM, PIXEL_UM),
                            translate=(0.0, 0.0), units=("micrometer", "micrometer")))
    message = str(refused.value)
    assert "2 NaN or infinite pixel values" in message and "nan" not in message.replace("NaN", ""), message


def test_a_store_with_an_empty_frame_opens_as_the_reference_reader_reads_it(make_napari_viewer, crop, tmp_path):
    """zarr writes no chunk for an all-zero frame; File > Open reads zeros there, as ome-zarr does."""
    from tests.test_ome_zarr import read_back, reference_store, space

    stack = np.stack([crop, np.zeros_like(crop)])
    store = reference_store(tmp_path / "blank.ome.zarr", stack, [{"name": "t", "type": "time"}, space("y"), space("x")],
                            [1.0, PIXEL_UM, PIXEL_UM], chunks=(1, *crop.shape))
    assert (store / "0" / "0").is_dir() and not (store / "0" / "1").exists()  # the empty frame has no chunk
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(store), plugin="diffusion-sr-microscopy")
    np.testing.assert_array_equal(np.asarray(layer.data), read_back(store)[0])
    assert not np.asarray(layer.data)[1].any()


def test_a_probabilistic_regression_gives_its_std_layer_from_one_evaluation(tmp_path):
    """The widget on a probabilistic regression (loss laplace) with the default Samples 1: the output and its
    predicted error std as the second layer, as predict --std writes it."""
    from dataclasses import replace as replaced

    from training_helpers import make_tiny_data, tiny_config
    from experiments import predict
    from experiments.config.schema import SamplingConfig
    from experiments.napari_plugin.layer_run import Request, run_request
    from experiments.training.trainer import Trainer

    root = make_tiny_data(tmp_path / "data")
    base = tiny_config(root, objective="regression", loss="laplace", epochs=1)
    config = replaced(base, network=replaced(base.network, out_channels=2), sampling=SamplingConfig(sampler="regression"))
    Trainer(config, tmp_path / "run", progress=False).fit()
    frame = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    result = run_request(Request(model=tmp_path / "run" / "last.pt", name="cell", data=frame, scale=(PIXEL_UM, PIXEL_UM),
                                 translate=(0.0, 0.0), units=("micrometer", "micrometer")))
    names = [options["name"] for _, options in result.layers]
    assert names[:2] == ["cell SR", "cell SR std"], names
    std, metadata = result.layers[1][0], result.layers[1][1]["metadata"]
    assert (std > 0).all() and "predicted std" in metadata["content"]
    tifffile.imwrite(tmp_path / "cell.tif", frame)
    assert predict.main(["--checkpoint", str(tmp_path / "run" / "last.pt"), "--input", str(tmp_path / "cell.tif"),
                         "--output", str(tmp_path / "out"), "--std", "--pixel-size", str(PIXEL_UM), "--quiet",
                         "--device", "cpu", "--no-preview"]) == 0
    np.testing.assert_allclose(std, tifffile.imread(tmp_path / "out" / "cell_sr_std.tif"), atol=1e-6)
