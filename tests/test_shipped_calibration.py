"""A calibration shipped with a model (issue 34): evaluate fits the error models on the validation split,
publish --calibration stores one in the checkpoint and its card, and prediction turns the samples' std into
the calibrated error std only for samples of the sampler it was fitted on, saying so in the output's metadata."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import tifffile
import torch

from experiments import evaluate, predict, publish
from experiments.checkpoint import read_checkpoint, write_checkpoint
from experiments.config.schema import SamplingConfig
from experiments.inference.loading import InferenceError, load_for_inference
from experiments.image_io.tif_io import read_metadata
from experiments.inference.predictor import FrameRequest
from experiments.publishing.model_card import CARD_FILE, MODEL_FILE
from experiments.trust.calibration import StdCalibration
from test_native_task import native_run  # noqa: F401 (fixture)

SAMPLING = ["--sampler", "ddim", "--sampling-steps", "3", "--eta", "1", "--samples", "3"]


@pytest.fixture(scope="module")
def published(native_run, tmp_path_factory):  # noqa: F811
    """A tiny native run evaluated with 3 samples of 3-step DDIM (eta 1) and published with its interval model."""
    run_dir, _ = native_run
    root = tmp_path_factory.mktemp("calibrated")
    assert evaluate.main(["--checkpoint", str(run_dir / "last.pt"), "--levels", "level_09", "--device", "cpu",
                          "--no-progress", "--max-images", "2", "--out", str(root / "eval"), *SAMPLING]) == 0
    assert publish.main(["--checkpoint", str(run_dir / "last.pt"), "--out", str(root / "shipped"), "--evaluation",
                         f"3 samples={root / 'eval'}", "--title", "Tiny", "--summary", "A tiny model.",
                         "--calibration", "interval"]) == 0
    return root


def test_publish_ships_the_validation_fit_and_its_table(published):
    evaluation = json.loads((published / "eval" / "evaluation.json").read_text())
    fitted = evaluation["calibration"]["interval"]
    stored = read_checkpoint(published / "shipped" / MODEL_FILE).calibration
    assert stored == {"scale": fitted["scale"], "floor": fitted["floor"], "method": "interval", "sampler": "ddim",
                      "evaluations": 3, "eta": 1.0, "samples": 3, "images": evaluation["calibration"]["images"]}
    assert json.loads((published / "shipped" / "card.json").read_text())["calibration"] == {**stored, "evaluation": "3 samples"}
    card = (published / "shipped" / CARD_FILE).read_text()
    row = evaluation["levels"]["level_09"]["calibration"]["interval"]
    assert "## Error bars" in card and f"**{row['coverage90']:.2f}**" in card
    assert f"{stored['scale']:.3f} x samples' std" in card


def test_prediction_calibrates_the_std_of_its_own_sampler_only(published):
    plain = load_for_inference(published / "shipped" / MODEL_FILE, "cpu")
    calibration = plain.calibration
    assert isinstance(calibration, StdCalibration)
    own = SamplingConfig(sampler="ddim", sampling_steps=3, eta=1.0, samples=5)
    assert plain.calibrated_by(own) == calibration  # any sample count: the formula takes N
    for other in (replace(own, eta=0.0), replace(own, sampling_steps=4), SamplingConfig(sampler="dpmpp2m", sampling_steps=3, samples=5),
                  replace(own, samples=1)):
        assert plain.calibrated_by(other) is None
    bare = replace(plain, calibration=None)
    images = torch.rand(1, 1, 16, 16) * 2 - 1
    request = FrameRequest(own, layout=plain.layout(tile=32))
    raw = bare.sample(images, request, torch.Generator().manual_seed(3)).std
    calibrated = plain.sample(images, request, torch.Generator().manual_seed(3)).std
    by_hand = np.hypot(calibration.scale * raw.numpy() * math.sqrt(6 / 4), calibration.floor)
    np.testing.assert_allclose(calibrated.numpy(), by_hand, rtol=1e-5, atol=1e-7)


def test_the_std_file_says_whether_it_is_calibrated(published, tmp_path):
    image = tmp_path / "cam.tif"
    tifffile.imwrite(image, np.random.default_rng(0).random((16, 16), dtype=np.float32))
    model = str(published / "shipped" / MODEL_FILE)
    for name, flags in (("own", SAMPLING), ("other", ["--sampler", "ddim", "--sampling-steps", "3", "--samples", "3"])):
        assert predict.main(["--checkpoint", model, "--input", str(image), "--output", str(tmp_path / name), "--std",
                             "--pixel-size", "0.0626", "--no-preview", *flags]) == 0
    described = {name: read_metadata(tmp_path / name / "cam_sr_std.tif")["content"] for name in ("own", "other")}
    assert described["own"].startswith("calibrated std of the output's error") and "[0, 1] units" in described["own"]
    assert described["other"].startswith("standard deviation of samples, uncalibrated")


def test_a_damaged_calibration_entry_is_refused_naming_the_file(published, tmp_path):
    shipped = read_checkpoint(published / "shipped" / MODEL_FILE)
    broken = tmp_path / "broken.pt"
    write_checkpoint(replace(shipped, calibration={**shipped.calibration, "scale": -1.0}), broken)
    with pytest.raises(InferenceError, match="broken.pt: its 'calibration' entry cannot be read"):
        load_for_inference(broken, "cpu")


def test_publish_without_a_fitted_calibration_says_what_to_run(native_run, tmp_path, capsys):  # noqa: F811
    run_dir, _ = native_run
    assert evaluate.main(["--checkpoint", str(run_dir / "last.pt"), "--levels", "level_09", "--device", "cpu",
                          "--no-progress", "--max-images", "2", "--out", str(tmp_path / "eval")]) == 0
    assert publish.main(["--checkpoint", str(run_dir / "last.pt"), "--out", str(tmp_path / "shipped"), "--evaluation",
                         f"one={tmp_path / 'eval'}", "--title", "T", "--summary", "S", "--calibration", "curve"]) == 1
    assert "--samples 8" in capsys.readouterr().err
    assert not (tmp_path / "shipped").exists()


def test_publishing_a_shipped_model_again_keeps_where_it_came_from(published, tmp_path):
    """A shipped model re-published (e.g. to add its calibration once its run folder is gone) keeps its run,
    epoch and training time, and its weights; the calibration comes only from --calibration."""
    from experiments.checkpoint import inference_only

    shipped = read_checkpoint(published / "shipped" / MODEL_FILE)
    again = inference_only(published / "shipped" / MODEL_FILE)
    assert again.source == shipped.source and again.source.run != "shipped" and again.calibration is None
    assert all(torch.equal(again.weights[k][n], shipped.weights[k][n]) for k in shipped.weights for n in shipped.weights[k])
