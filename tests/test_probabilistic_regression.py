"""The probabilistic regression baseline (loss ``laplace``): the regression network with a second output
channel, a per-pixel Laplace log-scale. Its loss against a hand computation, its sampler's two channels,
and the commands at tiny size: evaluate reports its std's calibration from one evaluation, predict writes
its predicted std without samples."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import tifffile
import torch

from ddpm import Diffusion
from ddpm.diffusion import LOG_SCALE_RANGE, laplace_std
from ddpm.samplers import RegressionSampler
from ddpm.settings import UsageError
from experiments import evaluate, predict
from experiments.config.presets import PROBABILISTIC, REGRESSION
from experiments.config.schema import SamplingConfig, check_consistency
from experiments.image_io.tif_io import read_metadata
from experiments.training.trainer import Trainer
from test_regression_baseline import packaged
from training_helpers import make_tiny_data, tiny_config


class Fixed(torch.nn.Module):
    """A network whose output is given: location and log-scale channels, whatever its input."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output

    def forward(self, x, encoding):
        return self.output


def test_the_laplace_loss_is_the_negative_log_likelihood_by_hand():
    generator = torch.Generator().manual_seed(0)
    x0, location = torch.rand(2, 1, 4, 4, generator=generator) * 2 - 1, torch.rand(2, 1, 4, 4, generator=generator)
    log_scale = torch.randn(2, 1, 4, 4, generator=generator).clamp(*LOG_SCALE_RANGE)
    diffusion = Diffusion(steps=10, time_encoding_dim=8)
    loss = diffusion.regression_loss(Fixed(torch.cat([location, log_scale], 1)), x0, torch.zeros_like(x0), "laplace")
    # log of the Laplace density: -log(2 b) - |x - mu| / b; the loss leaves out the constant log 2
    by_hand = np.mean([math.log(b) + abs(x - m) / b for x, m, b in
                       zip(x0.flatten().tolist(), location.flatten().tolist(), log_scale.exp().flatten().tolist())])
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)
    with pytest.raises(ValueError, match="2 output channels"):
        diffusion.regression_loss(Fixed(location), x0, torch.zeros_like(x0), "laplace")
    with pytest.raises(UsageError, match="diffusion loss"):
        diffusion.training_loss(Fixed(location), x0, torch.zeros_like(x0), loss="laplace")


def test_its_sampler_gives_the_clamped_image_and_the_laplace_std():
    location = torch.linspace(-3, 3, 16).reshape(1, 1, 4, 4)
    log_scale = torch.full((1, 1, 4, 4), -2.0)
    log_scale[0, 0, 0, 0] = 50.0  # beyond the trained range: clamped as the loss clamps it
    out = RegressionSampler()(Diffusion(steps=10, time_encoding_dim=8), Fixed(torch.cat([location, log_scale], 1)),
                              torch.zeros(1, 1, 4, 4), progress=False)
    assert out.shape == (1, 2, 4, 4) and torch.equal(out[:, :1], location.clamp(-1, 1))
    assert out[0, 1, 1, 1].item() == pytest.approx(math.sqrt(2) * math.exp(-2.0), rel=1e-6)  # Laplace std: sqrt 2 b
    assert out[0, 1, 0, 0].item() == pytest.approx(math.sqrt(2) * math.exp(LOG_SCALE_RANGE[1]), rel=1e-6)
    assert torch.equal(laplace_std(torch.tensor([-100.0])), laplace_std(torch.tensor([LOG_SCALE_RANGE[0]])))


def test_the_preset_and_its_consistency_checks():
    check_consistency(PROBABILISTIC)
    assert PROBABILISTIC.network.out_channels == 2 and PROBABILISTIC.sampling.sampler == "regression"
    with pytest.raises(UsageError, match="--network.out_channels 2"):
        check_consistency(replace(PROBABILISTIC, network=replace(PROBABILISTIC.network, out_channels=1)))
    with pytest.raises(UsageError, match="--network.out_channels 1"):
        check_consistency(replace(REGRESSION, network=replace(REGRESSION.network, out_channels=2)))
    with pytest.raises(UsageError, match="needs --train.objective regression"):
        check_consistency(replace(PROBABILISTIC, train=replace(PROBABILISTIC.train, objective="diffusion"),
                                  sampling=SamplingConfig()))


@pytest.fixture(scope="module")
def probabilistic_run(tmp_path_factory):
    root = make_tiny_data(tmp_path_factory.mktemp("data"))
    base = tiny_config(root, objective="regression", loss="laplace")
    config = replace(base, network=replace(base.network, out_channels=2), sampling=SamplingConfig(sampler="regression"))
    run_dir = tmp_path_factory.mktemp("run") / "probabilistic"
    Trainer(config, run_dir, progress=False).fit()
    return run_dir, root


