"""The prediction command end to end on a tiny checkpoint: files, folders and stacks of every dtype in,
float32 TIFs with metadata out, reproducible by seed, never overwriting an input, clear errors.

(Seamless tiling itself, e.g. an identity model over 300 x 200, is tested in test_tiling.py.)
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from experiments.checkpoint import file_digest
from experiments.config.schema import DiffusionConfig, RunConfig, SamplingConfig, TrainConfig
from experiments.inference.loading import InferenceError, load_for_inference
from experiments.inference.predictor import FrameRequest, frame_generator
from ddpm.settings import UsageError
from experiments.inference.sampling import PREDICTION_SAMPLING, Sampling, prediction_sampling, sampling_from_flags
from experiments.inference.tiling import TileLayout
from experiments.inference.frames import upsample_frames
from experiments.predict import main
from experiments.image_io.tif_io import read_metadata
from experiments.build import build_model
from unet import UNetConfig

TINY = RunConfig(
    name="tiny",
    diffusion=DiffusionConfig(steps=10, beta_start=1e-4, beta_end=0.1),
    network=UNetConfig(channels=(4, 8), base_channels=(8,), attention=(False, False), time_encoding_dim=8),
    train=TrainConfig(device="cpu"),
    sampling=SamplingConfig(sampler="ddim", sampling_steps=3),
)
# Tiles of 32 with the tiny network keep every call well under a second.
FAST = ["--tile", "32", "--overlap", "8", "--quiet", "--device", "cpu"]
RNG = np.random.default_rng(0)


def save_checkpoint(path: Path, config: RunConfig = TINY, ema: dict | None = None) -> Path:
    """A checkpoint in the trainer's format, with the keys prediction reads (random, untrained weights)."""
    torch.manual_seed(0)
    payload = {"model": build_model(config, torch.device("cpu")).state_dict(), "config": config.to_dict()}
    if ema is not None:
        payload["ema"] = ema
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("run") / "last.pt")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder with an odd-sized uint8 image, a 3-frame uint16 stack and a float32 image in [0, 1]."""
    folder = tmp_path_factory.mktemp("cells")
    tifffile.imwrite(folder / "a_uint8.tif", RNG.integers(0, 256, (70, 50), dtype=np.uint8))
    stack = RNG.integers(0, 65536, (3, 41, 37), dtype=np.uint16)
    tifffile.imwrite(folder / "b_stack.tif", stack, photometric="minisblack")
    tifffile.imwrite(folder / "c_float.tiff", RNG.random((33, 45), dtype=np.float32))
    return folder


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(arg) for arg in args])
    return code, capsys.readouterr().err


def test_folder_of_every_dtype_gives_float32_outputs_with_frames_and_metadata(capsys, checkpoint, inputs, tmp_path):
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", inputs, "--output", tmp_path, "--seed", 7, *FAST)
    assert code == 0, err
    expected = {"a_uint8": (70, 50), "b_stack": (3, 41, 37), "c_float": (33, 45)}
    for stem, shape in expected.items():
        output = tifffile.imread(tmp_path / f"{stem}_sr.tif")
        assert output.dtype == np.float32 and output.shape == shape
        assert np.isfinite(output).all() and output.min() >= 0.0 and output.max() <= 1.0  # DDIM clamps x0
        assert (tmp_path / f"{stem}_sr_preview.png").stat().st_size > 0
        meta = read_metadata(tmp_path / f"{stem}_sr.tif")
        assert meta["checkpoint_sha256"] == file_digest(checkpoint)
        assert meta["checkpoint"] == str(checkpoint.resolve())
        assert meta["seed"] == 7
        default = PREDICTION_SAMPLING  # the prediction default, not the checkpoint's training-time sampler
        assert (meta["sampler"], meta["sampling_steps"], meta["samples"]) == (default.sampler, default.sampling_steps, 1)
        assert meta["frames"] == (3 if stem == "b_stack" else 1)
        assert Path(meta["source"]).name.startswith(stem) and meta["version"] and meta["weights"] == "model"
    assert not (tmp_path / "a_uint8_sr_std.tif").exists()


def test_output_is_the_sampled_mean_mapped_to_unit_range(capsys, checkpoint, inputs, tmp_path):
    """The stack is scaled as in training (uint16 / 65535 -> [-1, 1]) and written as (v + 1) / 2."""
    source = inputs / "b_stack.tif"
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", tmp_path, *FAST)
    assert code == 0, err
    predictor = load_for_inference(checkpoint, "cpu")
    stack = tifffile.imread(source)
    model_in = torch.from_numpy((stack / 65535.0 - 0.5) / 0.5).float()[:, None]
    sampling = prediction_sampling(predictor.config.sampling)
    # Each frame draws from its own stream of the seed (frame_generator), whatever came before it.
    parts = [predictor.sample(model_in[index : index + 1], FrameRequest(sampling, TileLayout(32, 8)), frame_generator(0, index))
             for index in range(len(model_in))]
    mean = torch.cat([part.mean for part in parts])
    assert parts[0].std is None
    written = tifffile.imread(tmp_path / "b_stack_sr.tif")
    np.testing.assert_allclose(written, (mean[:, 0].numpy() + 1) / 2, atol=1e-5)


def test_each_frame_draws_noise_of_its_own_that_no_other_frame_changes(capsys, checkpoint, tmp_path):
    """Identical frames of a stack get different samples (a stream each), and a frame's output is the same
    whichever frames are sampled with it and in which order (what --resume relies on): both by the outputs
    themselves, not by rebuilding the streams."""
    from experiments.image_io.tif_io import read_input
    from experiments.inference.frames import ScaledInput, super_resolve

    frame = RNG.random((32, 32), dtype=np.float32)
    source = tmp_path / "same.tif"
    tifffile.imwrite(source, np.stack([frame] * 3), photometric="minisblack")
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", tmp_path / "out",
                        "--seed", 4, "--no-preview", *FAST)
    assert code == 0, err
    written = tifffile.imread(tmp_path / "out" / "same_sr.tif")
    for first, second in ((0, 1), (0, 2), (1, 2)):
        assert np.abs(written[first] - written[second]).max() > 1e-2, (first, second)

    predictor = load_for_inference(checkpoint, "cpu")
    scaled = ScaledInput(read_input(source), predictor.config.data.normalization)
    sampling = prediction_sampling(predictor.config.sampling)

    def outputs(frames):
        return {index: result.mean for index, result in super_resolve(predictor, scaled, frames,
                                                                      FrameRequest(sampling, TileLayout(32, 8)), seed=4)}

    alone, reversed_order = outputs([2]), outputs([2, 1, 0])
    np.testing.assert_array_equal(alone[2], written[2])
    for index in range(3):
        np.testing.assert_array_equal(reversed_order[index], written[index])


def test_same_seed_same_output_other_seed_other_output(capsys, checkpoint, inputs, tmp_path):
    source = inputs / "a_uint8.tif"
    for seed, folder in ((1, "first"), (1, "again"), (2, "other")):
        code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", tmp_path / folder,
                            "--seed", seed, "--no-preview", *FAST)
        assert code == 0, err
    first, again, other = (tifffile.imread(tmp_path / f / "a_uint8_sr.tif") for f in ("first", "again", "other"))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3
    assert not (tmp_path / "first" / "a_uint8_sr_preview.png").exists()


def test_std_writes_a_second_tif_and_upsample_doubles_the_size(capsys, checkpoint, inputs, tmp_path, monkeypatch):
    """The two TIFs are the mean and the per-pixel population std of the samples the sampler drew, both in the
    output's units [0, 1]: recomputed here with numpy from the draws themselves ([-1, 1], recorded on their way)."""
    drawn = []
    draw = Sampling.draw

    def recording(self, *args, **kwargs):
        images = draw(self, *args, **kwargs)
        drawn.append(images.double().numpy())
        return images

    monkeypatch.setattr(Sampling, "draw", recording)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", inputs / "c_float.tiff", "--output", tmp_path,
                        "--samples", 3, "--std", "--sampler", "ddim", "--eta", 1.0, "--upsample", *FAST)
    assert code == 0, err
    mean = tifffile.imread(tmp_path / "c_float_sr.tif")
    std = tifffile.imread(tmp_path / "c_float_sr_std.tif")
    assert mean.shape == std.shape == (66, 90)
    assert std.dtype == np.float32
    [samples] = drawn  # one frame: its 3 chains, [3, 1, 1, 66, 90] (no padding: the frame exceeds a tile)
    in_units = (samples[:, 0, 0] + 1) / 2
    np.testing.assert_allclose(mean, in_units.mean(0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(std, in_units.std(0, ddof=0), rtol=0, atol=1e-6)
    assert std.mean() > 0.05  # eta = 1: the samples differ, so a wrong scale cannot hide in rounding
    meta = read_metadata(tmp_path / "c_float_sr_std.tif")
    assert meta["samples"] == 3 and meta["upsample"] is True and "deviation" in meta["content"]


def test_std_with_one_sample_is_refused_before_writing(capsys, checkpoint, inputs, tmp_path):
    out = tmp_path / "out"
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", inputs, "--output", out, "--std", *FAST)
    assert code == 1 and "--samples" in err and "Traceback" not in err
    assert not out.exists()


def test_an_input_is_never_overwritten(capsys, checkpoint, tmp_path):
    """Re-running on a folder that holds an earlier result: a.tif's output would be a_sr.tif, an input."""
    tifffile.imwrite(tmp_path / "a.tif", RNG.integers(0, 256, (20, 20), dtype=np.uint8))
    earlier = RNG.random((20, 20), dtype=np.float32)
    tifffile.imwrite(tmp_path / "a_sr.tif", earlier)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", tmp_path, "--output", tmp_path, *FAST)
    assert code == 1 and "a_sr.tif" in err and "overwrite" in err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a_sr.tif"), earlier)
    assert not (tmp_path / "a_sr_sr.tif").exists()  # refused before any work


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp / "missing.tif", "no such file"),
        (lambda tmp: (tmp / "broken.tif").write_bytes(b"not a tif") and tmp / "broken.tif", "cannot be read"),
        (lambda tmp: tifffile.imwrite(tmp / "i32.tif", np.zeros((8, 8), np.int32)) or tmp / "i32.tif", "not supported"),
    ],
)
def test_bad_inputs_name_the_file_in_one_line(capsys, checkpoint, tmp_path, make, message):
    path = make(tmp_path)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", path, "--output", tmp_path / "out", *FAST)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ") and str(path) in err and message in err


