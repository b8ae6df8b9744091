"""The regression baseline through the same commands as any checkpoint: trained, evaluated, predicted and
exported at tiny size; a diffusion sampler is refused for it, and its output is one deterministic evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from dataclasses import replace

from ddpm.settings import UsageError
from experiments import evaluate, predict
from experiments.config.presets import REGRESSION
from experiments.config.schema import SamplingConfig, check_consistency
from experiments.image_io.tif_io import read_metadata
from experiments.training.trainer import Trainer
from training_helpers import make_tiny_data, tiny_config


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    root = make_tiny_data(tmp_path_factory.mktemp("data"))
    base = tiny_config(root, objective="regression", loss="l1")
    config = replace(base, sampling=SamplingConfig(sampler="regression"))
    run_dir = tmp_path_factory.mktemp("run") / "regression"
    Trainer(config, run_dir, progress=False).fit()
    return run_dir, root


def test_the_preset_and_its_consistency_checks():
    assert REGRESSION.train.objective == "regression" and REGRESSION.sampling.sampler == "regression"
    with pytest.raises(UsageError, match="regression"):
        check_consistency(replace(REGRESSION, sampling=SamplingConfig(sampler="ddim")))
    with pytest.raises(UsageError, match="regression"):
        check_consistency(replace(REGRESSION, train=replace(REGRESSION.train, objective="diffusion")))


def test_it_evaluates_predicts_and_refuses_a_diffusion_sampler(regression_run, tmp_path, capsys):
    run_dir, root = regression_run
    assert evaluate.main(["--checkpoint", str(run_dir), "--levels", "level_09", "--device", "cpu", "--no-progress",
                          "--out", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["levels"]["level_09"]
    assert np.isfinite(result["model"]["psnr_fit"]) and result["bicubic"]["psnr_fit"] > 0
    image = tmp_path / "cell.tif"
    tifffile.imwrite(image, np.random.default_rng(0).random((40, 36), dtype=np.float32))
    outputs = []
    for seed in (0, 1):  # one evaluation, no noise: the seed changes nothing
        folder = tmp_path / f"out{seed}"
        assert predict.main(["--checkpoint", str(run_dir), "--input", str(image), "--output", str(folder), "--quiet",
                             "--device", "cpu", "--seed", str(seed), "--no-preview"]) == 0
        outputs.append(tifffile.imread(folder / "cell_sr.tif"))
        assert read_metadata(folder / "cell_sr.tif")["sampler"] == "regression"
        assert read_metadata(folder / "cell_sr.tif")["sampling_steps"] == 1
    assert np.array_equal(outputs[0], outputs[1])
    capsys.readouterr()
    assert predict.main(["--checkpoint", str(run_dir), "--input", str(image), "--output", str(tmp_path / "x"),
                         "--sampler", "ddim", "--quiet", "--device", "cpu"]) == 1
    assert "regression baseline" in capsys.readouterr().err
    # Its samples would be copies: a std map of zeros, a calibration of nothing. Refused, by every command.
    assert predict.main(["--checkpoint", str(run_dir), "--input", str(image), "--output", str(tmp_path / "y"),
                         "--samples", "8", "--std", "--quiet", "--device", "cpu"]) == 1
    assert "copies with no spread" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert evaluate.main(["--checkpoint", str(run_dir), "--levels", "level_09", "--device", "cpu", "--no-progress",
                          "--samples", "4", "--out", str(tmp_path / "eval4")]) == 1
    assert "copies with no spread" in capsys.readouterr().err


def packaged(run_dir, tmp_path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """A regression run's Zoo package, built with a test image: what its module gives on the package's test
    input, the network's raw output there (tiled as prediction tiles, fed as the loss feeds it: [widefield, 0]
    at the last step), and the package's test output."""
    pytest.importorskip("bioimageio.spec")
    from zipfile import ZipFile

    from experiments.inference.bioimage_export import ExportOptions, build_package, preprocess
    from experiments.inference.loading import load_for_inference
    from experiments.inference.tiling import tiled_network

    image = tmp_path / "wide.tif"
    tifffile.imwrite(image, np.random.default_rng(1).random((64, 64), dtype=np.float32))
    package = build_package(run_dir / "last.pt", tmp_path / "model.zip", ExportOptions(test_image=image))
    with ZipFile(package) as archive:
        for name in ("sampler.pt", "test_input.npy", "test_output.npy"):
            archive.extract(name, tmp_path)
    predictor = load_for_inference(run_dir / "last.pt", "cpu")
    widefield = torch.from_numpy(preprocess(np.load(tmp_path / "test_input.npy")))
    encoding = predictor.diffusion.time_encodings[-1][None]
    with torch.no_grad():
        raw = tiled_network(predictor.model, predictor.layout())(torch.cat([widefield, torch.zeros_like(widefield)], 1),
                                                                 encoding)
        return torch.jit.load(str(tmp_path / "sampler.pt"))(widefield), raw, np.load(tmp_path / "test_output.npy")


def test_its_package_is_one_evaluation_that_matches_predict(regression_run, tmp_path):
    packaged_output, raw, test_output = packaged(regression_run[0], tmp_path)
    expected = raw.clamp(-1, 1)
    assert torch.allclose(packaged_output, expected, atol=1e-5)
    assert np.allclose(test_output, (expected.numpy() + 1) / 2, atol=1e-5)


def test_its_output_stays_in_the_targets_range():
    """The network's raw output can leave [-1, 1] (the shipped model's reached 1.09 on its example); the sampler
    clamps it there, as every sampler clamps its data prediction, unless told not to."""
    from ddpm import Diffusion
    from ddpm.samplers import RegressionSampler

    class Overshoot(torch.nn.Module):
        def forward(self, x, encoding):
            return 3.0 * torch.linspace(-1, 1, x.shape[-1]).expand(x.shape[0], 1, *x.shape[2:])

    diffusion = Diffusion(steps=10, time_encoding_dim=8)
    condition = torch.zeros(2, 1, 8, 8)
    clamped = RegressionSampler()(diffusion, Overshoot(), condition, progress=False)
    assert clamped.min() == -1.0 and clamped.max() == 1.0
    raw = RegressionSampler(clamp=False)(diffusion, Overshoot(), condition, progress=False)
    assert raw.max() == pytest.approx(3.0) and torch.equal(raw.clamp(-1, 1), clamped)
