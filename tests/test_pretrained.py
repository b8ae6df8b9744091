"""What ships in pretrained/: inference-only checkpoints that predict as the full ones do, model cards whose
numbers are the evaluations', and a fresh clone's first prediction (output at half the input's pixel size)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from experiments import evaluate, predict, publish
from experiments.image_io.images import read_tif
from experiments.publishing.model_card import CARD_FILE, MODEL_FILE
from experiments.inference.bioimage_export import EXAMPLE_INPUT
from experiments.inference.loading import load_for_inference
from experiments.checkpoint import Source, inference_only, write_checkpoint
from test_native_task import native_run  # noqa: F401  (a fixture: a tiny trained native-task run)

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
SHIPPED = ("native", "tutorial-l1", "regression", "probabilistic")
MAX_BYTES = 5_000_000
FLAGS = ["--quiet", "--device", "cpu", "--no-preview", "--seed", "2"]


def test_an_inference_only_checkpoint_predicts_as_the_full_one(native_run, tmp_path, capsys):  # noqa: F811
    run_dir, _ = native_run
    kept = inference_only(run_dir / "last.pt")
    assert len(kept.weights) == 1 and kept.progress is None and kept.image_size and kept.grid
    assert kept.source == Source(run_dir.name, "last.pt", 2, kept.source.training_seconds)
    assert kept.source.training_seconds > 0
    write_checkpoint(kept, tmp_path / "small.pt")
    assert set(torch.load(tmp_path / "small.pt", weights_only=True)) <= {"ema", "model", "config", "image_size", "grid",
                                                                          "source"}
    assert (tmp_path / "small.pt").stat().st_size < (run_dir / "last.pt").stat().st_size
    image = tmp_path / "cam.tif"
    tifffile.imwrite(image, np.random.default_rng(0).random((16, 16), dtype=np.float32))
    outputs = []
    for name, checkpoint in (("full", run_dir / "last.pt"), ("small", tmp_path / "small.pt")):
        assert predict.main(["--checkpoint", str(checkpoint), "--input", str(image), "--output", str(tmp_path / name),
                             *FLAGS]) == 0, capsys.readouterr().err
        outputs.append(tifffile.imread(tmp_path / name / "cam_sr.tif"))
    np.testing.assert_array_equal(*outputs)


def test_publish_writes_a_card_whose_numbers_are_the_evaluations(native_run, tmp_path, capsys):  # noqa: F811
    run_dir, _ = native_run
    assert evaluate.main(["--checkpoint", str(run_dir / "last.pt"), "--levels", "level_01,level_09", "--device", "cpu",
                          "--no-progress", "--out", str(tmp_path / "eval")]) == 0
    out = tmp_path / "shipped"
    code = publish.main(["--checkpoint", str(run_dir / "last.pt"), "--out", str(out), "--evaluation",
                         f"1 sample={tmp_path / 'eval'}", "--title", "Tiny", "--summary", "A tiny model.",
                         "--limit", "Tiny and untrained.", "--example", str(tmp_path / EXAMPLE_INPUT)])
    assert code == 0, capsys.readouterr().err
    card = (out / CARD_FILE).read_text()
    measured = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["levels"]
    for level, result in measured.items():
        gain = result["model"]["psnr_fit"] - result["bicubic"]["psnr_fit"]  # the mean of the paired gains
        spread = np.std(np.subtract(result["per_image"]["model"]["psnr_fit"], result["per_image"]["bicubic"]["psnr_fit"]))
        row = next(line for line in card.splitlines() if line.startswith(f"| {level} |"))
        assert f"**{gain:+.2f}** ± " in row and f"(sd {spread:.2f})" in row and f"{result['bicubic']['psnr']:.2f}" in row
    assert "native: widefield on the camera's grid (62.6 nm pixels) in, SIM grid (31.3 nm) out" in card
    assert "CC BY 4.0" in card and "10.1038/s41592-020-01048-5" in card and "Tiny and untrained." in card
    assert json.loads((out / "card.json").read_text())["evaluations"]["1 sample"]["levels"] == measured
    example = read_tif(tmp_path / EXAMPLE_INPUT)
    assert example.pixels.shape == (256, 256) and example.pixel_size_um == pytest.approx(0.0626)
    # Published files are outputs like any other: not replaced without --overwrite.
    capsys.readouterr()
    assert publish.main(["--checkpoint", str(run_dir / "last.pt"), "--out", str(out), "--evaluation",
                         f"1 sample={tmp_path / 'eval'}", "--title", "T", "--summary", "S"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert publish.main(["--checkpoint", str(run_dir / "last.pt"), "--out", str(tmp_path / "x"),
                         "--title", "T", "--summary", "S"]) == 1  # no evaluation: no card


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_is_small_loads_and_has_its_card(name):
    folder = PRETRAINED / name
    model = folder / MODEL_FILE
    assert model.is_file() and model.stat().st_size <= MAX_BYTES
    payload = torch.load(model, weights_only=True)
    assert "optimizer" not in payload and "rng" not in payload
    predictor = load_for_inference(model, "cpu")
    card = (folder / CARD_FILE).read_text()
    assert predictor.digest in card and "CC BY 4.0" in card
    numbers = json.loads((folder / "card.json").read_text())
    for evaluation in numbers["evaluations"].values():  # every level's gain in the card is the evaluation's
        for level, result in evaluation["levels"].items():
            gain = result["model"]["psnr_fit"] - result["bicubic"]["psnr_fit"]
            assert re.search(rf"\| {level} \| .*" + re.escape(f"**{gain:+.2f}**"), card), (name, level)
    assert predictor.config.data.task == ("native" if name == "native" else "tutorial")


def test_a_fresh_clone_predicts_the_example_at_half_its_pixel_size(tmp_path, capsys):
    example = PRETRAINED / EXAMPLE_INPUT
    source = read_tif(example)
    assert source.pixel_size_um == pytest.approx(0.0626)
    assert predict.main(["--checkpoint", str(PRETRAINED / "native" / MODEL_FILE), "--input", str(example),
                         "--output", str(tmp_path), *FLAGS]) == 0
    assert "warning" not in capsys.readouterr().err
    output = read_tif(tmp_path / "example_widefield.ome_sr.tif")
    assert output.pixels.shape[-2:] == tuple(2 * side for side in source.pixels.shape[-2:])
    assert output.pixel_size_um == pytest.approx(source.pixel_size_um / 2)