def test_bad_checkpoints_name_the_file(capsys, inputs, tmp_path):
    missing = tmp_path / "none.pt"
    code, err = run_cli(capsys, "--checkpoint", missing, "--input", inputs, "--output", tmp_path / "out", *FAST)
    assert code == 1 and str(missing) in err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 64)
    code, err = run_cli(capsys, "--checkpoint", garbage, "--input", inputs, "--output", tmp_path / "out", *FAST)
    assert code == 1 and str(garbage) in err and "Traceback" not in err


def test_unconditional_checkpoint_is_refused(tmp_path):
    network = replace(TINY.network, in_channels=1)
    config = replace(TINY, network=network, train=TrainConfig(conditional=False))
    with pytest.raises(InferenceError, match="without a low-resolution condition"):
        load_for_inference(save_checkpoint(tmp_path / "gen.pt", config), "cpu")


def test_ema_weights_are_preferred(tmp_path):
    weights = build_model(TINY, torch.device("cpu")).state_dict()
    ema = {name: torch.full_like(value, 0.5) for name, value in weights.items()}
    predictor = load_for_inference(save_checkpoint(tmp_path / "ema.pt", ema=ema), "cpu")
    assert predictor.weights == "ema"
    assert all(torch.equal(value, ema[name]) for name, value in predictor.model.state_dict().items())
    assert not predictor.model.training and predictor.size_multiple == 2


