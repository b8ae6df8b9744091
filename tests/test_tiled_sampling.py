"""Tiled diffusion sampling (issue 11): one noise field per image, so tiled and one-pass sampling agree
and the overlap bands carry the same fine texture as the inside of tiles (no tile grid)."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ddpm import Diffusion
from experiments.config.schema import DiffusionConfig, RunConfig, SamplingConfig, TrainConfig
from experiments.inference.predictor import FrameRequest, Predictor
from experiments.inference.sampling import Sampling, mean_and_spread
from experiments.inference.tiling import TileLayout, tile_positions, tiled_network
from experiments.build import build_diffusion, build_model
from unet import ResNet, ResNetConfig, UNetConfig

TIME_DIM = 8


def sample(model, diffusion, condition, config, generator=None):
    """Mean and spread of ``config.samples`` samples of each input, drawn in one chain."""
    return mean_and_spread(Sampling(config, diffusion).draw(model, condition, generator))


class LocalDenoiser(nn.Module):
    """A noise predictor whose receptive field is ``kernel`` pixels wide, with a time dependence."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(2, 8, kernel, padding=kernel // 2)
        self.time = nn.Linear(TIME_DIM, 8)
        self.conv_out = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor, t_encoding: torch.Tensor) -> torch.Tensor:
        return self.conv_out(torch.tanh(self.conv_in(x) + self.time(t_encoding)[:, :, None, None]))


def predictor_for(model: nn.Module, diffusion: Diffusion, depth: int = 1) -> Predictor:
    network = UNetConfig(channels=(4,) * depth, base_channels=(4,), attention=(False,) * depth, time_encoding_dim=TIME_DIM)
    return Predictor(model.eval(), diffusion, RunConfig(network=network), Path("none.pt"), "", "model", torch.device("cpu"))


SAMPLERS = [
    SamplingConfig(sampler="ddim", sampling_steps=5, eta=0.0),
    SamplingConfig(sampler="ddim", sampling_steps=5, eta=1.0, samples=2),
    SamplingConfig(sampler="simple"),
    SamplingConfig(sampler="x0"),
    SamplingConfig(sampler="dpmpp2m", sampling_steps=4, samples=2),
]


@pytest.mark.parametrize("sampling", SAMPLERS, ids=["ddim-eta0", "ddim-eta1-2samples", "eq11", "appendix-b", "dpmpp2m"])
def test_tiled_sampling_equals_one_pass_sampling_for_a_pixelwise_network(sampling):
    """With a 1 x 1 receptive field every tile predicts exactly what the whole image would, so the only way
    tiled and one-pass samples can agree is the same noise at every pixel and every step."""
    torch.manual_seed(0)
    diffusion = Diffusion(steps=10, beta_start=1e-3, beta_end=0.2, time_encoding_dim=TIME_DIM)
    model = LocalDenoiser(kernel=1)
    condition = torch.rand(2, 1, 40, 56) * 2 - 1
    predictor = predictor_for(model, diffusion)
    tiled = predictor.sample(condition, FrameRequest(sampling, TileLayout(16, 6, 5)), torch.Generator().manual_seed(3))
    tiled_mean, tiled_std = tiled.mean, tiled.std
    generator = torch.Generator().manual_seed(3)  # frames are sampled one after another from one generator
    one_pass = [sample(model, diffusion, frame[None], sampling, generator) for frame in condition]
    torch.testing.assert_close(tiled_mean, torch.cat([mean for mean, _ in one_pass]), atol=1e-5, rtol=0)
    if sampling.samples > 1:
        torch.testing.assert_close(tiled_std, torch.cat([std for _, std in one_pass]), atol=1e-5, rtol=0)


