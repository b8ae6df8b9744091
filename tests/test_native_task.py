"""The native task: camera grid in, SIM grid (2x) out. Data, the condition's enlargement, training records,
prediction at half the input's pixel size, the export, and the refusals that keep the two tasks apart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ddpm import DDIMSampler
from ddpm.hashed_noise import hashed_normal
from ddpm.settings import UsageError
from experiments import predict
from experiments.config.presets import NATIVE
from experiments.config.schema import DataConfig
from experiments.pairs.dataset import PairedImageDataset, read_pairs
from experiments.data.layout import DatasetError
from experiments.pairs.augment import dihedral
from experiments.microscope.biosr_sim import RealStructureConfig, generate as generate_real, read_manifest
from experiments.microscope.biosr_sim import dihedral as turn
from experiments.image_io.images import read_tif
from experiments.data.normalization import min_max_to_model_range
from experiments.microscope.synthetic import SyntheticConfig, generate
from experiments.data.task import GRID_FILE, DataGrid, data_grid, enlarge, read_grid
from experiments.microscope.widefield import bin_pixels, min_max_scale, widefield_blur
from experiments.inference.loading import load_for_inference
from experiments.checkpoint import GRID_KEY
from experiments.training.trainer import Trainer
from test_biosr_sim import SPLIT, crops  # noqa: F401  (a fixture: six pieces of real cells)
from training_helpers import IMAGE_SIZE, tiny_config

CPU = torch.device("cpu")


def native_data(root: Path) -> Path:
    generate(root, train=16, validate=4, test_per_level=4, seed=3,
             config=SyntheticConfig(size=IMAGE_SIZE, task="native"))
    return root


@pytest.fixture(scope="module")
def native_run(tmp_path_factory):
    root = native_data(tmp_path_factory.mktemp("native-data"))
    base = tiny_config(root)
    config = replace(base, data=replace(base.data, task="native"), eval=replace(base.eval, levels=("level_09",)))
    run_dir = tmp_path_factory.mktemp("run") / "native"
    Trainer(config, run_dir, progress=False).fit()
    return run_dir, root


# ------------------------------------------------------------------ the data
def test_native_pairs_hold_camera_grid_inputs_and_state_their_grid(tmp_path):
    root = native_data(tmp_path)
    assert read_grid(root) == DataGrid("native", 0.0626)
    assert read_grid(root).output_pixel_um == pytest.approx(0.0313)
    for split_dir in ("training", "validate"):
        assert tifffile.imread(root / f"{split_dir}_wf" / "00000001.tif").shape == (IMAGE_SIZE // 2,) * 2
        assert tifffile.imread(root / f"{split_dir}_gt" / "00000001.tif").shape == (IMAGE_SIZE,) * 2
    assert tifffile.imread(root / "test_wf" / "level_05" / "001.tif").shape == (IMAGE_SIZE // 2,) * 2


def test_real_structure_native_pairs_are_the_sim_window_and_its_binned_blur(tmp_path, crops):  # noqa: F811
    """Independent route: the target is the SIM window itself (min-max), the input's noise-free part is
    the blurred window binned 2 x 2; the held-out cells stay held out."""
    config = RealStructureConfig(size=32, task="native")
    generate_real(tmp_path, train=6, validate=2, test_per_level=2, seed=1, config=config, cell_split=SPLIT,
                  cell_images=crops)
    assert read_grid(tmp_path) == DataGrid("native", 0.0626)
    rows = read_manifest(tmp_path)
    assert {row["cell"] for row in rows if row["split"] == "test"} == set(SPLIT["test"])
    assert not {row["cell"] for row in rows if row["split"] == "train"} & set(SPLIT["test"] + SPLIT["validate"])
    row = next(row for row in rows if row["split"] == "test")
    window = turn(crops[row["cell"]][int(row["y"]) : int(row["y"]) + 32, int(row["x"]) : int(row["x"]) + 32],
                  int(row["quarter_turns"]), row["flipped"] == "1")
    np.testing.assert_allclose(tifffile.imread(tmp_path / "test_gt" / row["file"]), min_max_scale(window), atol=1e-6)
    clean = bin_pixels(widefield_blur(crops[row["cell"]][None], config.model)[0][
        int(row["y"]) : int(row["y"]) + 32, int(row["x"]) : int(row["x"]) + 32], 2)
    clean = turn(clean, int(row["quarter_turns"]), row["flipped"] == "1")
    recorded = tifffile.imread(tmp_path / "test_wf" / "level_09" / row["file"])
    assert recorded.shape == (16, 16)
    assert np.corrcoef(recorded.ravel(), clean.ravel())[0, 1] > 0.9  # level_09: nearly noise-free


def test_the_dataset_enlarges_inputs_onto_the_targets_grid(tmp_path):
    root = native_data(tmp_path)
    dataset = PairedImageDataset(root, "train")  # the scale the data set states
    wf, gt = dataset.get_batch([0, 1])
    assert wf.shape == gt.shape == (2, 1, IMAGE_SIZE, IMAGE_SIZE) and dataset.image_shape == (IMAGE_SIZE,) * 2
    camera = torch.from_numpy(tifffile.imread(root / "training_wf" / "00000001.tif"))[None, None] * 2 - 1
    expected = F.interpolate(camera, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=False)
    torch.testing.assert_close(wf[:1], expected, rtol=0, atol=1e-5)
    # With augmentation the same transform reaches both, the enlarged input included.
    augmented = PairedImageDataset(root, "train", augment=True, seed=2)
    a_wf, a_gt = augmented.get_batch(list(range(8)))
    plain_wf, plain_gt = dataset.get_batch(list(range(8)))
    for k in range(8):
        match = [torch.equal(dihedral(plain_gt[k], j), a_gt[k]) for j in range(8)].index(True)
        torch.testing.assert_close(dihedral(plain_wf[k], match), a_wf[k], rtol=0, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 7), st.integers(2, 9), st.integers(2, 9), st.floats(0.1, 4), st.floats(-1, 1))
def test_enlarging_commutes_with_the_dihedral_transforms_and_affine_scaling(k, height, width, gain, offset):
    image = torch.from_numpy(np.random.default_rng(height * 10 + width).random((1, 1, height, width), dtype=np.float32))
    torch.testing.assert_close(enlarge(dihedral(image, k), 2), dihedral(enlarge(image, 2), k), rtol=0, atol=1e-5)
    torch.testing.assert_close(enlarge(gain * image + offset, 2), gain * enlarge(image, 2) + offset, rtol=0, atol=1e-4)
    assert enlarge(image, 1) is image and enlarge(image, 2).shape == (1, 1, 2 * height, 2 * width)


def test_a_run_and_a_data_set_of_different_tasks_are_refused_naming_the_flag(tmp_path):
    native = native_data(tmp_path / "native")
    tutorial = tmp_path / "tutorial"
    generate(tutorial, train=4, validate=2, test_per_level=2, seed=3, config=SyntheticConfig(size=IMAGE_SIZE))
    with pytest.raises(DatasetError, match="--data.task native"):
        read_pairs(DataConfig(root=str(native)), "train")
    with pytest.raises(DatasetError, match="--data.task tutorial"):
        read_pairs(DataConfig(root=str(tutorial), task="native"), "train")
    # A data set that states nothing (BioSR's download): its shapes decide, and the message names the task.
    (native / GRID_FILE).unlink()
    with pytest.raises(DatasetError, match=r"2x \(a data set for --data.task native\)"):
        PairedImageDataset(native, "train", enlargement=1, cache=False)
    assert data_grid(native, "native") == DataGrid("native", 0.0626)
    with pytest.raises(UsageError, match="task"):
        DataConfig(task="sim")


# ------------------------------------------------------------------ training, prediction, export
def test_the_checkpoint_records_the_task_and_the_training_inputs_pixel(native_run):
    run_dir, _ = native_run
    payload = torch.load(run_dir / "last.pt", weights_only=True)
    assert payload[GRID_KEY] == {"task": "native", "input_pixel_um": 0.0626, "output_pixel_um": 0.0313}
    assert payload["config"]["data"]["task"] == "native" and payload["image_size"] == [IMAGE_SIZE, IMAGE_SIZE]
    predictor = load_for_inference(run_dir / "last.pt", "cpu")
    assert predictor.enlargement == 2 and predictor.grid == DataGrid("native", 0.0626)


def test_resume_refuses_another_task(native_run, tmp_path, capsys):
    import shutil

    from experiments import train

    run_dir, _ = native_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    import json

    config = json.loads((copy / "config.json").read_text())
    config["data"]["task"], config["train"]["epochs"] = "tutorial", 3
    (copy / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert train.main(["--resume", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "data.task" in err and "native" in err and "tutorial" in err


def write_camera_image(path: Path, side: int, pixel_um: float | None) -> np.ndarray:
    image = np.random.default_rng(4).random((side, side), dtype=np.float32)
    metadata = {} if pixel_um is None else {"PhysicalSizeX": pixel_um, "PhysicalSizeXUnit": "µm",
                                            "PhysicalSizeY": pixel_um, "PhysicalSizeYUnit": "µm"}
    tifffile.imwrite(path, image, ome=True, metadata=metadata)
    return image


FLAGS = ["--quiet", "--device", "cpu", "--no-preview", "--seed", "5"]


def test_predict_returns_twice_the_side_at_half_the_pixel_size(native_run, tmp_path, capsys):
    run_dir, _ = native_run
    write_camera_image(tmp_path / "cam.ome.tif", 20, 0.0626)
    assert predict.main(["--checkpoint", str(run_dir / "last.pt"), "--input", str(tmp_path / "cam.ome.tif"),
                         "--output", str(tmp_path / "out"), "--samples", "2", "--std", "--check", *FLAGS]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err and "note" not in err
    for name, side, pixel in (("cam.ome_sr.tif", 40, 0.0313), ("cam.ome_sr_std.tif", 40, 0.0313),
                              ("cam.ome_sr_consistency.tif", 20, 0.0626)):  # the consistency map: the input's grid
        info = read_tif(tmp_path / "out" / name)
        assert info.pixels.shape[-2:] == (side, side) and info.pixel_size_um == pytest.approx(pixel), name


def test_prediction_equals_ddim_on_the_enlarged_input(native_run, tmp_path, capsys):
    """Independent route: the library's DDIM on the bicubic-enlarged input, the same hashed x_T."""
    run_dir, _ = native_run
    image = write_camera_image(tmp_path / "cam.ome.tif", 16, 0.0626)
    assert predict.main(["--checkpoint", str(run_dir / "last.pt"), "--input", str(tmp_path / "cam.ome.tif"),
                         "--output", str(tmp_path / "out"), "--hashed-noise", "--sampler", "ddim", "--sampling-steps",
                         "3", "--tile", "32", *FLAGS]) == 0, capsys.readouterr().err
    predicted = tifffile.imread(tmp_path / "out" / "cam.ome_sr.tif")
    predictor = load_for_inference(run_dir / "last.pt", "cpu")
    # --hashed-noise scales the frame by its min / max, as an exported package does.
    condition = F.interpolate(torch.from_numpy(min_max_to_model_range(image))[None, None], scale_factor=2, mode="bicubic",
                              align_corners=False)
    reference = DDIMSampler(sampling_steps=3)(predictor.diffusion, predictor.model, condition,
                                                  x_T=hashed_normal([1, 1, 32, 32], 5, CPU), progress=False)
    np.testing.assert_allclose(predicted, (reference[0, 0].numpy() + 1) / 2, rtol=0, atol=1e-5)