def test_sampling_options_map_onto_the_checkpoint_settings():
    base = SamplingConfig(sampler="simple", variance="beta_tilde", samples=1)
    assert sampling_from_flags(base, 10, sampler="ddim").sampling_steps == 10  # default 50, capped at T
    ddim = sampling_from_flags(base, 2000, sampler="ddim", eta=0.5, samples=4)
    assert (ddim.sampler, ddim.sampling_steps, ddim.eta, ddim.samples, ddim.variance) == ("ddim", 50, 0.5, 4, None)
    assert sampling_from_flags(base, 10) == base  # no options: the checkpoint's own settings
    for bad, option in (
        (dict(sampling_steps=5), "--sampling-steps"),
        (dict(sampler="ddim", sampling_steps=11), "1..10"),
        (dict(sampler="ddim", sampling_steps=0), "--sampling-steps must be >= 1, got 0"),
        (dict(sampler="ddim", eta=2.0), "--eta must be >= 0 and <= 1, got 2.0"),
        (dict(sampler="ddim", eta=float("nan")), "--eta must be >= 0 and <= 1, got nan"),
        (dict(samples=0), "--samples must be >= 1, got 0"),
        (dict(sampler="ddim", variance="beta"), "--variance"),
    ):
        with pytest.raises(UsageError, match=option.replace(".", r"\.")):
            sampling_from_flags(base, 10, **bad)