def test_deterministic_ddim_tiled_matches_one_pass_when_the_receptive_field_fits_in_the_overlap():
    """A 3 x 3 network sees zero padding only at a tile's outermost pixel, which the blending window weighs
    by sin^2(pi/2 * 0.5 / overlap) < 0.3 %: tiled and one-pass DDIM (eta 0) must agree to that order."""
    torch.manual_seed(1)
    diffusion = Diffusion(steps=10, beta_start=1e-3, beta_end=0.2, time_encoding_dim=TIME_DIM)
    model = LocalDenoiser(kernel=3)
    condition = torch.rand(1, 1, 64, 72) * 2 - 1
    sampling = SamplingConfig(sampler="ddim", sampling_steps=5, eta=0.0)
    tiled = predictor_for(model, diffusion).sample(condition, FrameRequest(sampling, TileLayout(32, 16)), torch.Generator().manual_seed(0)).mean
    one_pass, _ = sample(model, diffusion, condition, sampling, torch.Generator().manual_seed(0))
    assert (tiled - one_pass).abs().max() < 0.01
    assert (tiled - one_pass).abs().mean() < 1e-3


def high_pass_energy(image: torch.Tensor, mask: torch.Tensor) -> float:
    """Variance of the image minus its 3 x 3 box mean (its finest texture) over the pixels of ``mask``."""
    smooth = F.avg_pool2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return float((image - smooth)[..., mask].var())


def overlap_mask(size: int, tile: int, overlap: int) -> torch.Tensor:
    """[size, size] True where two or more tiles overlap (along rows or columns), as tile_positions lays them."""
    cover = torch.zeros(size, dtype=torch.int64)
    for start in tile_positions(size, tile, overlap):
        cover[start : start + tile] += 1
    shared = cover > 1
    return shared[:, None] | shared[None, :]


def texture_energies(size: int = 300, tile: int = 32, overlap: int = 8) -> dict[str, float]:
    """Fine-texture energy of a tiled prediction in the overlap bands and inside tiles, and of one-pass
    sampling, with the tiny random U-Net of the prediction tests (DDIM, eta 0, 3 steps)."""
    config = RunConfig(
        diffusion=DiffusionConfig(steps=10, beta_start=1e-4, beta_end=0.1),
        network=UNetConfig(channels=(4, 8), base_channels=(8,), attention=(False, False), time_encoding_dim=8),
        train=TrainConfig(device="cpu"),
        sampling=SamplingConfig(sampler="ddim", sampling_steps=3),
    )
    torch.manual_seed(0)
    model, diffusion = build_model(config, torch.device("cpu")).eval(), build_diffusion(config, torch.device("cpu"))
    predictor = Predictor(model, diffusion, config, Path("none.pt"), "", "model", torch.device("cpu"))
    condition = torch.rand(1, 1, size, size) * 2 - 1
    tiled = predictor.sample(condition, FrameRequest(config.sampling, TileLayout(tile, overlap, 64)), torch.Generator().manual_seed(0)).mean
    one_pass, _ = sample(model, diffusion, condition, config.sampling, torch.Generator().manual_seed(0))
    bands = overlap_mask(size, tile, overlap)
    everywhere = torch.ones_like(bands)
    return {
        "overlap bands": high_pass_energy(tiled, bands),
        "inside tiles": high_pass_energy(tiled, ~bands),
        "one pass": high_pass_energy(one_pass, everywhere),
        "max |tiled - one pass|": float((tiled - one_pass).abs().max()),
    }


@pytest.mark.slow  # about 4 s on an idle 2-core CPU
def test_overlap_bands_carry_the_texture_of_tile_interiors_and_of_one_pass_sampling():
    """300 x 300 in 32-pixel tiles: independent samples averaged in the overlaps would lose about a
    third of their fine-texture variance there (w^2 + (1 - w)^2 of the blending weights w)."""
    energy = texture_energies()
    assert energy["overlap bands"] == pytest.approx(energy["inside tiles"], rel=0.05)
    assert energy["overlap bands"] == pytest.approx(energy["one pass"], rel=0.05)
    assert energy["inside tiles"] == pytest.approx(energy["one pass"], rel=0.05)


def tiny_unet_predictor(dtype: torch.dtype, channels_last: bool) -> Predictor:
    """The tiny random U-Net of the prediction tests, in ``dtype`` and memory format, as a Predictor."""
    network = UNetConfig(channels=(4, 8), base_channels=(8,), attention=(False, False), time_encoding_dim=8)
    config = RunConfig(network=network, train=TrainConfig(device="cpu"))
    torch.manual_seed(0)
    model = build_model(config, torch.device("cpu")).to(dtype=dtype).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    diffusion = Diffusion(steps=20, beta_start=1e-4, beta_end=0.2, time_encoding_dim=8, dtype=dtype)
    return Predictor(model, diffusion, config, Path("none.pt"), "", "model", torch.device("cpu"))


