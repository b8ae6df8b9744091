"""The degradation's ranges (experiments.microscope.degradation): presets, draws within their ranges, the
real-structure set drawn per window and reproducible, and the fixed preset exactly today's model."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import tifffile

from ddpm.settings import UsageError
from experiments.make_data import main as make_data
from experiments.microscope.biosr_sim import RealStructureConfig, generate, prepare_cell
from experiments.microscope.degradation import (
    DEGRADATIONS,
    FIXED,
    RANDOMIZED,
    Degradation,
    degradation_preset,
    draw,
)
from experiments.microscope.optics import fwhm_nm, read_mrc_otf, BIOSR_488_OTF
from experiments.microscope.widefield import widefield_blur
from test_biosr_sim import SPLIT, crops, digest  # noqa: F401 (crops is a fixture)

SMALL_NATIVE = RealStructureConfig(size=32, task="native")


def test_the_presets_are_the_declared_choices():
    assert DEGRADATIONS == ("fixed", "measured", "randomized")
    assert degradation_preset("fixed") == FIXED and degradation_preset("randomized") == RANDOMIZED
    with pytest.raises(UsageError, match="choose one of"):
        degradation_preset("wild")


@pytest.mark.parametrize("field, value", [("background", (0.3, 0.1)), ("structured_share", (0.0, 1.5)),
                                          ("extra_blur_fwhm_nm", (-1.0, 0.0)), ("photons", (0.0, 10.0))])
def test_a_range_out_of_order_or_bounds_is_refused_naming_its_field(field, value):
    with pytest.raises(UsageError, match=field):
        Degradation(**{field: value})


def test_a_fixed_range_draws_its_value_and_a_range_draws_within_it():
    fixed = draw(FIXED, np.random.default_rng(0))
    assert (fixed.extra_blur_fwhm_nm, fixed.background, fixed.structured_share, fixed.photons) == (0.0, 0.05, 0.0, None)
    draws = [draw(RANDOMIZED, np.random.default_rng(seed)) for seed in range(400)]
    for name in ("extra_blur_fwhm_nm", "background", "structured_share", "haze_fwhm_um", "illumination",
                 "read_noise_per_frame", "photons"):
        values = np.array([getattr(d, name) for d in draws])
        low, high = getattr(RANDOMIZED, name)
        assert values.min() >= low and values.max() <= high
        assert values.max() - values.min() > 0.8 * (high - low) if name != "photons" else True
    # Photons log-uniform: as many draws below the geometric middle as above it.
    photons = np.log([d.photons for d in draws])
    assert abs(np.mean(photons < 0.5 * sum(np.log(RANDOMIZED.photons))) - 0.5) < 0.1


def test_the_measured_preset_blurs_by_the_measured_otf_not_the_gaussian(crops):
    sim = crops["b"][None]
    gaussian = widefield_blur(sim, SMALL_NATIVE.model)
    measured = widefield_blur(sim, SMALL_NATIVE.model, read_mrc_otf(BIOSR_488_OTF))
    # Same width at half maximum, but the measured PSF's wings carry light further: less contrast.
    assert fwhm_nm(read_mrc_otf(BIOSR_488_OTF)) == pytest.approx(SMALL_NATIVE.model.widefield_fwhm_nm, abs=3)
    assert measured.std() < 0.95 * gaussian.std()
    assert measured.sum() == pytest.approx(gaussian.sum(), rel=0.02)


def randomized_set(out, images, seed=0, batch=256):
    config = replace(SMALL_NATIVE, degradation=RANDOMIZED)
    generate(out, train=12, validate=3, test_per_level=4, seed=seed, config=config, cell_split=SPLIT,
             cell_images=images, batch=batch)
    return out


def test_a_randomized_set_is_reproducible_and_independent_of_batching(tmp_path, crops):
    first = digest(randomized_set(tmp_path / "a", crops))
    assert first == digest(randomized_set(tmp_path / "b", crops, batch=5))
    assert first != digest(randomized_set(tmp_path / "c", crops, seed=1))


def test_a_randomized_set_varies_blur_and_background_from_window_to_window(tmp_path, crops):
    fixed_root, random_root = tmp_path / "fixed", randomized_set(tmp_path / "random", crops)
    generate(fixed_root, train=12, validate=3, test_per_level=4, config=SMALL_NATIVE, cell_split=SPLIT, cell_images=crops)

    def smoothness(root):
        # The lag-1 autocorrelation of each training input: higher for a blurrier, hazier window.
        values = []
        for path in sorted((root / "training_wf").glob("*.tif")):
            image = tifffile.imread(path).astype(np.float64)
            image -= image.mean()
            values.append(float((image[:, 1:] * image[:, :-1]).sum() / max((image**2).sum(), 1e-12)))
        return np.array(values)

    fixed, drawn = smoothness(fixed_root), smoothness(random_root)
    assert drawn.std() > 1.5 * fixed.std()
    # The targets are the same windows of the same cells: only the degradation was drawn.
    assert digest(fixed_root / "training_gt") == digest(random_root / "training_gt")


def test_every_level_of_a_test_field_shares_its_drawn_degradation(tmp_path, crops):
    root = randomized_set(tmp_path / "r", crops)
    # With the noise gone (the highest levels), the same field at two levels looks alike.
    high = [tifffile.imread(root / "test_wf" / level / "001.tif").ravel() for level in ("level_08", "level_09")]
    other = tifffile.imread(root / "test_wf" / "level_09" / "002.tif").ravel()
    assert np.corrcoef(*high)[0, 1] > 0.8 > abs(np.corrcoef(high[1], other)[0, 1])


def test_the_fixed_preset_blurs_a_cell_by_todays_gaussian(crops):
    cell = prepare_cell("b", crops["b"], SMALL_NATIVE)
    assert cell.margin == 0
    # Today's relative blur, sqrt(215^2 - 107.5^2) nm FWHM = 2.52 SIM pixels sigma, by a direct mirrored
    # convolution (numpy), away from the edges.
    sigma = math.sqrt(215.0**2 - 107.5**2) / (2 * math.sqrt(2 * math.log(2))) / 31.3
    taps = np.exp(-0.5 * (np.arange(-12, 13) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(crops["b"].astype(np.float64), 12, mode="reflect")
    rows = np.apply_along_axis(lambda v: np.convolve(v, taps, "valid"), 0, padded)
    direct = np.apply_along_axis(lambda v: np.convolve(v, taps, "valid"), 1, rows)
    np.testing.assert_allclose(cell.blurred[16:-16, 16:-16], direct[16:-16, 16:-16], atol=1e-4)


def test_make_data_takes_a_degradation_and_a_psf_file_and_refuses_them_for_drawn_filaments(tmp_path, capsys):
    assert make_data(["--out", str(tmp_path / "f"), "--degradation", "randomized"]) == 1
    assert "--structures biosr-sim" in capsys.readouterr().err
    assert make_data(["--out", str(tmp_path / "g"), "--structures", "biosr-sim", "--psf", str(tmp_path / "none.mrc")]) == 1
    assert "none.mrc: no such OTF file" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