@pytest.mark.parametrize("pixel_um, flag, expected", [
    (0.1, [], "warning: .* has 100.0 nm pixels \\(its metadata\\), but this model was trained on inputs of 62.6 nm"),
    (None, ["--pixel-size", "0.04"], "warning: .* has 40.0 nm pixels \\(--pixel-size\\)"),
    (None, [], "note: .* states no pixel size; this model was trained on inputs of 62.6 nm pixels"),
])
def test_a_pixel_size_far_from_the_training_inputs_is_named(native_run, tmp_path, capsys, pixel_um, flag, expected):
    run_dir, _ = native_run
    write_camera_image(tmp_path / "cam.tif", 16, pixel_um)
    assert predict.main(["--checkpoint", str(run_dir / "last.pt"), "--input", str(tmp_path / "cam.tif"),
                         "--output", str(tmp_path / "out"), *flag, *FLAGS]) == 0
    import re
    assert re.search(expected, capsys.readouterr().err)


def test_upsample_is_refused_for_a_native_model(native_run, tmp_path, capsys):
    run_dir, _ = native_run
    write_camera_image(tmp_path / "cam.tif", 16, 0.0626)
    assert predict.main(["--checkpoint", str(run_dir / "last.pt"), "--input", str(tmp_path / "cam.tif"),
                         "--output", str(tmp_path / "out"), "--upsample", *FLAGS]) == 1
    err = capsys.readouterr().err
    assert "native-task model" in err and "drop --upsample" in err and not (tmp_path / "out").exists()


