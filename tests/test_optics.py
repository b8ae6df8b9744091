"""The microscope's optics (experiments.microscope.optics) against independent routes: the measured OTF
file's values, the Hankel transform against a 2-D inverse FFT and scipy's J0, widths, energy, bead images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
import torch
from scipy import integrate, special

from ddpm.settings import UsageError
from experiments.microscope.optics import (
    BIOSR_488_OTF,
    OTF_DIR,
    BroadenedOTF,
    GaussianOTF,
    apply_transfer,
    fwhm_nm,
    otf_from_file,
    otf_from_psf_image,
    point_spread,
    read_mrc_otf,
    relative_transfer,
)

FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


@pytest.fixture(scope="module")
def measured():
    return read_mrc_otf(BIOSR_488_OTF)


def test_the_shipped_otfs_are_biosrs_three_channels_with_their_licence():
    assert sorted(p.name for p in OTF_DIR.glob("*.mrc")) == [
        "TIRF488_cam1_0_z30_OTF2d.mrc", "TIRF560_cam2_0_z21_OTF2d.mrc", "TIRF647_cam2_0_z21_OTF2d.mrc"]
    assert "MIT" in (OTF_DIR / "LICENSE-rDL-SIM").read_text()


def test_the_488_otf_reads_as_its_header_and_data_say(measured):
    raw = BIOSR_488_OTF.read_bytes()
    # Independently of the reader: the header words and the complex data as numpy sees them.
    assert tuple(np.frombuffer(raw[:16], "<i4")) == (257, 1, 1, 4)
    data = np.abs(np.frombuffer(raw[1024:], np.complex64))
    assert len(measured.values) == 257 and measured.step == pytest.approx(0.0312, abs=1e-4)
    np.testing.assert_allclose(measured.values, data, rtol=1e-7)
    # Its falling contrast, as the file's README computes it; zero near 5 cycles / µm.
    for k, contrast in ((1.0, 0.56), (2.0, 0.31), (3.0, 0.15), (4.0, 0.05)):
        assert float(measured(np.array(k))) == pytest.approx(contrast, abs=0.01)
    assert float(measured(np.array(5.0))) < 0.01 and float(measured(np.array(9.0))) == 0.0


def test_the_measured_psf_is_215_nm_wide_with_wings_a_gaussian_lacks(measured):
    assert fwhm_nm(measured) == pytest.approx(215, abs=3)
    gaussian = GaussianOTF(fwhm_nm(measured))
    assert float(gaussian(np.array(1.0))) == pytest.approx(0.85, abs=0.01)  # where the microscope keeps 0.56
    psf_measured, psf_gaussian = point_spread(measured, np.array([0.0, 0.5])), point_spread(gaussian, np.array([0.0, 0.5]))
    assert psf_measured[1] / psf_measured[0] > 100 * psf_gaussian[1] / psf_gaussian[0]


@pytest.mark.parametrize("otf_name", ["gaussian", "measured", "broadened"])
def test_the_hankel_transform_agrees_with_a_2d_inverse_fft_of_the_otf(otf_name, measured):
    otf = {"gaussian": GaussianOTF(250.0), "measured": measured, "broadened": BroadenedOTF(measured, 200.0)}[otf_name]
    pixel_um, side = 0.01, 1024  # the 2-D grid reaches 50 cycles / µm, beyond every OTF's support
    k = np.hypot(np.fft.fftfreq(side, pixel_um)[:, None], np.fft.fftfreq(side, pixel_um)[None, :])
    psf_2d = np.fft.ifft2(otf(k)).real / pixel_um**2  # per µm², as point_spread states it
    radii = np.arange(0, 60) * pixel_um
    np.testing.assert_allclose(point_spread(otf, radii), psf_2d[0, :60], atol=2e-3 * psf_2d[0, 0])


def test_the_hankel_transform_agrees_with_scipys_j0_quadrature(measured):
    for r in (0.0, 0.08, 0.2, 0.6):
        expected = 2 * np.pi * integrate.quad(lambda k: float(measured(np.array(k))) * special.j0(2 * np.pi * k * r) * k,
                                              0, measured.cutoff, limit=400)[0]
        assert point_spread(measured, np.array([r]))[0] == pytest.approx(expected, rel=2e-3, abs=1e-3)


@pytest.mark.parametrize("width", [100.0, 215.0, 400.0])
def test_a_gaussians_psf_has_the_width_it_was_given_and_carries_all_the_light(width):
    otf = GaussianOTF(width)
    assert fwhm_nm(otf) == pytest.approx(width, abs=0.5)
    radii = np.arange(0.0, 5 * width / 1000, 1e-4)
    light = np.trapezoid(2 * np.pi * radii * point_spread(otf, radii), radii)
    assert light == pytest.approx(1.0, abs=1e-3)


def test_extra_blur_adds_in_quadrature_and_the_relative_transfer_subtracts(measured):
    assert fwhm_nm(BroadenedOTF(GaussianOTF(215.0), 300.0)) == pytest.approx(math.hypot(215, 300), abs=0.5)
    relative = relative_transfer(GaussianOTF(215.0), 0.5)
    k = np.linspace(0, 6, 25)
    np.testing.assert_allclose(relative(k), GaussianOTF(math.sqrt(215**2 - 107.5**2))(k), rtol=1e-9)
    # Measured: the SIM image's own transfer divided out, nothing where the objective passes nothing.
    assert np.all(relative_transfer(measured)(np.array([0.5, 2.0, 4.0])) > measured(np.array([0.5, 2.0, 4.0])))
    assert float(relative_transfer(measured)(np.array(8.5))) == 0.0


def test_the_blur_conserves_light_and_matches_a_mirrored_direct_convolution():
    image = torch.from_numpy(np.random.default_rng(0).gamma(2.0, 1.0, (2, 48, 40)))
    pixel_um, sigma_px = 0.0313, 2.0
    otf = GaussianOTF(sigma_px * pixel_um * 1000 * FWHM_PER_SIGMA)
    # Periodic (no border): the transfer at k = 0 is 1, so each image's sum is kept exactly.
    np.testing.assert_allclose(apply_transfer(image, otf, pixel_um, 0).sum((-2, -1)), image.sum((-2, -1)), rtol=1e-10)
    # Mirrored border: the same as convolving the mirrored image with the sampled Gaussian, away from the
    # aliasing of the kernel's far tail (an independent route, by numpy's convolve).
    blurred = apply_transfer(image, otf, pixel_um, 12).numpy()
    radius = 12
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    taps /= taps.sum()
    padded = np.pad(image.numpy(), ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    rows = np.apply_along_axis(lambda v: np.convolve(v, taps, "valid"), 1, padded)
    direct = np.apply_along_axis(lambda v: np.convolve(v, taps, "valid"), 2, rows)
    np.testing.assert_allclose(blurred, direct, atol=2e-4 * float(image.max()))


def test_a_bead_image_gives_back_the_otf_of_its_psf(tmp_path):
    pixel_um, width = 0.065, 280.0
    sigma_px = width / 1000 / pixel_um / FWHM_PER_SIGMA
    y, x = np.mgrid[:64, :64]
    bead = 5000 * np.exp(-((x - 30.6) ** 2 + (y - 34.2) ** 2) / (2 * sigma_px**2))  # off-centre
    recorded = np.random.default_rng(1).poisson(bead + 100).astype(np.float32)  # on a background
    otf = otf_from_psf_image(recorded, pixel_um)
    k = np.linspace(0, 3.0, 13)
    np.testing.assert_allclose(otf(k), GaussianOTF(width)(k), atol=0.03)
    assert fwhm_nm(otf) == pytest.approx(width, rel=0.05)
    # The same from a TIF that states its pixel size, and a clear line without one.
    tifffile.imwrite(tmp_path / "bead.tif", recorded, imagej=True, resolution=(1 / pixel_um, 1 / pixel_um),
                     metadata={"unit": "um"})
    np.testing.assert_allclose(otf_from_file(tmp_path / "bead.tif")(k), otf(k), atol=1e-6)
    tifffile.imwrite(tmp_path / "bare.tif", recorded)
    with pytest.raises(UsageError, match="bare.tif: the bead image states no pixel size"):
        otf_from_file(tmp_path / "bare.tif")


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:500], "shorter than an MRC header"),
    (lambda raw: raw[:-8], "promises 257 complex values"),
    (lambda raw: raw[:12] + np.int32(2).tobytes() + raw[16:], "mode=2"),
])
def test_a_damaged_otf_file_is_refused_naming_it(tmp_path, damage, message):
    path = tmp_path / "bad.mrc"
    path.write_bytes(damage(BIOSR_488_OTF.read_bytes()))
    with pytest.raises(UsageError, match=f"bad.mrc: .*{message}"):
        read_mrc_otf(path)


def test_an_otf_file_of_another_kind_is_refused(tmp_path):
    with pytest.raises(UsageError, match="give a radial OTF"):
        otf_from_file(tmp_path / "psf.png")
    with pytest.raises(UsageError, match="no such OTF file"):
        read_mrc_otf(tmp_path / "missing.mrc")
