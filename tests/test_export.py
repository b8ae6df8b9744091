"""The exported package: its TorchScript sampler equals experiments.predict's DDIM with the same hashed x_T,
and bioimageio.core's own model test passes on the zip, offline. Also the hashed noise and OME pixel sizes."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from ddpm import SAMPLERS
from ddpm.hashed_noise import hashed_normal, mix32
from experiments.image_io.images import read_tif
from experiments.inference.loading import load_for_inference
from experiments.predict import main as predict_main
from experiments.inference.scripted_sampler import script_sampler
from experiments.inference.tiling import tiled_network
from test_predict import TINY, save_checkpoint

CPU = torch.device("cpu")


# ------------------------------------------------------------------ hashed noise
def test_hashed_noise_is_standard_normal_and_position_only():
    noise = hashed_normal([2, 1, 200, 200], 3, CPU)
    values = noise.double().flatten()
    # 80,000 draws: mean and std within 5 standard errors of N(0, 1); tail mass as Phi gives.
    assert abs(values.mean().item()) < 5 / 80000**0.5
    assert abs(values.std().item() - 1) < 5 * (0.5 / 80000) ** 0.5
    assert abs((values > 1.959964).double().mean().item() - 0.025) < 5 * (0.025 * 0.975 / 80000) ** 0.5
    # Neighbours and the two images are uncorrelated.
    for a, b in ((noise[0, 0, :, 1:], noise[0, 0, :, :-1]), (noise[0], noise[1])):
        assert abs(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()) < 0.02
    # A pixel's value depends on its position only: a crop of a bigger field, or the field at an offset.
    assert torch.equal(hashed_normal([1, 1, 8, 8], 3, CPU, 4, 2), hashed_normal([1, 1, 16, 16], 3, CPU)[..., 4:12, 2:10])
    assert not torch.equal(hashed_normal([1, 1, 8, 8], 4, CPU), hashed_normal([1, 1, 8, 8], 3, CPU))


def test_mix32_is_a_bijection_on_a_range_and_scripts_to_the_same_numbers():
    assert mix32(torch.arange(1 << 16)).unique().numel() == 1 << 16
    scripted = torch.jit.script(hashed_normal)
    assert torch.equal(scripted([1, 2, 5, 7], 11, CPU, 3, 0), hashed_normal([1, 2, 5, 7], 11, CPU, 3, 0))


# ------------------------------------------------------------------ scripted sampler vs predict
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("run") / "best.pt")


@pytest.mark.parametrize("sampler", ["dpmpp2m", "ddim"])
def test_scripted_sampler_equals_predict_with_hashed_noise(checkpoint, tmp_path, capsys, sampler):
    """On a frame of several tiles: the module tiles the network as predict does, and both equal the
    library's own sampler run on the tiled network from the same hashed x_T."""
    predictor = load_for_inference(checkpoint, "cpu")
    rng = np.random.default_rng(0)
    image = 3 + 40 * rng.random((70, 50), dtype=np.float32)  # any range: both scale by the frame's min / max
    tifffile.imwrite(tmp_path / "wf.tif", image)
    steps = 3
    code = predict_main([
        "--checkpoint", str(checkpoint), "--input", str(tmp_path / "wf.tif"), "--output", str(tmp_path / "out"),
        "--tile", "32", "--overlap", "8", "--quiet", "--device", "cpu", "--no-preview", "--hashed-noise", "--seed", "5",
        "--sampler", sampler, "--sampling-steps", str(steps),
    ])
    assert code == 0, capsys.readouterr().err
    predicted = tifffile.imread(tmp_path / "out" / "wf_sr.tif")
    layout = predictor.layout(32, 8)
    module = script_sampler(predictor.model, predictor.diffusion, sampler, steps, 5, layout)
    condition = torch.from_numpy((image - image.min()) / (image.max() - image.min()) * 2 - 1)[None, None]
    with torch.no_grad():
        scripted = module(condition)[0, 0].numpy()
    np.testing.assert_allclose((scripted + 1) / 2, predicted, rtol=0, atol=1e-5)
    # Independent route: the library's own sampler on the tiled network, with the same x_T.
    x_T = hashed_normal([1, 1, 70, 50], 5, CPU)
    reference = SAMPLERS[sampler](sampling_steps=steps)(
        predictor.diffusion, tiled_network(predictor.model, layout), condition, x_T=x_T, progress=False
    )
    np.testing.assert_allclose(scripted, reference[0, 0].numpy(), rtol=0, atol=1e-5)
    assert np.abs(scripted).mean() > 0.05