def test_evaluate_upsample_scores_a_tutorial_model_on_camera_images_enlarged_by_bicubic(tmp_path, monkeypatch):
    """The route of the README's upsampled column: a tutorial-task model scored on native-task pairs. Its
    condition is each camera file enlarged 2x by torch's bicubic interpolation (read and scaled here by hand),
    and the bicubic scores are that enlargement's against the SIM-grid target, fitted in numpy."""
    import json

    from experiments import evaluate
    from experiments.inference.sampling import Sampling
    from test_predict import save_checkpoint
    from test_published_numbers import fitted_by_hand

    root = native_data(tmp_path / "data")
    checkpoint = save_checkpoint(tmp_path / "tutorial.pt")  # a tutorial-task model (untrained)
    conditions = []
    draw = Sampling.draw

    def recording(self, model, condition, *args, **kwargs):
        conditions.append(condition.double().numpy())
        return draw(self, model, condition, *args, **kwargs)

    monkeypatch.setattr(Sampling, "draw", recording)
    assert evaluate.main(["--checkpoint", str(checkpoint), "--data", str(root), "--upsample", "--levels", "level_05",
                          "--max-images", "3", "--samples", "1", "--device", "cpu", "--no-progress",
                          "--out", str(tmp_path / "eval")]) == 0
    level = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["levels"]["level_05"]

    def model_range(path):
        pixels = tifffile.imread(path).astype(np.float64)
        stored = tifffile.imread(path).dtype
        return 2 * (pixels / np.iinfo(stored).max if np.issubdtype(stored, np.integer) else pixels) - 1

    cameras = [model_range(path) for path in sorted((root / "test_wf" / "level_05").glob("*.tif"))[:3]]
    targets = [model_range(path) for path in sorted((root / "test_gt").glob("*.tif"))[:3]]  # one target for all levels
    enlarged = [F.interpolate(torch.from_numpy(camera)[None, None], scale_factor=2, mode="bicubic",
                              align_corners=False)[0, 0].numpy() for camera in cameras]
    assert enlarged[0].shape == targets[0].shape == (IMAGE_SIZE, IMAGE_SIZE)
    np.testing.assert_allclose(np.concatenate(conditions)[:, 0], np.stack(enlarged), rtol=0, atol=1e-5)
    expected = [fitted_by_hand(image, target)["psnr"] for image, target in zip(enlarged, targets)]
    np.testing.assert_allclose(level["per_image"]["bicubic"]["psnr_fit"], expected, rtol=0, atol=1e-3)
    assert level["bicubic"]["images"] == 3