def test_evaluate_calibrates_its_predicted_std_from_one_evaluation(probabilistic_run, tmp_path):
    run_dir, _ = probabilistic_run
    assert evaluate.main(["--checkpoint", str(run_dir), "--levels", "level_09", "--device", "cpu", "--no-progress",
                          "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "evaluation.json").read_text())
    level = record["levels"]["level_09"]
    assert record["sampling"]["samples"] == 1 and np.isfinite(level["model"]["psnr_fit"])
    raw = level["calibration"]["raw"]
    assert 0 <= raw["coverage90"] <= 1 and raw["width90"] > 0 and -1 <= raw["rank_correlation"] <= 1
    assert {"curve", "interval"} <= set(record["calibration"]) and {"curve", "interval"} <= set(level["calibration"])
    assert "posterior" not in level["quality"]["model"]  # no samples: no posterior check
    assert (tmp_path / "calibration_level_09.png").is_file()


def test_predict_writes_its_predicted_std_without_samples(probabilistic_run, tmp_path, capsys):
    run_dir, _ = probabilistic_run
    image = tmp_path / "cell.tif"
    tifffile.imwrite(image, np.random.default_rng(0).random((40, 36), dtype=np.float32))
    assert predict.main(["--checkpoint", str(run_dir), "--input", str(image), "--output", str(tmp_path / "out"),
                         "--std", "--quiet", "--device", "cpu", "--no-preview"]) == 0
    output, std = (tifffile.imread(tmp_path / "out" / f"cell_sr{suffix}.tif") for suffix in ("", "_std"))
    assert output.shape == std.shape and 0 <= output.min() and output.max() <= 1 and (std > 0).all()
    assert "predicted std" in read_metadata(tmp_path / "out" / "cell_sr_std.tif")["content"]
    capsys.readouterr()
    assert predict.main(["--checkpoint", str(run_dir), "--input", str(image), "--output", str(tmp_path / "eight"),
                         "--samples", "8", "--std", "--quiet", "--device", "cpu"]) == 1
    assert "--samples 8" in capsys.readouterr().err


def test_published_with_its_calibration_predict_writes_the_calibrated_std(probabilistic_run, tmp_path):
    from experiments import publish

    run_dir, _ = probabilistic_run
    assert evaluate.main(["--checkpoint", str(run_dir), "--levels", "level_09", "--device", "cpu", "--no-progress",
                          "--out", str(tmp_path / "eval")]) == 0
    fitted = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["calibration"]["interval"]
    assert publish.main(["--checkpoint", str(run_dir / "last.pt"), "--out", str(tmp_path / "model"), "--title", "t",
                         "--summary", "s", "--evaluation", f"tiny={tmp_path / 'eval'}", "--calibration", "interval"]) == 0
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert "probabilistic regression" in card and "`--std` writes the calibrated std" in card
    assert "the model's predicted std" in card and "– (no samples)" in card and "--std --check" in card
    image = tmp_path / "cell.tif"
    tifffile.imwrite(image, np.random.default_rng(0).random((40, 36), dtype=np.float32))
    stds = {}
    for name, checkpoint in (("raw", run_dir / "last.pt"), ("calibrated", tmp_path / "model" / "model.pt")):
        assert predict.main(["--checkpoint", str(checkpoint), "--input", str(image), "--output", str(tmp_path / name),
                             "--std", "--quiet", "--device", "cpu", "--no-preview"]) == 0
        stds[name] = tifffile.imread(tmp_path / name / "cell_sr_std.tif").astype(np.float64)
    assert "calibrated std" in read_metadata(tmp_path / "calibrated" / "cell_sr_std.tif")["content"]
    # [0, 1] units: half of sqrt((scale x predicted)^2 + floor^2) on [-1, 1]
    expected = 0.5 * np.sqrt((fitted["scale"] * 2 * stds["raw"]) ** 2 + fitted["floor"] ** 2)
    np.testing.assert_allclose(stds["calibrated"], expected, rtol=1e-5)


def test_its_package_holds_the_image_channel_that_predict_writes(probabilistic_run, tmp_path):
    packaged_output, raw, test_output = packaged(probabilistic_run[0], tmp_path)
    assert raw.shape[1] == 2 and packaged_output.shape[1] == 1
    assert torch.allclose(packaged_output, raw[:, :1].clamp(-1, 1), atol=1e-5)
    assert np.allclose(test_output, (packaged_output.numpy() + 1) / 2, atol=1e-5)