# ------------------------------------------------------------------ OME pixel size
def test_predicted_ome_tiff_carries_the_input_pixel_size_halved_by_upsampling(checkpoint, tmp_path, capsys):
    image = np.random.default_rng(1).random((16, 16), dtype=np.float32)
    # The input says 0.0626 µm per pixel in OME; --upsample halves it.
    tifffile.imwrite(tmp_path / "wf.ome.tif", image, ome=True, metadata={"PhysicalSizeX": 62.6, "PhysicalSizeXUnit": "nm",
                                                                        "PhysicalSizeY": 62.6, "PhysicalSizeYUnit": "nm"})
    args = ["--checkpoint", str(checkpoint), "--tile", "32", "--overlap", "8", "--quiet", "--device", "cpu", "--no-preview"]
    assert predict_main([*args, "--input", str(tmp_path / "wf.ome.tif"), "--output", str(tmp_path / "a"), "--upsample",
                         "--samples", "2", "--std"]) == 0, capsys.readouterr().err
    for name in ("wf.ome_sr.tif", "wf.ome_sr_std.tif"):
        with tifffile.TiffFile(tmp_path / "a" / name) as tif:
            assert tif.is_ome
            pixels = tif.ome_metadata.split("<Pixels ")[1]
            assert 'PhysicalSizeX="0.0313"' in pixels and 'PhysicalSizeXUnit="µm"' in pixels
            assert 'PhysicalSizeY="0.0313"' in pixels
    # --pixel-size (µm) overrides; without --upsample it is kept as it is.
    tifffile.imwrite(tmp_path / "plain.tif", image)
    assert read_tif(tmp_path / "plain.tif", pixels=False).pixel_size_um is None
    assert predict_main([*args, "--input", str(tmp_path / "plain.tif"), "--output", str(tmp_path / "b"),
                         "--pixel-size", "0.1"]) == 0
    assert read_tif(tmp_path / "b" / "plain_sr.tif", pixels=False).pixel_size_um == pytest.approx(0.1)


