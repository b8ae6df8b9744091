"""The synthetic BioSR look-alike: layout the loader accepts, determinism, and physics that point the right way."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from experiments.pairs.dataset import PairedImageDataset

from experiments.data.layout import list_test_levels
from experiments.microscope.synthetic import (
    TEST_LEVELS,
    SyntheticConfig,
    cross_section,
    filament_points,
    generate,
    render_pairs,
)
from experiments.make_data import main

SMALL = SyntheticConfig(size=32)


def small_set(out: Path, seed: int = 0, batch: int = 256) -> Path:
    generate(out, train=5, validate=3, test_per_level=2, seed=seed, config=SMALL, batch=batch)
    return out


def digest(root: Path) -> dict[str, str]:
    """File path (relative) -> hash of its bytes, for every TIF under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.tif"))}


def test_layout_passes_the_loader_unchanged_with_all_nine_levels(tmp_path):
    root = small_set(tmp_path / "synthetic")
    assert list_test_levels(root) == list(TEST_LEVELS) == [f"level_{i:02d}" for i in range(1, 10)]
    assert len(PairedImageDataset(root, "train")) == 5
    assert len(PairedImageDataset(root, "validate")) == 3
    for level in TEST_LEVELS:
        dataset = PairedImageDataset(root, "test", level=level)
        wf, gt = dataset[1]
        assert len(dataset) == 2 and wf.shape == gt.shape == (1, 32, 32)
    assert sorted(p.name for p in (root / "test_gt").iterdir()) == ["001.tif", "002.tif"]
    assert (root / "training_wf" / "00000005.tif").exists()  # BioSR's 8-digit, 1-based names


def test_images_are_float32_in_unit_range(tmp_path):
    root = small_set(tmp_path)
    for path in root.rglob("*.tif"):
        image = tifffile.imread(path)
        assert image.dtype == np.float32 and image.shape == (32, 32)
        assert image.min() >= 0 and image.max() <= 1
    assert tifffile.imread(root / "training_gt" / "00000001.tif").max() == 1.0


def test_same_seed_same_bytes_whatever_the_batch_size(tmp_path):
    a = digest(small_set(tmp_path / "a", seed=4))
    b = digest(small_set(tmp_path / "b", seed=4, batch=2))
    c = digest(small_set(tmp_path / "c", seed=5))
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_existing_data_set_is_not_overwritten_silently(tmp_path):
    small_set(tmp_path)
    with pytest.raises(FileExistsError, match="--overwrite"):
        small_set(tmp_path)
    generate(tmp_path, train=2, validate=1, test_per_level=1, config=SMALL, overwrite=True)
    assert len(list((tmp_path / "training_gt").iterdir())) == 2


def test_test_levels_share_structure_and_get_less_noisy():
    config = SyntheticConfig(size=64)
    gt, inputs, levels = render_pairs("test", range(6), seed=0, config=config, levels=list(range(1, 10)))
    assert inputs.shape == (9, 6, 64, 64) and list(levels) == list(range(1, 10))
    # The least noisy level is the reference: the deviation from it must fall steadily with the level.
    noise = [float(np.abs(inputs[i] - inputs[8]).mean()) for i in range(8)]
    assert all(a > b for a, b in zip(noise, noise[1:])), noise
    # Inputs follow the same structures as their targets at every level.
    for level_inputs in inputs[[0, 8]]:
        for wf, target in zip(level_inputs, gt):
            assert np.corrcoef(wf.ravel(), target.ravel())[0, 1] > 0.3


def test_input_is_blurrier_than_target():
    gt, inputs, _ = render_pairs("test", range(4), seed=1, config=SyntheticConfig(size=64), levels=[9])
    wf = inputs[0]  # the least noisy level, so that noise does not pass for detail

    def high_frequency_share(images: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft2(images - images.mean((1, 2), keepdims=True))) ** 2
        frequency = np.hypot(*np.meshgrid(np.fft.rfftfreq(64), np.fft.fftfreq(64)))
        return float(spectrum[:, (frequency > 0.15) & (frequency < 0.25)].sum() / spectrum.sum())

    assert high_frequency_share(gt) > 5 * high_frequency_share(wf)


def test_training_pairs_mix_the_levels():
    _, _, levels = render_pairs("train", range(60), seed=0, config=SMALL)
    assert set(levels) == set(range(1, 10))


def test_filaments_are_long_and_gently_curving():
    rng = np.random.default_rng(0)
    positions, weights = filament_points(rng, SyntheticConfig())
    count = len(positions)
    assert SyntheticConfig().filaments[0] <= count <= SyntheticConfig().filaments[1]
    steps = np.diff(positions, axis=1)
    np.testing.assert_allclose(np.hypot(*steps.transpose(2, 0, 1)), 0.5, rtol=1e-6)  # fixed step
    turn = np.abs(np.diff(np.arctan2(steps[..., 1], steps[..., 0]), axis=1))
    turn = np.minimum(turn, 2 * np.pi - turn)
    assert turn.max() / 0.5 <= SyntheticConfig().max_curvature * 1.01  # curvature within the bound
    lengths = (weights > 0).sum(1) * 0.5
    assert lengths.min() >= 0.4 * 128 - 1


def test_cross_section_runs_across_a_filament():
    image = np.zeros((41, 41))
    image[:, 20] = 1.0  # a vertical line
    image[:, 19] = image[:, 21] = 0.5
    line = cross_section(image, half_length=8)
    direction = line[:, -1] - line[:, 0]
    assert abs(direction[1]) < 1e-9 and abs(direction[0]) == pytest.approx(16)  # horizontal


@pytest.mark.slow
def test_command_line_writes_data_and_preview(tmp_path):
    main(["--out", str(tmp_path), "--train", "3", "--validate", "2", "--test-per-level", "2", "--size", "64"])
    assert (tmp_path / "synthetic_preview.png").stat().st_size > 10_000
    assert len(PairedImageDataset(tmp_path, "test", level="level_01")) == 2
    torch.testing.assert_close(
        PairedImageDataset(tmp_path, "test", level="level_01")[0][1], PairedImageDataset(tmp_path, "test")[0][1]
    )
