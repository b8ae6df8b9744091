"""Pixel scaling as the tutorial's ToTensor + Normalize(0.5, 0.5) sees it, and CSBDeep percentiles."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.data.normalization import (
    from_model_range,
    normalize,
    percentile_normalize,
    to_model_range,
    to_unit_range,
)


def test_floats_are_taken_as_they_are():
    values = np.array([[0.0, 0.25], [1.0, 1.5]], dtype=np.float64)
    unit = to_unit_range(values)
    assert unit.dtype == np.float32
    np.testing.assert_array_equal(unit, values.astype(np.float32))


def test_uint8_is_divided_by_255():
    values = np.array([[0, 51], [255, 128]], dtype=np.uint8)
    np.testing.assert_allclose(to_unit_range(values), values / 255.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint32, np.int32])
def test_other_integers_are_divided_by_their_dtype_maximum(dtype):
    top = np.iinfo(dtype).max
    values = np.array([[0, top // 4], [top // 2, top]], dtype=dtype)
    unit = to_unit_range(values)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, values / float(top), rtol=1e-6)
    assert unit.max() == 1.0


def test_tutorial_normalization_matches_torchvision():
    from torchvision import transforms

    rng = np.random.default_rng(0)
    for image in (rng.random((8, 8), dtype=np.float32), rng.integers(0, 256, (8, 8), dtype=np.uint8)):
        expected = transforms.Normalize((0.5,), (0.5,))(transforms.ToTensor()(image))[0].numpy()
        np.testing.assert_allclose(normalize(image, "tutorial"), expected, atol=1e-6)


@given(st.floats(-10, 10, allow_nan=False))
def test_model_range_round_trips(value):
    array = np.array([value], dtype=np.float32)
    np.testing.assert_allclose(from_model_range(to_model_range(array)), array, atol=1e-5)
    assert to_model_range(np.float32([0.0, 0.5, 1.0])).tolist() == [-1.0, 0.0, 1.0]


def test_percentiles_map_to_zero_and_one():
    values = np.arange(1000, dtype=np.uint16)
    unit = percentile_normalize(values, (1.0, 99.0))
    low, high = np.percentile(values.astype(np.float32), [1.0, 99.0])
    np.testing.assert_allclose(unit, (values - low) / (high - low), atol=1e-6)
    # Beyond the percentiles the values are kept, not clipped (as in CSBDeep).
    assert unit.min() < 0 and unit.max() > 1
    model = normalize(values, "percentile", (1.0, 99.0))
    np.testing.assert_allclose(model, 2 * unit - 1, atol=1e-5)


def test_percentiles_do_not_depend_on_dtype_scaling():
    image = np.random.default_rng(1).integers(0, 4000, (16, 16)).astype(np.uint16)
    np.testing.assert_allclose(
        normalize(image, "percentile"), normalize(image.astype(np.float32), "percentile"), atol=1e-4
    )


def test_constant_image_stays_finite_under_percentiles():
    assert np.isfinite(percentile_normalize(np.full((4, 4), 7.0))).all()


def test_bad_options_name_the_choices():
    with pytest.raises(ValueError, match="tutorial"):
        normalize(np.zeros((2, 2)), "minmax")
    with pytest.raises(ValueError, match="low < high"):
        percentile_normalize(np.zeros((2, 2)), (99.0, 1.0))
    with pytest.raises(TypeError, match="dtype"):
        to_unit_range(np.zeros((2, 2), dtype=np.complex64))