# ------------------------------------------------------------------ the package
@pytest.mark.slow
def test_exported_package_passes_bioimageio_core_test_offline(checkpoint, tmp_path, monkeypatch):
    pytest.importorskip("bioimageio.core", reason="the optional extra is not installed: pip install -e '.[export]'")
    monkeypatch.setenv("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")
    from experiments.inference.bioimage_export import ExportOptions, build_package, preprocess, test_package

    zip_path = build_package(checkpoint, tmp_path / "model.zip", ExportOptions(sampling_steps=2, seed=0, test_side=48))
    summary = test_package(zip_path)
    assert summary.status == "passed", summary.format()
    # The stored test output is the scripted sampler's on the pre-processed test input.
    import zipfile
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        assert {"rdf.yaml", "sampler.pt", "test_input.npy", "test_output.npy", "cover.png", "documentation.md"} <= names
        archive.extractall(tmp_path / "unzipped")
    module = torch.jit.load(str(tmp_path / "unzipped" / "sampler.pt"))
    test_in = np.load(tmp_path / "unzipped" / "test_input.npy")
    expected = np.load(tmp_path / "unzipped" / "test_output.npy")
    with torch.no_grad():
        out = module(torch.from_numpy(preprocess(test_in))).numpy()
    np.testing.assert_allclose(out * 0.5 + 0.5, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("extras", [{}, {"num_classes": 3, "context_dim": 4}])
def test_unet_scripts_to_the_same_numbers(extras):
    from unet import UNet, UNetConfig

    torch.manual_seed(0)
    network = UNet(UNetConfig(channels=(4, 8), base_channels=(8,), attention=(False, True), time_encoding_dim=8, **extras))
    x, encoding = torch.randn(2, 2, 8, 8), torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(torch.jit.script(network.eval())(x, encoding), network(x, encoding))


def test_documented_metrics_are_the_last_evaluated_epoch_of_the_runs_metrics_json(tmp_path):
    """metrics.json holds one row per epoch (training writes a list); only evaluated epochs carry scores."""
    from experiments.inference.bioimage_export import measured_metrics

    rows = [
        {"epoch": 1, "loss": 0.2, "seconds": 3.0, "level_09/psnr": 20.0, "level_09/psnr_mean": 20.5},
        {"epoch": 2, "loss": 0.1, "seconds": 3.0, "level_09/psnr": 22.0, "level_09/psnr_std": 1.0},
        {"epoch": 3, "loss": 0.1, "seconds": 3.0},
    ]
    (tmp_path / "metrics.json").write_text(json.dumps(rows))
    assert measured_metrics(tmp_path / "best.pt") == {"epoch 2, level_09": {"psnr": 22.0}}
    assert measured_metrics(tmp_path / "elsewhere" / "best.pt") is None


@pytest.mark.slow
def test_the_readme_fork_network_trained_on_32_px_images_exports_with_a_larger_test_image(tmp_path, monkeypatch):
    """The fork example of the README (unet/resnet.py) goes through export like the U-Net: its model card
    describes it from its own docstring and settings, and the test tensor's side comes from the given
    image and the network's size_multiple, not from the 32-pixel training images."""
    pytest.importorskip("bioimageio.core", reason="the optional extra is not installed: pip install -e '.[export]'")
    monkeypatch.setenv("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")
    from dataclasses import replace

    from experiments.inference.bioimage_export import ExportOptions, build_package, test_package
    from experiments.training.trainer import Trainer
    from training_helpers import IMAGE_SIZE, make_tiny_data, tiny_config
    from unet import ResNetConfig

    config = replace(tiny_config(make_tiny_data(tmp_path / "data"), epochs=1),
                     network=ResNetConfig(width=8, blocks=2, time_encoding_dim=8))
    Trainer(config, tmp_path / "run", progress=False).fit()
    image = tmp_path / "large.tif"
    tifffile.imwrite(image, np.random.default_rng(0).random((4 * IMAGE_SIZE, 4 * IMAGE_SIZE), dtype=np.float32))
    zip_path = build_package(tmp_path / "run" / "last.pt", tmp_path / "model.zip",
                             ExportOptions(sampling_steps=2, test_image=image))
    summary = test_package(zip_path)
    assert summary.status == "passed", summary.format()
    import zipfile
    with zipfile.ZipFile(zip_path) as archive:
        assert np.load(archive.open("test_input.npy")).shape == (1, 1, 4 * IMAGE_SIZE, 4 * IMAGE_SIZE)
        card = archive.read("documentation.md").decode()
    assert "network kind `resnet`" in card and "plain residual cnn" in card.lower() and "width 8" in card


def test_a_test_image_below_the_declared_minimum_names_the_constraint(checkpoint, tmp_path):
    from experiments.inference.bioimage_export import ExportError, ExportOptions, test_input

    tifffile.imwrite(tmp_path / "small.tif", np.zeros((12, 12), np.float32))
    predictor = load_for_inference(checkpoint, "cpu")
    with pytest.raises(ExportError, match=r"small.tif.*12-pixel test crop.*at least 16 pixels per side"):
        test_input(predictor, ExportOptions(test_image=tmp_path / "small.tif"))
