"""Tiled prediction: tiles cover the image, blending reproduces the input exactly and leaves no seams."""

import math
from itertools import pairwise

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from experiments.inference.tiling import axis_windows, predict_tiled, tile_positions

ODD_SIZES = [(300, 200), (129, 131), (50, 70), (128, 128), (1, 1), (3, 400)]


def identity(tiles: torch.Tensor) -> torch.Tensor:
    assert tiles.shape[2:] == (128, 128), "the tile function must only ever see full tiles"
    return tiles


@st.composite
def layouts(draw):
    tile = draw(st.integers(1, 256))
    return draw(st.integers(1, 3000)), tile, draw(st.integers(0, tile - 1))


@given(layouts())
def test_tile_positions_cover_with_the_requested_overlap(layout):
    length, tile, overlap = layout
    positions = tile_positions(length, tile, overlap)
    assert positions[0] == 0
    assert positions[-1] == max(0, length - tile)  # the last tile is flush with the end
    steps = [b - a for a, b in pairwise(positions)]
    assert all(0 < step <= tile - overlap for step in steps)  # neighbours share >= overlap pixels, no gaps
    # No more tiles than needed: one fewer could not span the image at the maximal stride.
    assert len(positions) == 1 or (len(positions) - 2) * (tile - overlap) < length - tile
    # Evenly spread: overlaps differ by at most one pixel.
    assert not steps or max(steps) - min(steps) <= 1


@pytest.mark.parametrize("tile, overlap", [(128, 128), (128, -1), (0, 0)])
def test_tile_positions_reject_impossible_overlaps(tile, overlap):
    with pytest.raises(ValueError, match="overlap|tile"):
        tile_positions(300, tile, overlap)


@pytest.mark.parametrize("length", [129, 200, 300, 517, 1000])
def test_windows_are_positive_and_sum_to_one_along_an_axis(length):
    """Neighbouring ramps are cos^2 / sin^2 of the same angle, so the windows form a partition of unity."""
    positions = tile_positions(length, 128, 32)
    windows = axis_windows(positions, 128)
    coverage = torch.zeros(length, dtype=torch.float64)
    for start, window in zip(positions, windows, strict=True):
        assert window.min() > 0
        coverage[start : start + 128] += window
    torch.testing.assert_close(coverage, torch.ones(length, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", ODD_SIZES)
def test_identity_reproduces_the_image(size):
    image = torch.randn(1, *size)
    result = predict_tiled(image, identity, tile=128, overlap=32, batch_size=4)
    assert result.shape == image.shape
    torch.testing.assert_close(result, image, rtol=0, atol=1e-6)


def test_identity_reproduces_a_multichannel_batch():
    images = torch.randn(2, 3, 300, 200)
    torch.testing.assert_close(predict_tiled(images, identity), images, rtol=0, atol=1e-6)


def test_result_does_not_depend_on_batch_size():
    image = torch.randn(1, 260, 300)
    fn = lambda tiles: torch.tanh(tiles * 3) + tiles.mean(dim=(1, 2, 3), keepdim=True)  # noqa: E731
    torch.testing.assert_close(predict_tiled(image, fn, batch_size=1), predict_tiled(image, fn, batch_size=7))


def test_output_channels_follow_the_function():
    image = torch.randn(1, 150, 140)
    result = predict_tiled(image, lambda tiles: torch.cat([tiles, 2 * tiles], dim=1))
    assert result.shape == (2, 150, 140)
    torch.testing.assert_close(result[1], 2 * image[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [(300, 200), (50, 70)])
def test_adding_a_constant_adds_it_everywhere(size):
    image = torch.randn(1, *size)
    shifted = predict_tiled(image, lambda tiles: tiles + 5.0)
    torch.testing.assert_close(shifted - image, torch.full_like(image, 5.0), rtol=0, atol=1e-5)
    constant = predict_tiled(image, lambda tiles: torch.full_like(tiles, -2.5))
    torch.testing.assert_close(constant, torch.full_like(image, -2.5), rtol=0, atol=1e-6)


def test_per_tile_constants_blend_without_seams():
    """Tiles on a checkerboard return 0 or 1: the blend must ramp, never jump, between them.

    Along one axis the blend is a convex mix whose weight is a sin^2 ramp over at least ``overlap``
    pixels, so neighbouring pixels differ by at most (max - min) * pi / (2 * overlap).
    """
    overlap, shape = 32, (360, 410)
    columns = len(tile_positions(shape[1], 128, overlap))
    calls = iter(range(10_000))

    def checkerboard(tiles: torch.Tensor) -> torch.Tensor:
        values = []
        for _ in range(len(tiles)):
            index = next(calls)  # tiles arrive row by row
            values.append(float((index // columns + index % columns) % 2))
        return torch.tensor(values).view(-1, 1, 1, 1).expand_as(tiles).clone()

    result = predict_tiled(torch.zeros(1, *shape), checkerboard, overlap=overlap, batch_size=5)[0]
    bound = math.pi / (2 * overlap) + 1e-6
    assert (result[1:] - result[:-1]).abs().max() <= bound
    assert (result[:, 1:] - result[:, :-1]).abs().max() <= bound
    # The tiles' own values survive away from the seams (the blend does not flatten everything).
    assert result.min() < 1e-6 and result.max() > 1 - 1e-6


def test_small_images_are_padded_by_reflection_and_centred():
    image = torch.randn(1, 50, 70)
    seen = []
    predict_tiled(image, lambda tiles: seen.append(tiles.clone()) or tiles)
    tile = seen[0][0, 0]
    torch.testing.assert_close(tile[39:89, 29:99], image[0])  # pad 78 = 39 + 39 rows, 58 = 29 + 29 columns
    torch.testing.assert_close(tile[38, 29:99], image[0, 1])  # reflection mirrors row 1 above row 0


def test_tiny_images_fall_back_to_replication():
    image = torch.randn(1, 2, 3)
    seen = []
    torch.testing.assert_close(predict_tiled(image, lambda tiles: seen.append(tiles.clone()) or tiles), image)
    assert torch.equal(seen[0][0, 0, 0, :63], torch.full((63,), image[0, 0, 0].item()))


def test_unbatched_input_gives_unbatched_output():
    image = torch.randn(2, 140, 130)
    assert predict_tiled(image, identity).shape == (2, 140, 130)


def test_bad_function_output_is_reported():
    with pytest.raises(ValueError, match=r"returned shape \(1, 1, 64, 64\)"):
        predict_tiled(torch.randn(1, 100, 100), lambda tiles: tiles[:, :, :64, :64])


def test_tile_must_fit_the_model_size_multiple():
    with pytest.raises(ValueError, match="multiple of 16"):
        predict_tiled(torch.randn(1, 100, 100), identity, tile=100, size_multiple=16)


def test_progress_bar_counts_tiles(capsys):
    predict_tiled(torch.randn(2, 1, 300, 200), identity, progress=True, desc="cells.tif")
    err = capsys.readouterr().err
    assert "cells.tif" in err and "12/12" in err  # 2 images x 3 rows x 2 columns
