"""Trust measures on degenerate images: constant frames, frames a few pixels high or wide, frames smaller
than the fit's border, identical and constant samples. Every measure comes out as a finite number or as
None with a note saying why, never NaN and never an exception; check.json stays strict JSON; and a
normal frame still gets the numbers it got before (pinned, and recomputed independently with numpy)."""

import json
import math
import statistics

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from experiments.trust import check
from experiments.trust.measures import consistency, fourier_ring_correlation, redegrade
from experiments.trust.figures import plot_frc
from experiments.evaluation.trust_report import TrustAccumulator, quality_table
from experiments.integrity.json_files import NOTE_SUFFIX
from strategies import seeds
from test_figures import read_png

FIT_KEYS = ("rse", "rsp", "alpha", "beta", "sigma_px")
FRC_THRESHOLDS = {"frc_resolution_px": "one_seventh", "frc_resolution_nm": "one_seventh", "frc_half_bit_px": "half_bit"}


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _refuse(token: str):
    raise ValueError(f"not strict JSON: {token}")


def strict_loads(text: str):
    """``json.loads`` that refuses the NaN and Infinity tokens json.dumps writes by default."""
    return json.loads(text, parse_constant=_refuse)


def assert_well_defined(frame: check.FrameCheck, widefield_shape: tuple[int, int]) -> dict:
    """Every number of the frame's summary finite or None; every None noted, except an FRC resolution
    whose curve really stays above its threshold up to Nyquist; the map finite, on the input's grid."""
    entry = frame.summary()
    strict_loads(json.dumps(entry, allow_nan=False))
    for key in (*FIT_KEYS, "border_px", *FRC_THRESHOLDS):
        value = entry[key]
        if value is not None:
            assert isinstance(value, (int, float)) and math.isfinite(value), (key, value)
        elif f"{key}{NOTE_SUFFIX}" not in entry:  # the defined None: the samples agree up to Nyquist
            frc = frame.frc
            assert key in FRC_THRESHOLDS and frc.note is None, key
            assert key != "frc_resolution_nm" or frc.pixel_size_um is not None
            threshold = getattr(frc, FRC_THRESHOLDS[key])
            assert bool((frc.correlation[1:] >= threshold[1:]).all()), key
    assert all(isinstance(entry[key], str) and entry[key] for key in entry if key.endswith(NOTE_SUFFIX))
    error_map = frame.consistency.error_map
    assert tuple(error_map.shape) == widefield_shape and bool(torch.isfinite(error_map).all())
    if f"error_map{NOTE_SUFFIX}" in entry:
        assert bool((error_map == 0).all())
    assert bool(torch.isfinite(frame.frc.correlation).all())
    return entry


def image(shape: tuple[int, int], seed: int, constant: float | None = None) -> torch.Tensor:
    """A random image in [0, 1], or one filled with ``constant``."""
    if constant is not None:
        return torch.full(shape, constant)
    return torch.rand(shape, generator=generator(seed))


# --- Any shape, any mix of constant and random content ---------------------------------------------


SIDES = st.sampled_from([1, 2, 3, 5, 12, 24])
CONTENT = st.one_of(st.none(), st.floats(-1.0, 1.0, width=32))  # None: random; a number: constant


@given(SIDES, SIDES, st.sampled_from([1, 2]), CONTENT, CONTENT, CONTENT, st.booleans(),
       st.sampled_from([None, 0.04]), seeds)
def test_every_measure_is_finite_or_noted_on_any_frame(height, width, factor, output_value, input_value,
                                                       sample_value, same_samples, pixel_size_um, seed):
    output = image((factor * height, factor * width), seed, output_value)
    widefield = image((height, width), seed + 1, input_value)
    first = image(output.shape, seed + 2, sample_value)
    second = first.clone() if same_samples else image(output.shape, seed + 3)
    assert_well_defined(check.check_frame(output, widefield, first, second, pixel_size_um), (height, width))


# --- Constant frames -------------------------------------------------------------------------------


def test_constant_input_and_output_keep_the_rse_and_note_the_rest():
    frame = check.redegradation(torch.full((32, 32), 0.4), torch.full((16, 16), 0.4))
    assert frame.rse == pytest.approx(0.0, abs=1e-12)
    assert frame.rsp is None and "input frame is constant" in frame.notes["rsp"]
    assert frame.sigma is None and "every blur" in frame.notes["sigma"]
    assert frame.alpha is None and frame.beta is None and "constant once re-degraded" in frame.notes["alpha"]