def test_upsample_doubles_keeps_constants_and_adds_no_new_extremes():
    frames = np.stack([np.full((5, 7), 3.0, np.float32), RNG.random((5, 7), dtype=np.float32)])
    enlarged = upsample_frames(frames)
    assert enlarged.shape == (2, 10, 14) and enlarged.dtype == np.float32
    np.testing.assert_array_equal(enlarged[0], 3.0)
    assert enlarged[1].min() >= frames[1].min() and enlarged[1].max() <= frames[1].max()


def test_float_file_outside_the_training_range_is_processed_with_a_warning(capsys, checkpoint, tmp_path):
    source = tmp_path / "counts.tif"
    tifffile.imwrite(source, RNG.random((16, 16), dtype=np.float32) * 1000)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", tmp_path / "out", *FAST)
    assert code == 0 and "warning" in err and str(source) in err and "[0, 1]" in err
    assert (tmp_path / "out" / "counts_sr.tif").exists()


@pytest.mark.parametrize("dtype, value", [(np.float32, 3e38), (np.float32, -3e38), (np.float64, 1e300)])
def test_values_that_overflow_when_scaled_are_refused_not_written_as_nan(capsys, checkpoint, tmp_path, dtype, value):
    """Finite in the file, but (v - 0.5) / 0.5 of float32 3e38 exceeds float32's 3.4e38: an error naming
    the file and exit status 1, never an all-NaN output with status 0."""
    source = tmp_path / "huge.tif"
    image = RNG.random((16, 16)).astype(dtype)
    image[3, 4] = value
    tifffile.imwrite(source, image)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", tmp_path / "out", *FAST)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and str(source) in err
    assert not (tmp_path / "out" / "huge_sr.tif").exists()


def test_two_channel_interleaved_input_needs_reduce_and_gives_one_full_width_frame(capsys, checkpoint, tmp_path):
    source = tmp_path / "two.tif"
    tifffile.imwrite(source, RNG.random((20, 24, 2), dtype=np.float32), photometric="minisblack", planarconfig="contig")
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", tmp_path / "out", *FAST)
    assert code == 1 and str(source) in err and "--reduce" in err
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", tmp_path / "out",
                        "--reduce", "mean", *FAST)
    assert code == 0, err
    assert tifffile.imread(tmp_path / "out" / "two_sr.tif").shape == (20, 24)


@pytest.mark.parametrize("seed", ["-1", str(2**40)])
def test_a_seed_out_of_range_is_refused_in_one_line(capsys, checkpoint, inputs, tmp_path, seed):
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", inputs, "--output", tmp_path, "--seed", seed, *FAST)
    assert code == 1 and "must be >= 0 and <= 4294967295" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())
