"""The radially averaged power spectrum of :mod:`experiments.trust.spectrum`, against what theory gives: Parseval
for a cosine (all its power in the ring of its frequency), a flat spectrum of height sigma^2 for white noise, and
less high-frequency power after a blur."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.trust.spectrum import band_ratio_db, radial_power, ring_frequencies


@settings(max_examples=30, deadline=None)
@given(side=st.sampled_from([16, 32, 48]), cycles=st.integers(1, 7), amplitude=st.floats(0.1, 3.0),
       vertical=st.booleans())
def test_a_cosine_puts_all_its_power_in_the_ring_of_its_frequency(side, cycles, amplitude, vertical):
    position = torch.arange(side, dtype=torch.float64)
    wave = amplitude * torch.cos(2 * math.pi * cycles * position / side)
    image = (wave[:, None] if vertical else wave[None, :]).expand(side, side)
    power = radial_power(image)
    ring = cycles  # frequency cycles / side: ring floor(f * side)
    assert int(power.argmax()) == ring
    assert ring_frequencies(side, side)[ring].item() == pytest.approx((cycles + 0.5) / side)
    # Parseval: the ring's two peaks hold the image's energy, sum of x^2 = side^2 amplitude^2 / 2
    fy, fx = torch.meshgrid(torch.fft.fftfreq(side), torch.fft.fftfreq(side), indexing="ij")
    in_ring = (torch.floor(torch.sqrt(fy**2 + fx**2) * side) == ring).sum().item()
    assert power[ring].item() * in_ring == pytest.approx(float((image**2).sum()), rel=1e-9)
    assert power[torch.arange(len(power)) != ring].abs().max().item() < 1e-18 * side**2 * amplitude**2 + 1e-20


def test_white_noise_has_a_flat_spectrum_at_its_variance():
    sigma = 0.3
    noise = sigma * torch.randn(64, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    power = radial_power(noise).mean(0)
    assert power[2:].mean().item() == pytest.approx(sigma**2, rel=0.02)
    assert (power[2:] / sigma**2 - 1).abs().max().item() < 0.15


def test_blur_removes_high_frequency_power_and_the_band_ratio_says_so():
    noise = torch.randn(16, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    kernel = torch.tensor([0.25, 0.5, 0.25])
    blurred = torch.nn.functional.conv2d(noise, (kernel[:, None] * kernel[None, :])[None, None], padding=1)
    frequencies = ring_frequencies(64, 64)
    sharp, soft = radial_power(noise[:, 0]).mean(0), radial_power(blurred[:, 0]).mean(0)
    assert band_ratio_db(sharp, sharp, frequencies) == 0.0
    # the [1/4, 1/2, 1/4] filter's gain cos^2(pi f) per axis: below 1/2 everywhere in the upper band
    assert band_ratio_db(soft, sharp, frequencies) < -6.0
    assert math.isnan(band_ratio_db(sharp, torch.zeros_like(sharp), frequencies))


def test_the_evaluation_measures_the_detail_of_one_sample_and_of_the_output_against_the_target():
    from experiments.evaluation.trust_report import TrustAccumulator

    targets = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    kernel = torch.tensor([0.25, 0.5, 0.25])
    blurred = torch.nn.functional.conv2d(targets, (kernel[:, None] * kernel[None, :])[None, None], padding=1)
    accumulator = TrustAccumulator()
    accumulator.update(blurred, torch.stack([targets, blurred]), targets)  # sample 1 is the target itself
    quality = accumulator.metrics()
    assert quality["model"]["hf_power_sample_db"] == pytest.approx(0.0, abs=1e-12)
    assert quality["bicubic"]["hf_power_db"] < quality["model"]["hf_power_db"] < 0  # the mean of the two: half blurred
    frequencies = torch.tensor(quality["spectrum"]["frequency"], dtype=torch.float64)
    mean = radial_power(((targets + blurred) / 2)[:, 0]).mean(0)
    assert torch.allclose(torch.tensor(quality["spectrum"]["mean"], dtype=torch.float64), mean)
    assert quality["model"]["hf_power_db"] == pytest.approx(
        band_ratio_db(mean, radial_power(targets[:, 0]).mean(0), frequencies))