def test_a_constant_input_is_fitted_by_its_offset_alone():
    output = image((32, 32), 1)
    frame = check.redegradation(output, torch.full((16, 16), 0.3, dtype=torch.float64))
    assert frame.alpha == pytest.approx(0.0, abs=1e-12) and frame.beta == pytest.approx(0.3)
    assert frame.rse == pytest.approx(0.0, abs=1e-12)
    assert frame.rsp is None and frame.sigma is None and set(frame.notes) == {"rsp", "sigma"}


def test_a_constant_output_leaves_the_input_spread_as_its_error():
    widefield = image((16, 16), 2).double()
    frame = check.redegradation(torch.full((32, 32), 0.7), widefield)
    inner = widefield[frame.border : 16 - frame.border, frame.border : 16 - frame.border]
    assert frame.rse == pytest.approx(float(inner.std(unbiased=False)), rel=1e-9)
    assert {name for name in ("rsp", "alpha", "beta", "sigma") if getattr(frame, name) is None} == set(frame.notes)
    assert set(frame.notes) == {"rsp", "alpha", "beta", "sigma"} and "output is constant" in frame.notes["rsp"]


def test_a_constant_frame_among_others_gets_noted_measures_and_the_others_numbers(tmp_path):
    outputs = torch.stack([image((32, 32), 3), torch.full((32, 32), 0.5), image((32, 32), 4)])
    widefields = torch.nn.functional.avg_pool2d(outputs[:, None], 2)[:, 0]
    firsts, seconds = outputs + 0.1 * torch.rand(2, 3, 32, 32, generator=generator(5))
    firsts[1], seconds[1] = 0.5, 0.5  # the constant frame's samples are constant too
    checks = [check.check_frame(*frame, 0.04) for frame in zip(outputs, widefields, firsts, seconds)]
    entries = [assert_well_defined(frame, (16, 16)) for frame in checks]
    for index in (0, 2):
        assert all(entries[index][key] is not None for key in FIT_KEYS)
    assert entries[1]["rsp"] is None and "constant" in entries[1][f"rsp{NOTE_SUFFIX}"]
    assert entries[1]["frc_resolution_px"] is None and "constant" in entries[1][f"frc_resolution_px{NOTE_SUFFIX}"]
    maps = torch.stack([frame.consistency.error_map for frame in checks])
    assert maps.shape == (3, 16, 16) and bool(torch.isfinite(maps).all())
    path = check.write_summary(tmp_path / check.SUMMARY_NAME, check.summary_entries(tmp_path / "in.tif",
                                                                                     tmp_path / "out.tif", entries))
    written = strict_loads(path.read_text(encoding="utf-8"))["frames"]
    assert [{k: v for k, v in entry.items() if k not in ("source", "output", "frame")} for entry in written] == entries


# --- Thin and small frames -------------------------------------------------------------------------


@pytest.mark.parametrize("output_shape, input_shape, fitted", [
    ((1, 64), (1, 64), False), ((2, 64), (1, 32), False), ((64, 1), (64, 1), False), ((2, 2), (1, 1), False),
    ((2, 64), (2, 64), True), ((3, 40), (3, 40), True), ((6, 80), (3, 40), True),
])  # fmt: skip
def test_thin_frames_are_fitted_where_they_can_be_and_noted_where_not(output_shape, input_shape, fitted):
    output, widefield = image(output_shape, 6), image(input_shape, 7)
    first, second = image(output_shape, 8), image(output_shape, 9)
    entry = assert_well_defined(check.check_frame(output, widefield, first, second, None), input_shape)
    assert all((entry[key] is not None) == fitted for key in FIT_KEYS)
    if not fitted:
        assert f"{input_shape[0]} x {input_shape[1]} px is too small" in entry[f"rse{NOTE_SUFFIX}"]
        assert "zeros" in entry[f"error_map{NOTE_SUFFIX}"]
    if min(output_shape) == 1:
        assert "1 x 1 px" in entry[f"frc_resolution_px{NOTE_SUFFIX}"]