def test_the_native_preset_trains_on_the_native_layout():
    assert NATIVE.data.task == "native" and NATIVE.data.root == "data/biosr-sim-native" and NATIVE.data.enlargement == 2


def test_the_exported_module_enlarges_the_camera_image_as_prediction_does(native_run, tmp_path, monkeypatch):
    """Fast half of the package test below: the module export packs (captured before the zip is written)
    takes camera images of any size to twice their side, and equals experiments.predict --hashed-noise on them
    (the eager sampler, enlarging in the Predictor) and the module of a scale-1 twin fed the image enlarged here
    by torch's bicubic interpolation (the enlargement written out)."""
    pytest.importorskip("bioimageio.spec", reason="the optional extra is not installed: pip install -e '.[export]'")
    from experiments.inference import bioimage_export
    from experiments.inference.bioimage_export import ExportOptions, build_package, preprocess
    from experiments.inference.scripted_sampler import script_sampler

    run_dir, root = native_run
    captured = {}
    monkeypatch.setattr(bioimage_export, "_write_package",
                        lambda spec, save, work, module, *rest: captured.setdefault("module", module))
    build_package(run_dir / "last.pt", tmp_path / "model.zip",
                  ExportOptions(sampling_steps=2, seed=0, test_side=32,
                                test_image=root / "test_wf" / "level_09" / "001.tif"))
    module = captured["module"]
    predictor = load_for_inference(run_dir / "last.pt", "cpu")
    twin = script_sampler(predictor.model, predictor.diffusion, "dpmpp2m", 2, 0, predictor.layout())
    camera = np.random.default_rng(3).random((20, 24), dtype=np.float32)
    tifffile.imwrite(tmp_path / "in.tif", camera)
    assert predict.main(["--checkpoint", str(run_dir / "last.pt"), "--input", str(tmp_path / "in.tif"), "--output",
                         str(tmp_path / "pred"), "--hashed-noise", "--sampler", "dpmpp2m", "--sampling-steps", "2",
                         *FLAGS[:-1], "0"]) == 0
    with torch.no_grad():
        packed = module(torch.from_numpy(preprocess(camera[None, None])))
        enlarged = F.interpolate(torch.from_numpy(preprocess(camera[None, None])), size=(40, 48), mode="bicubic",
                                 align_corners=False)
        np.testing.assert_allclose(packed.numpy(), twin(enlarged).numpy(), rtol=0, atol=1e-6)
    assert packed.shape == (1, 1, 40, 48)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "pred" / "in_sr.tif"), packed[0, 0].numpy() * 0.5 + 0.5,
                               rtol=0, atol=1e-4)


