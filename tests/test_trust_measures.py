"""Known answers for the trust measures: FRC of exact and of independent images, the FRC cutoff of a
blurred random field against its closed form, re-degradation of an exact preimage, and calibration of
Gaussian samples with a known spread."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.trust.calibration import ErrorModel, calibration, coverage, fit_curve, fit_interval, predicted_error_std
from experiments.trust.measures import apodisation, consistency, fourier_ring_correlation, half_bit_threshold, redegrade
from experiments.trust.figures import plot_calibration, plot_check, plot_frc
from test_figures import read_png


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- Fourier ring correlation ---------------------------------------------------------------------


@pytest.mark.parametrize("window", ["tukey", "hann", "none"])
def test_frc_of_an_image_with_itself_is_one_at_every_ring(window):
    image = torch.rand(64, 64, generator=generator(0), dtype=torch.float64)
    frc = fourier_ring_correlation(image, image, window=window)
    assert torch.allclose(frc.correlation, torch.ones_like(frc.correlation), atol=1e-12)
    assert frc.one_seventh_crossing is None and frc.resolution_px is None  # never falls: resolution at Nyquist


def test_frc_of_independent_noise_stays_within_three_over_root_pixels():
    # Unwindowed, so that every Fourier pixel is an independent draw: the FRC of a ring of n pixels then
    # has mean 0 and std 1 / sqrt(n) (n / 2 independent conjugate pairs). 3 / sqrt(n) is a 3-sigma bound
    # per ring, so over 4 x 64 rings about 0.7 excursions are expected; an FRC whose spread were off by
    # sqrt 2 would have about 9.
    z_scores = []
    for seed in range(4):
        first = torch.randn(128, 128, generator=generator(2 * seed), dtype=torch.float64)
        second = torch.randn(128, 128, generator=generator(2 * seed + 1), dtype=torch.float64)
        frc = fourier_ring_correlation(first, second, window="none")
        z_scores.append(frc.correlation[1:] * frc.pixels[1:].double().sqrt())  # ring 0 is the single mean pixel
    z_scores = torch.cat(z_scores)
    assert (z_scores.abs() > 3).sum() <= 2
    assert z_scores.abs().max() < 4
    # The 1 / sqrt(n) law itself (256 rings, so the std is known to about 5 %).
    assert z_scores.std().item() == pytest.approx(1.0, abs=0.15)


def test_frc_resolution_of_a_blurred_field_matches_the_analytic_cutoff():
    # f = white noise (variance 1) blurred by a Gaussian of width s px, plus independent white noise of
    # variance v in each image. Per frequency k (cycles per pixel = r / N): signal power |H|^2 =
    # exp(-4 pi^2 s^2 (r / N)^2), noise power v, so FRC = SNR / (1 + SNR) with SNR = |H|^2 / v. It is 1/7
    # where SNR = 1/6: r_c = N sqrt(ln(6 / v)) / (2 pi s).
    size, width, log_ratio = 256, 6.0, 30.0  # steep fall-off, so the ring noise moves the crossing little
    noise_variance = 6.0 / math.exp(log_ratio)
    expected_ring = size * math.sqrt(log_ratio) / (2 * math.pi * width)
    frequencies = torch.fft.fftfreq(size, dtype=torch.float64)
    transfer = torch.exp(-2 * math.pi**2 * width**2 * (frequencies[:, None] ** 2 + frequencies[None, :] ** 2))
    white = torch.randn(size, size, generator=generator(5), dtype=torch.float64)
    field = torch.fft.ifft2(torch.fft.fft2(white) * transfer).real
    noise_std = math.sqrt(noise_variance)
    first = field + noise_std * torch.randn(size, size, generator=generator(6), dtype=torch.float64)
    second = field + noise_std * torch.randn(size, size, generator=generator(7), dtype=torch.float64)
    frc = fourier_ring_correlation(first, second, pixel_size_um=0.03, window="none")  # periodic field: no window
    assert frc.one_seventh_crossing == pytest.approx(expected_ring, abs=1.0)
    assert frc.resolution_px == pytest.approx(size / frc.one_seventh_crossing)
    assert frc.resolution_nm == pytest.approx(30.0 * frc.resolution_px)
    # The half-bit threshold lies above 1/7 (0.1716 for large rings), so it is crossed earlier.
    assert frc.half_bit_crossing < frc.one_seventh_crossing


def test_half_bit_threshold_matches_van_heel_and_schatz_constants():
    pixels = torch.tensor([1, 8, 100, 10_000, 10**12])
    published = (0.2071 + 1.9102 / pixels.double().sqrt()) / (1.2071 + 0.9102 / pixels.double().sqrt())
    assert torch.allclose(half_bit_threshold(pixels), published, atol=1e-4)
    assert half_bit_threshold(torch.tensor([10**12])).item() == pytest.approx(3 - 2 * math.sqrt(2), abs=1e-5)


def test_tukey_window_is_flat_in_the_centre_and_zero_at_the_edges():
    window = apodisation(64, "tukey")
    assert torch.all(window[16:48, 16:48] == 1)
    assert window[0, 32] < 0.02 and window.min() >= 0
    with pytest.raises(ValueError, match="tukey"):
        apodisation(64, "hamming")


# --- Re-degradation consistency -------------------------------------------------------------------


def blobs(size: int, centres: torch.Tensor, amplitudes: torch.Tensor, width: float) -> torch.Tensor:
    """Sum of 2-D Gaussians of std ``width`` px, each integrating to its amplitude, sampled at pixel centres."""
    axis = torch.arange(size, dtype=torch.float64)
    rows = (axis[None, :, None] - centres[:, 0, None, None]) ** 2
    columns = (axis[None, None, :] - centres[:, 1, None, None]) ** 2
    gauss = torch.exp(-(rows + columns) / (2 * width**2)) / (2 * math.pi * width**2)
    return (amplitudes[:, None, None] * gauss).sum(0)


def preimage_pair(size: int, blur: float, seed: int = 3, width: float = 1.5):
    """A sparse output of Gaussian blobs and, in closed form, the same blobs blurred by a Gaussian of std
    ``blur``: a Gaussian of std w convolved with one of std s is a Gaussian of std sqrt(w^2 + s^2)."""
    random = generator(seed)
    centres = 24 + (size - 48) * torch.rand(40, 2, generator=random, dtype=torch.float64)
    amplitudes = 50 + 100 * torch.rand(40, generator=random, dtype=torch.float64)
    return blobs(size, centres, amplitudes, width), blobs(size, centres, amplitudes, math.hypot(width, blur))


def redegrade_by_numpy(sr: torch.Tensor, sigma: float, factor: int) -> np.ndarray:
    """The re-degradation by another route: numpy's mirror padding by ceil(4 sigma), its complex 2-D FFT times
    the Gaussian's transfer exp(-2 pi^2 sigma^2 |f|^2), cut back, then the factor x factor block mean."""
    radius = math.ceil(4 * sigma)
    padded = np.pad(sr.numpy(), radius, mode="reflect")
    fy, fx = np.fft.fftfreq(padded.shape[0])[:, None], np.fft.fftfreq(padded.shape[1])[None, :]
    blurred = np.fft.ifft2(np.fft.fft2(padded) * np.exp(-2 * np.pi**2 * sigma**2 * (fy**2 + fx**2))).real
    height, width = sr.shape
    blurred = blurred[radius : radius + height, radius : radius + width]
    return blurred.reshape(height // factor, factor, width // factor, factor).mean((1, 3))


@settings(max_examples=15, deadline=None)
@given(factor=st.sampled_from([1, 2, 3]), blocks=st.tuples(st.integers(5, 7), st.integers(5, 7)),
       sigma=st.just(0.0) | st.floats(0.05, 0.9), seed=st.integers(0, 2**16))
def test_redegrade_equals_the_mirrored_gaussian_blur_by_another_route(factor, blocks, sigma, seed):
    sr = torch.rand(blocks[0] * factor, blocks[1] * factor, generator=generator(seed), dtype=torch.float64)
    np.testing.assert_allclose(redegrade(sr, sigma, factor).numpy(), redegrade_by_numpy(sr, sigma, factor), atol=1e-12)


@pytest.mark.parametrize("factor", [1, 2])
def test_consistency_of_an_exact_preimage_is_zero_and_recovers_the_blur(factor):
    alpha, beta, sigma = 2.5, 0.3, 2.2
    sr, blurred = preimage_pair(128, sigma)
    widefield = alpha * blurred + beta
    if factor > 1:  # the camera pixel integrates over factor x factor output pixels
        widefield = torch.nn.functional.avg_pool2d(widefield[None, None], factor)[0, 0]
    result = consistency(sr.float(), widefield.float())
    assert result.sigma == pytest.approx(sigma, rel=0.01)
    assert result.alpha == pytest.approx(alpha, rel=0.01)
    assert result.beta == pytest.approx(beta, rel=0.01)
    assert result.error_map.shape == widefield.shape and result.error_map.dtype == torch.float32
    inner = result.error_map[result.border : -result.border, result.border : -result.border]
    assert inner.max() < 1e-3 * (widefield.max() - widefield.min())
    assert result.rse < 1e-3 * widefield.std() and result.rsp > 0.99999


def test_consistency_map_lights_up_where_structure_was_invented():
    sr, blurred = preimage_pair(128, 2.0)
    invented = blobs(128, torch.tensor([[64.0, 64.0]], dtype=torch.float64), torch.tensor([120.0]), 1.5)
    result = consistency(sr + invented, blurred + 0.1)
    hot = result.error_map[56:73, 56:73].max()
    elsewhere = result.error_map.clone()
    elsewhere[48:81, 48:81] = 0
    assert hot > 5 * elsewhere[result.border : -result.border, result.border : -result.border].max()
    assert result.rsp < 0.999


def test_consistency_names_mismatched_sizes():
    with pytest.raises(ValueError, match="times an integer"):
        consistency(torch.zeros(100, 100), torch.zeros(30, 30))


# --- Calibration -----------------------------------------------------------------------------------


def gaussian_samples(samples: int, overconfidence: float, seed: int = 11, size: int = 256):
    """Per pixel a true spread sigma (log-uniform over a factor 100), a target drawn from N(mu, sigma^2)
    and ``samples`` draws from N(mu, (sigma / overconfidence)^2): their mean and population std."""
    random = generator(seed)
    mu = torch.rand(size, size, generator=random, dtype=torch.float64)
    sigma = 0.002 * 100 ** torch.rand(size, size, generator=random, dtype=torch.float64)
    target = mu + sigma * torch.randn(size, size, generator=random, dtype=torch.float64)
    draws = mu + sigma / overconfidence * torch.randn(samples, size, size, generator=random, dtype=torch.float64)
    return draws.mean(0), draws.std(0, unbiased=False), target


def test_calibration_of_a_calibrated_sampler_has_near_zero_error():
    mean, std, target = gaussian_samples(32, 1.0)
    curve = calibration(mean, std, target, samples=32)
    assert curve.ence < 0.05  # 5 % of the predicted std, on average over bins
    assert curve.ece < 0.05 * curve.predicted.mean()
    assert torch.allclose(curve.actual, curve.predicted, rtol=0.1)
    model = fit_curve(mean, std, target, samples=32)
    # no floor to speak of: it widens even the least certain bin's error bar by under 5 %
    assert model.scale == pytest.approx(1.0, rel=0.05) and model.floor**2 < 0.1 * float(curve.predicted.min()) ** 2
    assert coverage(mean, std, target, 32) == pytest.approx(0.9, abs=0.01)


def test_the_fitted_error_model_is_the_overconfidence_and_the_floor():
    mean, std, target = gaussian_samples(32, 3.0)
    assert calibration(mean, std, target, samples=32).ence > 0.5
    assert fit_curve(mean, std, target, samples=32).scale == pytest.approx(3.0, rel=0.05)
    # An error no sample shows (the target's own noise, where all samples agree) is the floor.
    noise = 0.01 * torch.randn(target.shape, generator=generator(14), dtype=torch.float64)
    model = fit_curve(mean, std, target + noise, samples=32)
    assert model.scale == pytest.approx(3.0, rel=0.08) and model.floor == pytest.approx(0.01, rel=0.2)
    # Fitted on one set, it calibrates an independent one: the curve and the 90 % interval.
    test_mean, test_std, test_target = gaussian_samples(32, 3.0, seed=12)
    test_target = test_target + 0.01 * torch.randn(test_target.shape, generator=generator(15), dtype=torch.float64)
    assert calibration(test_mean, test_std, test_target, samples=32, model=model).ence < 0.06
    interval = fit_interval(mean, std, target + noise, 32, model)
    assert coverage(test_mean, test_std, test_target, 32, interval) == pytest.approx(0.9, abs=0.01)
    assert coverage(test_mean, test_std, test_target, 32) < 0.6  # raw, three times too narrow


def test_an_error_model_is_checked_and_adds_its_floor_in_quadrature():
    std = torch.tensor([0.0, 0.3, 0.4])
    assert torch.allclose(ErrorModel(2.0, 0.5).error_std(std, 3), torch.hypot(2.0 * std * 2**0.5, torch.tensor(0.5)))
    for bad in ((0.0, 0.1), (1.0, -0.1), (float("nan"), 0.0)):
        with pytest.raises(ValueError, match="scale > 0 and floor >= 0"):
            ErrorModel(*bad)


def test_predicted_error_std_matches_the_spread_of_the_mean_against_a_fresh_draw():
    # Monte Carlo, independent of the formula: N draws and one target from N(0, 1), many times over.
    samples = 4
    draws = torch.randn(200_000, samples + 1, generator=generator(13), dtype=torch.float64)
    error = draws[:, :samples].mean(1) - draws[:, samples]
    std = draws[:, :samples].std(1, unbiased=False)
    predicted_variance = predicted_error_std(std, samples).pow(2).mean()
    assert predicted_variance.item() == pytest.approx(error.pow(2).mean().item(), rel=0.02)


# --- Figures ---------------------------------------------------------------------------------------


def test_check_figure_has_one_column_per_map(tmp_path):
    images = 2 * torch.rand(1, 1, 32, 32, generator=generator(20)) - 1
    coarse = images[:, :, ::2, ::2]  # an input on a coarser grid, as in the integer-ratio case
    with_std = read_png(plot_check(coarse, images, images.abs(), coarse.abs(), tmp_path / "check.png", title="x"))
    without = read_png(plot_check(coarse, images, None, coarse.abs(), tmp_path / "sub" / "plain.png"))
    assert with_std.shape[1] > without.shape[1] * 1.15  # the std column
    with pytest.raises(ValueError, match="same number"):
        plot_check(coarse, images.repeat(2, 1, 1, 1), None, coarse.abs(), tmp_path / "bad.png")


def test_calibration_and_frc_figures_are_written(tmp_path):
    mean, std, target = gaussian_samples(8, 2.0, size=32)
    raw = calibration(mean, std, target, samples=8, bins=5)
    scaled = calibration(mean, std, target, samples=8, bins=5, model=ErrorModel(2.0))
    read_png(plot_calibration({"raw": raw, "calibrated (s = 2)": scaled}, tmp_path / "calibration.png", "a.u."))
    first, second = torch.rand(2, 64, 64, generator=generator(21))
    pair = fourier_ring_correlation(first + second, first - second)
    read_png(plot_frc({"noise": pair, "self": fourier_ring_correlation(first, first)}, tmp_path / "frc.png"))
    with_nm = fourier_ring_correlation(first, first + 0.1 * second, pixel_size_um=0.0313)
    read_png(plot_frc({"nm": with_nm}, tmp_path / "frc_nm.png"))


def test_frc_crossing_is_the_first_fall_below_the_threshold():
    # An image and its negative (FRC -1 at every ring): nothing is resolved, the crossing is at ring 1.
    first, second = torch.randn(2, 64, 64, generator=generator(22), dtype=torch.float64)
    opposite = fourier_ring_correlation(first, -first)
    assert opposite.one_seventh_crossing == 1.0 and opposite.resolution_px == 64
    # A shared random-walk field (power falling as 1 / k^4) plus independent noise: the crossing lies
    # between the last ring above 1/7 and the first below.
    third = torch.randn(64, 64, generator=generator(23), dtype=torch.float64)
    shared = third.cumsum(0).cumsum(1) / 8
    frc = fourier_ring_correlation(shared + first, shared + second, window="none")
    below = int((frc.correlation[1:] < 1 / 7).nonzero()[0]) + 1
    assert below > 2 and below - 1 <= frc.one_seventh_crossing <= below
