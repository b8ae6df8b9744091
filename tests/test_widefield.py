"""The widefield degradation model against physics: photon statistics, PSF width, binning, noise levels."""

import math

import numpy as np
import pytest

from experiments.microscope.widefield import (
    WidefieldModel,
    bin_pixels,
    camera_image,
    expose,
    input_images,
    min_max_scale,
)

FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


def test_flat_field_records_its_photon_budget_within_poisson_error():
    model = WidefieldModel()
    photons, pixels = 300.0, 256 * 256
    recorded = expose(np.ones((256, 256)), 1.0, photons, np.random.default_rng(0), 0.05, model.read_noise(1.6)) * photons
    expected_mean = photons * (1 + 0.05)  # signal plus background, in photoelectrons
    # Poisson: variance = mean; plus the read noise of 9 frames summed: 9 x 1.6^2 e-^2.
    expected_variance = expected_mean + 9 * 1.6**2
    assert abs(recorded.mean() - expected_mean) < 4 * math.sqrt(expected_variance / pixels)
    # The sample variance of n normal-ish values has a relative standard error of sqrt(2 / n) (0.6 % here).
    assert recorded.var() == pytest.approx(expected_variance, rel=5 * math.sqrt(2 / pixels))


@pytest.mark.parametrize("wavelength, na, factor", [(525.0, 1.49, 0.61), (600.0, 1.2, 0.51)])
def test_point_source_ends_with_the_configured_widefield_width(wavelength, na, factor):
    model = WidefieldModel(emission_wavelength_nm=wavelength, numerical_aperture=na, fwhm_per_wavelength_over_na=factor)
    widefield_fwhm = factor * wavelength / na  # nm, the configured resolution
    sim_sigma = 0.5 * widefield_fwhm / FWHM_PER_SIGMA / 31.3  # the point as SIM sees it, in 31.3 nm px
    y, x = np.mgrid[:128, :128]
    point = np.exp(-((x - 64.3) ** 2 + (y - 63.6) ** 2) / (2 * sim_sigma**2))
    image = camera_image(point[None], model)[0].astype(np.float64)  # 62.6 nm pixels, noise-free
    cy, cx = np.mgrid[: image.shape[0], : image.shape[1]] * 62.6
    total = image.sum()
    mean_x, mean_y = (image * cx).sum() / total, (image * cy).sum() / total
    sigma_x = math.sqrt((image * (cx - mean_x) ** 2).sum() / total)
    sigma_y = math.sqrt((image * (cy - mean_y) ** 2).sum() / total)
    for sigma in (sigma_x, sigma_y):
        assert FWHM_PER_SIGMA * sigma == pytest.approx(widefield_fwhm, rel=0.05)


@pytest.mark.parametrize("shape, factor", [((12, 18), 2), ((3, 12, 18), 3), ((2, 1, 8, 8), 4)])
def test_binning_conserves_the_total_intensity(shape, factor):
    image = np.random.default_rng(1).gamma(2.0, 3.0, shape)
    binned = bin_pixels(image, factor)
    assert binned.shape == (*shape[:-2], shape[-2] // factor, shape[-1] // factor)
    np.testing.assert_allclose(binned.sum(axis=(-2, -1)), image.sum(axis=(-2, -1)), rtol=1e-12)
    # One block by hand: the top-left camera pixel collects its factor x factor SIM pixels.
    np.testing.assert_allclose(binned[..., 0, 0], image[..., :factor, :factor].sum(axis=(-2, -1)), rtol=1e-12)


def test_binning_refuses_a_size_it_cannot_divide():
    with pytest.raises(ValueError, match="crop"):
        bin_pixels(np.zeros((10, 9)), 2)


def test_higher_level_higher_signal_to_noise():
    rng = np.random.default_rng(2)
    sim = np.zeros((1, 128, 128))
    sim[0, rng.integers(0, 128, 60), rng.integers(0, 128, 60)] = 1.0  # sparse bright points
    model = WidefieldModel()
    camera = camera_image(sim, model)
    reference = float(np.quantile(camera, 0.999))
    clean = input_images(camera / reference + 0.05)[0]

    def snr(level: int) -> float:
        recorded = expose(camera, reference, model.level_photons(level), np.random.default_rng(level), 0.05,
                          model.read_noise(1.6))
        noisy = input_images(recorded)[0]
        r = np.corrcoef(noisy.ravel(), clean.ravel())[0, 1]  # scale-free: min-max scales each differently
        return r**2 / (1 - r**2)

    ratios = [snr(level) for level in range(1, 10)]
    assert all(a < b for a, b in zip(ratios, ratios[1:])), ratios


def test_photon_budgets_are_geometric_from_level_01_to_level_09():
    model = WidefieldModel(photons=(10.0, 2560.0))
    budgets = [model.level_photons(level) for level in range(1, 10)]
    np.testing.assert_allclose(budgets, [10.0 * 2**k for k in range(9)])
    with pytest.raises(ValueError, match="level"):
        model.level_photons(10)


def test_min_max_scaling_spans_exactly_zero_to_one():
    images = np.random.default_rng(3).normal(5.0, 2.0, (4, 16, 16))
    scaled = min_max_scale(images)
    np.testing.assert_allclose(scaled.min(axis=(1, 2)), 0.0, atol=1e-7)
    np.testing.assert_allclose(scaled.max(axis=(1, 2)), 1.0, atol=1e-6)


@pytest.mark.parametrize("field, value", [("numerical_aperture", 0.0), ("sim_to_widefield_fwhm", 1.0),
                                          ("photons", (100.0, 10.0)), ("frames_averaged", 0)])
def test_model_refuses_unphysical_values(field, value):
    with pytest.raises(ValueError, match=field):
        WidefieldModel(**{field: value})
