"""Predict and refine (``--train.objective residual``, :mod:`ddpm.residual`): a diffusion of the target minus a frozen
regression's output. Sampling returns the regression output plus the sampled residual; a refiner that predicts a
zero residual returns the regression output; the regression stays frozen and travels inside the checkpoint; and
train, evaluate, predict, export and resume take the model like any checkpoint, at tiny size."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import tifffile
import torch

from ddpm import Diffusion
from ddpm.residual import refined, refiner_condition, residual_of
from ddpm.settings import UsageError
from experiments import evaluate, predict
from experiments.build import ResidualModel, base_of, build_model
from experiments.checkpoint import read_checkpoint
from experiments.config.presets import RESIDUAL
from experiments.config.schema import SamplingConfig, check_consistency
from experiments.inference.loading import load_for_inference
from experiments.inference.predictor import FrameRequest
from experiments.inference.sampling import Sampling
from experiments.training.trainer import Trainer
from training_helpers import make_tiny_data, tiny_config
from unet import UNetConfig, build_network


class ZeroResidual(torch.nn.Module):
    """A refiner whose every data prediction is a zero residual: it returns the noise that Eq. 7 / 27 turns into
    x0 = 0 at the step whose encoding it is given."""

    def __init__(self, diffusion: Diffusion):
        super().__init__()
        self.diffusion = diffusion

    def forward(self, x, encoding):
        t = int((self.diffusion.time_encodings - encoding[:1]).abs().sum(1).argmin())
        return x[:, -1:] * self.diffusion.tables.x0_coef_xt[t] / self.diffusion.tables.x0_coef_noise[t]


def test_the_residual_round_trip_and_the_refiners_condition():
    generator = torch.Generator().manual_seed(0)
    x0, base, condition = (torch.rand(2, 1, 8, 8, generator=generator) * 2 - 1 for _ in range(3))
    assert torch.equal(refined(residual_of(x0, base), base), x0.clamp(-1, 1))  # the target comes back
    assert torch.equal(refined(torch.zeros_like(base), base), base)
    assert torch.equal(refined(torch.full_like(base, 5.0), base), torch.ones_like(base))  # the target's range
    both = refiner_condition(condition, base)
    assert both.shape == (2, 2, 8, 8) and torch.equal(both[:, :1], condition) and torch.equal(both[:, 1:], base)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp2m", "x0"])
def test_a_zero_residual_refiner_returns_the_regression_output(sampler):
    diffusion = Diffusion(steps=20, beta_start=1e-3, beta_end=0.2, time_encoding_dim=8)
    generator = torch.Generator().manual_seed(1)
    condition, base = torch.rand(3, 1, 8, 8, generator=generator), torch.rand(3, 1, 8, 8, generator=generator) * 2 - 1
    drawer = Sampling(SamplingConfig(sampler=sampler, sampling_steps=5, samples=2).resolved(20), diffusion)
    images = drawer.draw(ZeroResidual(diffusion), condition, generator, base=base)
    assert images.shape == (2, 3, 1, 8, 8)
    torch.testing.assert_close(images, base.expand_as(images), atol=1e-6, rtol=0)


def test_sampling_returns_the_regression_output_plus_the_sampled_residual():
    diffusion = Diffusion(steps=20, beta_start=1e-3, beta_end=0.2, time_encoding_dim=8)
    torch.manual_seed(0)
    refiner = build_network(UNetConfig(in_channels=3, channels=(4, 8), base_channels=(8,), attention=(False, False),
                                       time_encoding_dim=8)).eval()
    condition, base = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16) * 2 - 1
    drawer = Sampling(SamplingConfig(sampler="ddim", sampling_steps=4, eta=1.0, samples=3).resolved(20), diffusion)
    with torch.no_grad():
        images = drawer.draw(refiner, condition, torch.Generator().manual_seed(2), base=base)
        residuals = drawer.draw(refiner, refiner_condition(condition, base), torch.Generator().manual_seed(2))
    assert torch.equal(images, (base + residuals).clamp(-1, 1))
    assert images.std(0).mean() > 0  # the samples differ: the residual is drawn, not the base repeated


def test_the_preset_and_its_consistency_checks():
    check_consistency(RESIDUAL)
    assert RESIDUAL.network.in_channels == 3 and RESIDUAL.train.base == "pretrained/regression/model.pt"
    with pytest.raises(UsageError, match="--train.base FILE"):
        check_consistency(replace(RESIDUAL, train=replace(RESIDUAL.train, base=None)))
    with pytest.raises(UsageError, match="drop --train.base"):
        check_consistency(replace(RESIDUAL, train=replace(RESIDUAL.train, objective="diffusion")))
    with pytest.raises(UsageError, match="not --train.init"):
        check_consistency(replace(RESIDUAL, train=replace(RESIDUAL.train, init="x.pt")))
    with pytest.raises(UsageError, match="--network.in_channels 3"):
        build_model(replace(RESIDUAL, network=replace(RESIDUAL.network, in_channels=2)), torch.device("cpu"))


@pytest.fixture(scope="module")
def residual_run(tmp_path_factory):
    """A tiny regression, and a tiny residual run refining it."""
    root = make_tiny_data(tmp_path_factory.mktemp("data"))
    runs = tmp_path_factory.mktemp("runs")
    regression = replace(tiny_config(root, objective="regression"), sampling=SamplingConfig(sampler="regression"))
    Trainer(regression, runs / "regression", progress=False).fit()
    config = tiny_config(root, objective="residual", base=str(runs / "regression" / "last.pt"))
    config = replace(config, network=replace(config.network, in_channels=3),
                     sampling=SamplingConfig(sampler="ddim", sampling_steps=5))
    trainer = Trainer(config, runs / "residual", progress=False)
    trainer.fit()
    return runs, config, trainer


def test_the_regression_stays_frozen_and_travels_in_the_checkpoint(residual_run):
    runs, _, trainer = residual_run
    regression = read_checkpoint(runs / "regression" / "last.pt").sampling_weights()[1]
    residual = read_checkpoint(runs / "residual" / "last.pt")
    assert residual.base["config"]["train"]["objective"] == "regression"
    assert residual.base["checkpoint"].endswith("last.pt") and len(residual.base["digest"]) == 16
    for weights in residual.weights.values():  # trained and EMA weights alike
        for name, value in regression.items():
            assert torch.equal(weights[f"base.{name}"], value), name
    assert not any(p.requires_grad for p in trainer.model.base.parameters())
    # the optimiser holds the refiner's parameters alone
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in trainer.model.refiner.parameters()}


def test_loaded_it_samples_the_base_plus_a_residual(residual_run):
    runs, _, _ = residual_run
    predictor = load_for_inference(runs / "residual", "cpu")
    regression = load_for_inference(runs / "regression", "cpu")
    assert isinstance(predictor.model, ResidualModel)
    widefield = torch.rand(1, 1, 40, 36) * 2 - 1
    request = FrameRequest(SamplingConfig(sampler="regression"))
    expected = regression.sample(widefield, request, torch.Generator().manual_seed(0)).mean
    from experiments.inference.tiling import pad_to_tile, tiled_network

    padded, top, left = pad_to_tile(widefield, predictor.tile)
    base = predictor.model.base_output(padded, lambda net: tiled_network(net, predictor.layout()))
    torch.testing.assert_close(base[..., top : top + 40, left : left + 36], expected, atol=1e-6, rtol=0)
    assert base_of(regression.model, widefield) is None


def test_evaluate_predict_and_export_take_it_like_any_checkpoint(residual_run, tmp_path):
    runs, _, _ = residual_run
    run_dir = runs / "residual"
    assert evaluate.main(["--checkpoint", str(run_dir), "--levels", "level_09", "--samples", "4", "--device", "cpu",
                          "--no-progress", "--out", str(tmp_path / "eval")]) == 0
    level = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["levels"]["level_09"]
    assert np.isfinite(level["model"]["psnr_fit"]) and "posterior" in level["quality"]["model"]
    image = tmp_path / "cell.tif"
    tifffile.imwrite(image, np.random.default_rng(0).random((40, 36), dtype=np.float32))
    assert predict.main(["--checkpoint", str(run_dir), "--input", str(image), "--output", str(tmp_path / "out"),
                         "--samples", "3", "--std", "--hashed-noise", "--quiet", "--device", "cpu", "--no-preview"]) == 0
    output, std = (tifffile.imread(tmp_path / "out" / f"cell_sr{suffix}.tif") for suffix in ("", "_std"))
    assert output.shape == std.shape == (40, 36) and (std >= 0).all() and std.max() > 0
    pytest.importorskip("bioimageio.spec")
    from zipfile import ZipFile

    from experiments.inference.bioimage_export import ExportOptions, build_package
    from experiments.inference.package import load_package, run_package

    package = build_package(run_dir / "last.pt", tmp_path / "model.zip", ExportOptions(test_image=image))
    with ZipFile(package) as archive:
        assert "on its residual" in archive.read("documentation.md").decode()
    module = load_package(package)
    frame = tifffile.imread(image)
    widefield = torch.from_numpy(frame)[None, None]
    scaled = (widefield - widefield.min()) / (widefield.max() - widefield.min()) * 2 - 1
    eager = load_for_inference(run_dir, "cpu").sample(
        scaled, FrameRequest(SamplingConfig(sampler="dpmpp2m", sampling_steps=4), hashed_noise_seed=0),
        torch.Generator().manual_seed(0)).mean
    np.testing.assert_allclose(run_package(module, frame), (eager[0, 0].numpy() + 1) / 2, atol=1e-5)


def test_a_resumed_residual_run_ends_where_an_uninterrupted_one_does(residual_run, tmp_path):
    runs, config, trainer = residual_run
    stopped = Trainer(config, tmp_path / "stopped", progress=False)

    def stop_after_three(t):
        if t.global_step == 3:
            t.request_stop("test")

    with pytest.raises(RuntimeError, match="continue with"):
        stopped.fit(on_step=stop_after_three)
    resumed = Trainer(None, tmp_path / "stopped", resume=True, progress=False)
    resumed.fit()
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


def test_a_base_that_is_not_a_regression_is_refused(residual_run, tmp_path):
    runs, config, _ = residual_run
    with pytest.raises(UsageError, match="its objective is residual"):
        Trainer(replace(config, train=replace(config.train, base=str(runs / "residual" / "last.pt"))), tmp_path / "a",
                progress=False)
    with pytest.raises(UsageError, match="--train.base .*no checkpoint"):
        Trainer(replace(config, train=replace(config.train, base=str(tmp_path / "none.pt"))), tmp_path / "b",
                progress=False)


def test_the_napari_widget_gives_what_predict_gives(residual_run, tmp_path):
    """The widget's route on a layer (samples 2: the output and its std) against predict with the same seed."""
    from experiments.napari_plugin.layer_run import Request, run_request

    runs, _, _ = residual_run
    frame = np.random.default_rng(3).random((32, 40), dtype=np.float32)
    result = run_request(Request(model=runs / "residual" / "last.pt", name="cell", data=frame, scale=(0.0626, 0.0626),
                                 translate=(0.0, 0.0), units=("micrometer", "micrometer"), samples=2))
    names = [options["name"] for _, options in result.layers]
    assert names[:2] == ["cell SR", "cell SR std"], names
    tifffile.imwrite(tmp_path / "cell.tif", frame)
    assert predict.main(["--checkpoint", str(runs / "residual" / "last.pt"), "--input", str(tmp_path / "cell.tif"),
                         "--output", str(tmp_path / "out"), "--samples", "2", "--std", "--pixel-size", "0.0626",
                         "--quiet", "--device", "cpu", "--no-preview"]) == 0
    for layer, suffix in zip(result.layers[:2], ("", "_std")):
        np.testing.assert_allclose(layer[0], tifffile.imread(tmp_path / "out" / f"cell_sr{suffix}.tif"), atol=1e-6)