@pytest.mark.parametrize("sampling", SAMPLERS[:2], ids=["ddim-eta0", "ddim-eta1-2samples"])
def test_batched_tiles_give_the_tile_by_tile_unbatched_prediction(sampling):
    """Issue 15: pooling tiles into batches changes nothing but speed: same noise field, same tiles, same
    blend. In float64 the kernels' summation order cannot hide a difference behind float32 rounding, so the
    whole chain must agree to 1e-5 (5 x 4 tiles, batches of 16 against one tile per call)."""
    predictor = tiny_unet_predictor(torch.float64, channels_last=False)
    condition = torch.rand(1, 1, 100, 80, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1
    runs = [predictor.sample(condition, FrameRequest(sampling, TileLayout(32, 8, batch)), torch.Generator().manual_seed(0))
            for batch in (16, 1)]
    (batched, batched_std), (unbatched, unbatched_std) = ((run.mean, run.std) for run in runs)
    assert (batched.abs() < 0.99).float().mean() > 0.2  # a real image, not the sampler's clamp at +-1
    torch.testing.assert_close(batched, unbatched, atol=1e-5, rtol=0)
    if sampling.samples > 1:
        torch.testing.assert_close(batched_std, unbatched_std, atol=1e-5, rtol=0)


def test_one_tiled_network_evaluation_in_float32_channels_last_does_not_depend_on_the_batch():
    """The speed layout (float32, channels_last): one step's blended noise prediction over 20 tiles is the
    same within 1e-5 whether the tiles go 16 per call or one by one (float rounding only)."""
    predictor = tiny_unet_predictor(torch.float32, channels_last=True)
    x = torch.rand(1, 2, 100, 80, generator=torch.Generator().manual_seed(3)) * 2 - 1
    encoding = predictor.diffusion.encode_time(torch.tensor([7]))
    results = [tiled_network(predictor.model, TileLayout(32, 8, batch))(x, encoding) for batch in (16, 1)]
    assert results[0].abs().max() > 0.01
    torch.testing.assert_close(results[0], results[1], atol=1e-5, rtol=0)


def test_networks_take_one_time_encoding_row_for_the_whole_batch():
    """The Denoiser contract tiled sampling relies on: a [1, D] encoding acts as that row repeated B times."""
    for model in (tiny_unet_predictor(torch.float32, False).model, ResNet(ResNetConfig(width=8, blocks=2, time_encoding_dim=8))):
        x = torch.randn(5, 2, 16, 16, generator=torch.Generator().manual_seed(0))
        row = torch.randn(1, 8, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(model(x, row), model(x, row.expand(5, -1)), atol=1e-6, rtol=0)


def test_the_progress_bar_counts_every_tile_of_every_step_and_frame(capsys):
    """Issue 15: one bar over the whole prediction, so its ETA covers all of it (2 frames x 3 DDIM steps x
    (4 x 3 tiles of 32 px with >= 8 px overlap over 100 x 80) x 2 samples)."""
    predictor = tiny_unet_predictor(torch.float32, channels_last=False)
    frames = torch.rand(2, 1, 100, 80, generator=torch.Generator().manual_seed(3)) * 2 - 1
    sampling = SamplingConfig(sampler="ddim", sampling_steps=3, eta=0.0, samples=2)
    predictor.sample(frames, FrameRequest(sampling, TileLayout(32, 8, 5), progress=True, desc="cells.tif"),
                     torch.Generator().manual_seed(0))
    rows, columns = math.ceil((100 - 32) / 24) + 1, math.ceil((80 - 32) / 24) + 1
    total = 2 * 3 * rows * columns * 2
    printed = capsys.readouterr().err
    assert f"{total}/{total}" in printed and "cells.tif" in printed and "3 steps of 24 tiles" in printed