@pytest.mark.slow
def test_the_exported_native_package_takes_the_camera_image(native_run, tmp_path, monkeypatch):
    pytest.importorskip("bioimageio.core", reason="the optional extra is not installed: pip install -e '.[export]'")
    monkeypatch.setenv("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")
    import zipfile

    from bioimageio.spec import load_description

    from experiments.inference.bioimage_export import ExportOptions, build_package, preprocess, test_package

    run_dir, root = native_run
    zip_path = build_package(run_dir / "last.pt", tmp_path / "model.zip",
                             ExportOptions(sampling_steps=2, seed=0, test_side=32,
                                           test_image=root / "test_wf" / "level_09" / "001.tif"))
    assert test_package(zip_path).status == "passed"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path / "unzipped")
    model = load_description(zip_path)
    in_axes, out_axes = ({str(axis.id): axis for axis in tensor.axes} for tensor in (model.inputs[0], model.outputs[0]))
    assert in_axes["y"].scale == pytest.approx(0.0626) and out_axes["x"].scale == pytest.approx(0.0313)
    assert in_axes["x"].unit == "micrometer"
    test_in = np.load(tmp_path / "unzipped" / "test_input.npy")
    test_out = np.load(tmp_path / "unzipped" / "test_output.npy")
    assert test_in.shape[-2:] == (16, 16) and test_out.shape[-2:] == (32, 32)
    # The package's output is experiments.predict's with the same hashed noise.
    module = torch.jit.load(str(tmp_path / "unzipped" / "sampler.pt"))
    # predict scales a float input as the training data were (as stored), the package by its min and max:
    # the same on an image that spans [0, 1].
    tifffile.imwrite(tmp_path / "in.tif", min_max_scale(test_in[0, 0]))
    assert predict.main(["--checkpoint", str(run_dir / "last.pt"), "--input", str(tmp_path / "in.tif"), "--output",
                         str(tmp_path / "pred"), "--hashed-noise", "--sampler", "dpmpp2m", "--sampling-steps", "2",
                         "--tile", "32", "--quiet", "--device", "cpu", "--no-preview", "--seed", "0"]) == 0
    with torch.no_grad():
        scripted = module(torch.from_numpy(preprocess(test_in))).numpy()[0, 0] * 0.5 + 0.5
    np.testing.assert_allclose(scripted, test_out[0, 0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "pred" / "in_sr.tif"), scripted, rtol=0, atol=1e-4)


def test_the_one_enlarger_clips_as_asked():
    """None: torch's bicubic itself; "frame": each image within its own [min, max]; "unit": within [0, 1]."""
    rng = np.random.default_rng(2)
    images = torch.from_numpy(rng.random((3, 1, 6, 5), dtype=np.float32) * np.array([0.5, 1.0, 3.0], dtype=np.float32)
                              [:, None, None, None] - 0.2)
    plain = F.interpolate(images, size=(12, 10), mode="bicubic", align_corners=False)
    torch.testing.assert_close(enlarge(images, 2), plain, rtol=0, atol=0)
    framed = enlarge(images, 2, clip="frame")
    for image, source, raw in zip(framed, images, plain):
        np.testing.assert_array_equal(image.numpy(), np.clip(raw.numpy(), source.min().item(), source.max().item()))
    assert bool((plain < images.amin()).any() or (plain > images.amax()).any())  # there is something to clip
    np.testing.assert_array_equal(enlarge(images, 2, clip="unit").numpy(), np.clip(plain.numpy(), 0, 1))
    with pytest.raises(ValueError, match="clip"):
        enlarge(images, 2, clip="range")