def test_frames_smaller_than_the_border_or_the_blur_are_not_fitted():
    sr, widefield = image((16, 16), 10), image((16, 16), 11)
    too_small = consistency(sr, widefield, border=8)
    assert too_small.rse is None and "needs at least 18 px per side" in too_small.notes["rse"]
    assert consistency(image((24, 24), 12), image((12, 12), 13)).rse is None  # the default border, 10 px
    wide_blur = consistency(sr, widefield, sigma_range=(0.0, 5.0), border=0)
    assert wide_blur.sigma is None and "blur of sigma 5" in wide_blur.notes["sigma"]
    with pytest.raises(ValueError, match="border"):
        consistency(sr, widefield, border=-1)
    with pytest.raises(ValueError, match="sigma_range"):
        consistency(sr, widefield, sigma_range=(2.0, 1.0))


def test_an_equal_sigma_range_fixes_sigma():
    sr = image((32, 32), 14).double()
    assert consistency(sr, redegrade(sr, 1.5, 2), sigma_range=(1.5, 1.5), border=2).sigma == 1.5


def test_a_frame_holding_nan_is_not_fitted():
    sr = image((32, 32), 15)
    sr[3, 4] = math.nan
    frame = check.check_frame(sr, image((32, 32), 16), sr, sr, None)
    entry = assert_well_defined(frame, (32, 32))
    assert "NaN" in entry[f"rse{NOTE_SUFFIX}"] and "NaN" in entry[f"frc_resolution_px{NOTE_SUFFIX}"]


# --- Sample-to-sample FRC --------------------------------------------------------------------------


def test_identical_samples_agree_up_to_nyquist_without_a_note():
    sample = image((32, 32), 17)
    frc = fourier_ring_correlation(sample, sample, pixel_size_um=0.04)
    assert frc.note is None and frc.one_seventh_crossing is None and frc.half_bit_crossing is None
    entry = check.FrameCheck(check.redegradation(sample, image((16, 16), 18)), frc).summary()
    assert all(entry[key] is None and f"{key}{NOTE_SUFFIX}" not in entry for key in FRC_THRESHOLDS)


@pytest.mark.parametrize("first_value, second_value", [(0.5, 0.5), (0.2, 0.9), (0.5, None), (0.0, 0.0)])
def test_constant_samples_have_an_undefined_frc(tmp_path, first_value, second_value):
    first, second = image((32, 32), 19, first_value), image((32, 32), 20, second_value)
    frc = fourier_ring_correlation(first, second, pixel_size_um=0.04)
    assert "constant" in frc.note and frc.resolution_px is None and frc.half_bit_resolution_px is None
    assert bool((frc.correlation == 0).all())
    entry = check.FrameCheck(check.redegradation(first, image((16, 16), 21)), frc).summary()
    assert all(entry[key] is None and "constant" in entry[f"{key}{NOTE_SUFFIX}"] for key in FRC_THRESHOLDS)
    read_png(plot_frc({"constant": frc}, tmp_path / "frc.png"))


def test_an_frc_without_a_pixel_size_notes_its_missing_nm():
    first, second = image((32, 32), 22), image((32, 32), 23)
    entry = check.check_frame(first, first, first, second, None).summary()
    assert entry["frc_resolution_px"] is not None
    assert entry["frc_resolution_nm"] is None and "pixel size" in entry[f"frc_resolution_nm{NOTE_SUFFIX}"]


# --- Normal frames: the numbers of before ----------------------------------------------------------


def normal_frame():
    random = generator(7)
    field = torch.rand(1, 1, 40, 40, generator=random, dtype=torch.float64)
    smooth = torch.nn.functional.avg_pool2d(field, 5, stride=1, padding=2, count_include_pad=False)[0, 0]
    output = smooth + 0.05 * torch.rand(40, 40, generator=random, dtype=torch.float64)
    widefield = torch.nn.functional.avg_pool2d(smooth[None, None], 2)[0, 0]
    first = output + 0.6 * torch.rand(40, 40, generator=random, dtype=torch.float64)
    second = output + 0.6 * torch.rand(40, 40, generator=random, dtype=torch.float64)
    return output.float(), widefield.float(), first.float(), second.float()


