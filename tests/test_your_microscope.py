"""The recipes of docs/microscope.md at tiny size: training data degraded by a user's bead image, and a
user's own pairs, each fine-tuning the shipped native model (train --init)."""

from __future__ import annotations

import json
import shutil

from pathlib import Path

import numpy as np
import tifffile

from experiments.checkpoint import read_checkpoint
from experiments.make_data import main as make_data
from experiments.train import main as train

ROOT = Path(__file__).resolve().parents[1]
NATIVE = "pretrained/native/model.pt"
TINY = ["--train", "16", "--validate", "2", "--test-per-level", "2", "--size", "64"]
SHORT = ["--epochs", "1", "--lr", "3e-4", "--no-progress", "--max-test-images", "2", "--validation-images", "2"]


def bead_image(path, pixel_um=0.0626, fwhm_nm=300.0):
    sigma = fwhm_nm / 1000 / pixel_um / (2 * np.sqrt(2 * np.log(2)))
    y, x = np.mgrid[:48, :48]
    bead = 4000 * np.exp(-((x - 23.4) ** 2 + (y - 24.1) ** 2) / (2 * sigma**2)) + 200
    tifffile.imwrite(path, np.random.default_rng(0).poisson(bead).astype(np.uint16), imagej=True,
                     resolution=(1 / pixel_um, 1 / pixel_um), metadata={"unit": "um"})
    return path


def fine_tuned(run_dir):
    checkpoint = read_checkpoint(run_dir / "last.pt")
    shipped = read_checkpoint(NATIVE).sampling_weights()[1]
    assert json.loads((run_dir / "config.json").read_text())["train"]["init"] == NATIVE
    # Started from the shipped weights and moved a little, not from random ones.
    moved = max(float((checkpoint.weights["model"][k] - shipped[k]).abs().max()) for k in shipped)
    assert 0 < moved < 0.05
    return checkpoint


def test_a_bead_image_makes_the_training_data_and_the_shipped_model_is_fine_tuned_on_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "pretrained" / "native", tmp_path / "pretrained" / "native")
    bead_image(tmp_path / "beads.tif")
    assert make_data(["--structures", "biosr-sim", "--task", "native", "--degradation", "randomized",
                      "--psf", "beads.tif", "--out", "data/my-psf", *TINY]) == 0
    assert train(["--preset", "native", "--data.root", "data/my-psf", "--init", NATIVE, *SHORT,
                  "--run-dir", "runs/my-psf"]) == 0
    fine_tuned(tmp_path / "runs" / "my-psf")


def test_own_pairs_are_fine_tuned_on_and_a_foreign_pixel_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "pretrained" / "native", tmp_path / "pretrained" / "native")
    assert make_data(["--structures", "biosr-sim", "--task", "native", "--out", "my_pairs", *TINY]) == 0
    (tmp_path / "my_pairs" / "dataset.json").write_text(json.dumps({"task": "native", "input_pixel_um": 0.065}))
    assert train(["--preset", "native", "--data.root", "my_pairs", "--init", NATIVE, *SHORT,
                  "--run-dir", "runs/my-pairs"]) == 0
    fine_tuned(tmp_path / "runs" / "my-pairs")
    (tmp_path / "my_pairs" / "dataset.json").write_text(json.dumps({"task": "native", "input_pixel_um": 0.1}))
    assert train(["--preset", "native", "--data.root", "my_pairs", "--init", NATIVE, *SHORT,
                  "--run-dir", "runs/other"]) == 1
    assert "trained on inputs of 62.6 nm pixels, my_pairs holds 100.0 nm ones" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "other" / "last.pt").exists()
