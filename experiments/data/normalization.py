"""Pixel-value normalisation shared by the data loader and by prediction on users' own TIFs.

The model sees images in [-1, 1]. Two routes lead there:

* ``"tutorial"`` (the paper's ToTensor then Normalize(0.5, 0.5)): :func:`to_unit_range` maps the
  stored values to [0, 1] by dtype, then :func:`to_model_range` applies ``(v - 0.5) / 0.5``.
* ``"percentile"`` (CSBDeep style, for data that is not already in [0, 1]):
  :func:`percentile_normalize` maps the low / high percentile of each image to 0 / 1, then
  :func:`to_model_range`. Values outside the percentiles fall outside [-1, 1] on purpose, as in CSBDeep.
"""

from typing import Literal, get_args

import numpy as np

from ddpm.settings import UsageError

Normalization = Literal["tutorial", "percentile"]
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)


def unit_divisor(dtype: np.dtype) -> float:
    """What :func:`to_unit_range` divides pixels of ``dtype`` by: the maximum of an integer type, else 1."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def to_unit_range(array: np.ndarray) -> np.ndarray:
    """Scale stored pixel values to [0, 1] as torchvision's ToTensor would for BioSR's TIFs.

    Floats are taken as they are (BioSR stores float32 in [0, 1]); uint8 is divided by 255; every
    other integer type by its dtype's maximum (e.g. 65535 for uint16); bool becomes 0 / 1.
    Returns float32 with the input's shape.
    """
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    if np.issubdtype(array.dtype, np.integer):
        # Divide in float64: int32 / uint32 maxima are not exact in float32.
        return (array / np.float64(unit_divisor(array.dtype))).astype(np.float32)
    raise TypeError(f"cannot normalise pixels of dtype {array.dtype}: expected an integer, float or bool image")


def percentile_normalize(
    array: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.8), eps: float = 1e-20
) -> np.ndarray:
    """Map the image's ``percentiles[0]`` value to 0 and its ``percentiles[1]`` value to 1 (CSBDeep style).

    ``(v - p_low) / (p_high - p_low + eps)`` over the whole array, returned as float32; values beyond
    the percentiles are kept, not clipped. ``eps`` keeps a constant image finite (it becomes 0).
    """
    low, high = percentiles
    if not 0.0 <= low < high <= 100.0:
        raise UsageError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    values = array.astype(np.float32, copy=False)
    p_low, p_high = np.percentile(values, [low, high])
    return ((values - p_low) / (p_high - p_low + eps)).astype(np.float32)


def to_model_range(unit: np.ndarray) -> np.ndarray:
    """[0, 1] -> [-1, 1] by ``(v - 0.5) / 0.5`` (the tutorial's Normalize(0.5, 0.5)); float32."""
    return ((unit - np.float32(0.5)) / np.float32(0.5)).astype(np.float32, copy=False)


def from_model_range(image: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 1] by ``v * 0.5 + 0.5``, the inverse of :func:`to_model_range`; float32."""
    return (image * np.float32(0.5) + np.float32(0.5)).astype(np.float32, copy=False)


SCALE_RANGE_EPS = 1e-6  # bioimage.io's scale_range default


def min_max_to_model_range(images: np.ndarray) -> np.ndarray:
    """Each image's min -> -1 and max -> 1 over its last two axes: the exported Model Zoo package's
    pre-processing (``scale_range`` with percentiles 0 / 100 and ``eps`` :data:`SCALE_RANGE_EPS`, then
    ``2 v - 1``), so any dtype and range goes in as it is. ``experiments.predict --hashed-noise`` scales so too."""
    images = images.astype(np.float32, copy=False)
    low, high = images.min(axis=(-2, -1), keepdims=True), images.max(axis=(-2, -1), keepdims=True)
    return to_model_range((images - low) / (high - low + np.float32(SCALE_RANGE_EPS)))


def normalize(
    array: np.ndarray, normalization: Normalization = "tutorial", percentiles: tuple[float, float] = (1.0, 99.8)
) -> np.ndarray:
    """Stored pixel values -> model range [-1, 1] (float32) by the chosen ``normalization``.

    Both routes start with :func:`to_unit_range` (a no-op for floats), so a caller may reduce a stack
    in [0, 1] first and pass the float result here. Percentiles do not change under that linear scaling.
    """
    unit = to_unit_range(array)
    if normalization == "tutorial":
        return to_model_range(unit)
    if normalization == "percentile":
        return to_model_range(percentile_normalize(unit, percentiles))
    raise UsageError(f"unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}")