def test_a_normal_frame_gets_the_numbers_it_got_before_the_degenerate_cases_were_handled():
    output, widefield, first, second = normal_frame()
    entry = check.check_frame(output, widefield, first, second, 0.04).summary()
    # check_frame(...).summary() of this frame before the degenerate cases were handled, re-pinned when the
    # re-degradation became the microscope's forward model (experiments.microscope.optics: the Gaussian's
    # transfer in place of its sampled 4-sigma kernel; sigma 0.447 -> 0.338 px, RSE -0.08 %, the FRC unchanged).
    before = {
        "rse": 0.006604145414055867, "rsp": 0.9907872565809747, "alpha": 1.019207312930587,
        "beta": -0.0352504952413607, "sigma_px": 0.33843384938293897, "border_px": 4,
        "frc_resolution_px": 5.667351734792905, "frc_resolution_nm": 226.6940693917162,
        "frc_half_bit_px": 8.322251895735072,
    }  # fmt: skip
    assert entry.keys() == before.keys()
    assert entry == pytest.approx(before, rel=1e-9)
    # RSP, alpha, beta and RSE recomputed with numpy from the fitted sigma and border.
    inner = slice(4, 16)
    degraded = redegrade(output.double(), entry["sigma_px"], 2)[inner, inner].numpy().ravel()
    target = widefield.double()[inner, inner].numpy().ravel()
    assert entry["rsp"] == pytest.approx(np.corrcoef(degraded, target)[0, 1], rel=1e-12)
    (alpha, beta), *_ = np.linalg.lstsq(np.stack([degraded, np.ones_like(degraded)], 1), target, rcond=None)
    assert (entry["alpha"], entry["beta"]) == pytest.approx((alpha, beta), rel=1e-9)
    assert entry["rse"] == pytest.approx(np.sqrt(np.mean((alpha * degraded + beta - target) ** 2)), rel=1e-9)


# --- Averages over images (experiments.evaluate) ---------------------------------------------------


def batch(constant: list[bool]):
    """[B, 1, 32, 32] inputs and targets and [2, B, 1, 32, 32] samples in [-1, 1]; the images marked
    ``constant`` are constant in all three."""
    count = len(constant)
    targets = 2 * torch.rand(count, 1, 32, 32, generator=generator(24)) - 1
    inputs = torch.nn.functional.avg_pool2d(targets, 3, stride=1, padding=1, count_include_pad=False)
    samples = targets + 0.2 * torch.randn(2, count, 1, 32, 32, generator=generator(25))
    for index, flat in enumerate(constant):
        if flat:
            inputs[index], targets[index], samples[:, index] = 0.1, 0.1, 0.1
    return inputs, samples, targets


def test_the_averages_leave_out_undefined_images_and_count_them():
    inputs, samples, targets = batch([False, True, False])
    seen = TrustAccumulator()
    seen.update(inputs, samples, targets)
    metrics = seen.metrics()
    strict_loads(json.dumps(metrics, allow_nan=False))
    model = metrics["model"]
    defined = [check.redegradation(samples.mean(0)[index, 0], inputs[index, 0]).rsp for index in (0, 2)]
    assert model["rsp"] == pytest.approx(statistics.fmean(defined)) and model["rsp_left_out"] == 1
    assert model["rse_left_out"] == 0  # the constant image's RSE is defined (0)
    assert model["frc_px_left_out"] == 1 and model["frc_samples_px_left_out"] == 1
    assert metrics["bicubic"]["frc_px_left_out"] == 1 and metrics["bicubic"]["frc_px"] is not None
    assert "(1 left out)" in quality_table({"level_01": metrics})


def test_a_measure_undefined_on_every_image_is_none_with_a_note_and_n_a_in_the_table():
    seen = TrustAccumulator()
    seen.update(*batch([True, True]))
    model = seen.metrics()["model"]
    assert model["rsp"] is None and model["rsp_left_out"] == 2 and "every one of the 2" in model[f"rsp{NOTE_SUFFIX}"]
    assert model["rse"] == pytest.approx(0.0, abs=1e-6)
    assert model["hf_power_db"] is None and "no power" in model[f"hf_power_db{NOTE_SUFFIX}"]  # flat targets
    table = quality_table({"level_01": seen.metrics()})
    assert "n/a" in table and "nan" not in table.lower()
