"""Each figure writes a readable PNG of plausible size, from tiny inputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from experiments.figures import (
    plot_forward_process,
    plot_metrics,
    plot_sample_grid,
    plot_time_encodings,
    plot_training_loss,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path) -> np.ndarray:
    """The written file as an RGB array, after checking it really is a non-trivial PNG."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 2_000
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    assert 100 <= array.shape[0] <= 3_000 and 100 <= array.shape[1] <= 3_000
    return array


def images(count: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def history(epochs: int) -> list[dict[str, float]]:
    return [
        {"epoch": epoch, "mae": 0.3 / epoch, "mae_mean": 0.31 / epoch, "mae_std": 0.05, "nrmse": 0.2 / epoch,
         "ssim": 1 - 0.5 / epoch, "ms_ssim": 1 - 0.2 / epoch, "psnr": 15 + epoch}
        for epoch in range(1, epochs + 1)
    ]  # fmt: skip


def test_sample_grid_rows_and_columns(tmp_path):
    plain = read_png(plot_sample_grid(images(6), images(6, seed=1), images(6, seed=2), tmp_path / "plain.png"))
    with_std = read_png(
        plot_sample_grid(
            images(6), images(6, seed=1), images(6, seed=2), tmp_path / "sub" / "std.png",
            title="Epoch 1", extra={"std": images(6).abs()},
        )
    )  # fmt: skip
    two_rows = read_png(plot_sample_grid(images(3), images(3), images(3), tmp_path / "two.png", max_images=2))
    assert with_std.shape[1] > plain.shape[1] * 1.2  # an extra column
    assert two_rows.shape[0] < plain.shape[0] * 0.7  # at most max_images rows (4 by default)


def test_sample_grid_uses_fixed_grey_limits(tmp_path):
    # With limits taken from each image, constant images would all map to one colour; -1 must be black, 1 white.
    black, white = torch.full((1, 1, 16, 16), -1.0), torch.full((1, 1, 16, 16), 1.0)
    pixels = read_png(plot_sample_grid(black, white, white * 0, tmp_path / "limits.png")).reshape(-1, 3)
    assert (pixels.max(axis=1) < 10).sum() > 1_000  # the black input
    grey = (np.abs(pixels.astype(int) - 128) < 10).all(axis=1)
    assert grey.sum() > 1_000  # the target at 0, mid grey
    assert (pixels.min(axis=1) > 245).sum() > 1_000  # the white output (and the background)


def test_sample_grid_rejects_mismatched_counts(tmp_path):
    with pytest.raises(ValueError, match="same number of images"):
        plot_sample_grid(images(2), images(3), images(2), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="single-channel"):
        plot_sample_grid(torch.zeros(2, 3, 8, 8), images(2), images(2), tmp_path / "bad.png")


def test_training_loss(tmp_path):
    path = tmp_path / "loss.png"
    assert plot_training_loss([1.0, 0.5, 0.3, 0.25], path) == path
    read_png(path)
    with pytest.raises(ValueError, match="at least one"):
        plot_training_loss([], tmp_path / "empty.png")


def test_metrics_panels(tmp_path):
    all_five = read_png(plot_metrics(history(3), tmp_path / "metrics.png", baseline={"mae": 0.2, "psnr": 17.0}))
    only_two = read_png(plot_metrics([{"mae": 0.1, "psnr": 20.0}], tmp_path / "two.png"))
    assert all_five.shape[1] > 2 * only_two.shape[1]  # one panel per metric present
    with pytest.raises(ValueError, match="none of the metrics"):
        plot_metrics([{"loss": 1.0}], tmp_path / "none.png")


def test_forward_process(tmp_path):
    few = read_png(plot_forward_process(images(2), [0, 10], tmp_path / "few.png"))
    many = read_png(plot_forward_process(images(5), [0, 10, 100, 500, 1999], tmp_path / "many.png"))
    assert many.shape[1] > 2 * few.shape[1]  # one panel per time step
    with pytest.raises(ValueError, match="one time step per image"):
        plot_forward_process(images(3), [0, 1], tmp_path / "bad.png")


def test_time_encodings(tmp_path):
    t = torch.arange(50, dtype=torch.float32)[:, None]
    encodings = torch.cat([torch.sin(t / 10), torch.cos(t / 10)], dim=1).repeat(1, 8)
    read_png(plot_time_encodings(encodings, tmp_path / "encodings.png"))
    read_png(plot_time_encodings(encodings[::5], tmp_path / "strided.png", stride=5))
    with pytest.raises(ValueError, match="stride"):
        plot_time_encodings(encodings, tmp_path / "bad.png", stride=0)
    with pytest.raises(ValueError, match=r"\[T, D\]"):
        plot_time_encodings(torch.zeros(2, 3, 4), tmp_path / "bad.png")


def test_no_pyplot_figures_are_left_open(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_sample_grid(images(1), images(1), images(1), tmp_path / "grid.png")
    plot_metrics(history(2), tmp_path / "metrics.png")
    assert plt.get_fignums() == before
