"""Sinusoidal time encoding (Listing 11)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ddpm import Diffusion, positional_encoding


@given(t=st.lists(st.integers(0, 5000), min_size=1, max_size=6), half=st.integers(1, 64))
def test_encoding_matches_its_formula(t, half):
    dim = 2 * half
    encoding = positional_encoding(torch.tensor(t), dim)
    assert encoding.shape == (len(t), dim)
    for row, step in enumerate(t):
        for k in range(half):
            angle = step / 10000 ** (2 * k / dim)
            # float32 angles of up to 5000 rad carry ~5e-4 absolute error.
            assert encoding[row, k].item() == pytest.approx(math.sin(angle), abs=1e-3)
            assert encoding[row, half + k].item() == pytest.approx(math.cos(angle), abs=1e-3)


def test_small_steps_match_to_float32_precision():
    dim, t = 256, torch.arange(100)
    k = torch.arange(0, dim, 2, dtype=torch.float64)
    angles = t[:, None].double() / 10000 ** (k / dim)
    expected = torch.cat([angles.sin(), angles.cos()], dim=1).float()
    torch.testing.assert_close(positional_encoding(t, dim), expected, atol=2e-5, rtol=0)


def test_step_zero_is_zeros_then_ones():
    encoding = positional_encoding(torch.tensor([0]), 256)[0]
    assert torch.equal(encoding[:128], torch.zeros(128))
    assert torch.equal(encoding[128:], torch.ones(128))


def test_distinct_steps_give_distinct_encodings():
    encoding = positional_encoding(torch.arange(2000), 256).double()
    distances = torch.cdist(encoding, encoding) + torch.eye(2000, dtype=torch.float64) * 1e9
    assert distances.min() > 1e-3


def test_tutorial_shape_t_column_is_accepted():
    t = torch.tensor([3, 7])
    torch.testing.assert_close(positional_encoding(t[:, None], 16), positional_encoding(t, 16))


@pytest.mark.parametrize("dim", [0, 7])
def test_odd_width_is_refused(dim):
    with pytest.raises(ValueError, match="even"):
        positional_encoding(torch.tensor([1]), dim)


@pytest.mark.parametrize("t", [0, 1, 2, 500, 1999])
def test_the_diffusion_table_holds_listing_11_at_each_step(t):
    """The sampling loop and the training loss look encodings up in ``Diffusion.time_encodings``; row t
    must be Listing 11 at t itself (sin(t / 10000^(2k/D)) then cos), not at a neighbouring step."""
    dim = 16
    diffusion = Diffusion(steps=2000, time_encoding_dim=dim)
    expected = [math.sin(t / 10000 ** (2 * k / dim)) for k in range(dim // 2)]
    expected += [math.cos(t / 10000 ** (2 * k / dim)) for k in range(dim // 2)]
    expected = torch.tensor(expected, dtype=torch.float32)
    torch.testing.assert_close(diffusion.time_encodings[t], expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(diffusion.encode_time(torch.tensor([t]))[0], expected, atol=1e-3, rtol=0)
