"""Metrics against hand computation on known images, and the two averaging protocols."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.image import MultiScaleStructuralSimilarityIndexMeasure, PeakSignalNoiseRatio
from torchmetrics.image import StructuralSimilarityIndexMeasure

from experiments.evaluation.metrics import (
    affine_fit,
    MS_SSIM_MIN_SIZE,
    MetricAccumulator,
    batch_metrics,
    image_metrics,
)
from experiments.records import HIGHER_IS_BETTER, METRIC_NAMES

SIZE = 32  # the smallest power of two that MS-SSIM (kernel 7, 3 scales) accepts


def ramp(low: float, high: float, size: int = SIZE) -> torch.Tensor:
    """[1, 1, size, size] image whose values run from exactly ``low`` to exactly ``high`` (known range)."""
    values = torch.linspace(low, high, size * size, dtype=torch.float64)
    return values[torch.randperm(size * size)].reshape(1, 1, size, size).float()


def psnr_by_hand(mse: float) -> float:
    return 10 * math.log10(2.0**2 / mse)


def test_constant_offset_by_hand():
    target = torch.cat([ramp(-0.5, 0.5), ramp(-0.8, 0.4)])
    result = batch_metrics(target + 0.1, target)
    assert result["mae"].item() == pytest.approx(0.1, rel=1e-5)
    assert result["psnr"].item() == pytest.approx(psnr_by_hand(0.01), rel=1e-5)  # 26.0206 dB
    # NRMSE: RMSE 0.1 over the whole batch's target range, -0.8 .. 0.5.
    assert result["nrmse"].item() == pytest.approx(0.1 / 1.3, rel=1e-5)


def test_unequal_errors_by_hand():
    # A checkerboard of errors +0.1 / -0.3: MAE 0.2 but MSE (0.01 + 0.09) / 2 = 0.05, so RMSE differs from MAE.
    target = ramp(-0.5, 0.5)
    checker = (torch.arange(SIZE)[:, None] + torch.arange(SIZE)[None, :]) % 2 == 0
    error = torch.where(checker, 0.1, -0.3)
    result = batch_metrics(target + error, target)
    assert result["mae"].item() == pytest.approx(0.2, rel=1e-5)
    assert result["nrmse"].item() == pytest.approx(math.sqrt(0.05) / 1.0, rel=1e-5)
    assert result["psnr"].item() == pytest.approx(psnr_by_hand(0.05), rel=1e-5)


def test_ssim_of_constant_images_by_hand():
    # Constant images have no variance, so SSIM reduces to its luminance term (2ab + c1) / (a^2 + b^2 + c1),
    # c1 = (0.01 * 2.0)^2; MS-SSIM's contrast terms are 1 and its last scale is that luminance ** beta_3.
    a, b = 0.5, 0.3
    c1 = (0.01 * 2.0) ** 2
    luminance = (2 * a * b + c1) / (a * a + b * b + c1)
    result = image_metrics(torch.full((1, 1, SIZE, SIZE), a), torch.full((1, 1, SIZE, SIZE), b))
    assert result["ssim"].item() == pytest.approx(luminance, rel=1e-5)
    assert result["ms_ssim"].item() == pytest.approx(luminance**0.3001, rel=1e-5)
    assert result["nrmse"].item() == math.inf  # a constant target has no range


def test_identical_images_score_perfectly():
    target = torch.rand(3, 1, SIZE, SIZE) * 2 - 1
    result = batch_metrics(target.clone(), target)
    assert result["ssim"].item() == pytest.approx(1.0, abs=1e-6)
    assert result["ms_ssim"].item() == pytest.approx(1.0, abs=1e-6)
    assert result["mae"].item() == 0.0
    assert result["psnr"].item() == math.inf


def test_batch_values_equal_the_tutorials_torchmetrics_classes():
    # Listing 24 calls these classes on each batch; our functional route must give the same numbers.
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(4, 1, 48, 48, generator=generator) * 2 - 1
    pred = (target + 0.3 * torch.randn(target.shape, generator=generator)).clamp(-1, 1)
    result = batch_metrics(pred, target)
    ms_ssim = MultiScaleStructuralSimilarityIndexMeasure(data_range=2.0, kernel_size=7, betas=(0.0448, 0.2856, 0.3001))
    assert result["ms_ssim"].item() == pytest.approx(ms_ssim(pred, target).item(), rel=1e-5)
    ssim = StructuralSimilarityIndexMeasure(data_range=2.0)
    assert result["ssim"].item() == pytest.approx(ssim(pred, target).item(), rel=1e-5)
    assert result["psnr"].item() == pytest.approx(PeakSignalNoiseRatio(data_range=2.0)(pred, target).item(), rel=1e-5)


def offset_batch(offsets: list[float], ranges: list[tuple[float, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.cat([ramp(low, high) for low, high in ranges])
    offset = torch.tensor(offsets).reshape(-1, 1, 1, 1)
    return target + offset, target


def test_short_last_batch_weighs_like_a_full_one():
    accumulator = MetricAccumulator()
    accumulator.update(*offset_batch([0.1, 0.1], [(-0.5, 0.5), (-0.25, 0.25)]))  # full batch
    accumulator.update(*offset_batch([0.3], [(-0.5, 0.5)]))  # short last batch
    result = accumulator.compute()

    assert result["images"] == 3
    # Tutorial: mean of the two batch values.
    assert result["mae"] == pytest.approx((0.1 + 0.3) / 2, rel=1e-5)
    assert result["psnr"] == pytest.approx((psnr_by_hand(0.01) + psnr_by_hand(0.09)) / 2, rel=1e-5)
    # Batch NRMSE divides by the whole batch's range: 0.1 / 1.0, then 0.3 / 1.0.
    assert result["nrmse"] == pytest.approx((0.1 + 0.3) / 2, rel=1e-5)
    # Per image: each image counts once; population std over the three images.
    maes = torch.tensor([0.1, 0.1, 0.3], dtype=torch.float64)
    assert result["mae_mean"] == pytest.approx(maes.mean().item(), rel=1e-5)
    assert result["mae_std"] == pytest.approx(maes.std(correction=0).item(), rel=1e-4)
    # Per-image NRMSE uses each image's own range: 0.1 / 1.0, 0.1 / 0.5, 0.3 / 1.0.
    nrmses = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    assert result["nrmse_mean"] == pytest.approx(nrmses.mean().item(), rel=1e-5)
    assert result["nrmse_std"] == pytest.approx(nrmses.std(correction=0).item(), rel=1e-4)
    psnrs = torch.tensor([psnr_by_hand(0.01)] * 2 + [psnr_by_hand(0.09)], dtype=torch.float64)
    assert result["psnr_mean"] == pytest.approx(psnrs.mean().item(), rel=1e-5)
    assert result["psnr_std"] == pytest.approx(psnrs.std(correction=0).item(), rel=1e-4)


def test_protocols_agree_where_they_should():
    generator = torch.Generator().manual_seed(2)
    target = torch.rand(4, 1, SIZE, SIZE, generator=generator) * 2 - 1
    pred = target + 0.2 * torch.randn(target.shape, generator=generator)

    def evaluate(splits: list[int]) -> dict[str, float]:
        accumulator = MetricAccumulator()
        for p, t in zip(pred.split(splits), target.split(splits)):
            accumulator.update(p, t)
        return accumulator.compute()

    whole, halves, uneven = evaluate([4]), evaluate([2, 2]), evaluate([3, 1])
    for name in METRIC_NAMES:
        # Per-image statistics never depend on how the images were batched.
        for key in (f"{name}_mean", f"{name}_std"):
            assert halves[key] == pytest.approx(whole[key], rel=1e-6)
            assert uneven[key] == pytest.approx(whole[key], rel=1e-6)
    for name in ("mae", "ssim", "ms_ssim"):
        # With equal batches, a mean of batch means is the mean over images ...
        assert halves[name] == pytest.approx(whole[f"{name}_mean"], rel=1e-6)
        # ... but a short batch tips the tutorial's value towards its images.
        assert uneven[name] != pytest.approx(whole[f"{name}_mean"], rel=1e-6)
    # The std really is the spread over images, not over batches.
    per_image = image_metrics(pred, target)["mae"].double()
    assert whole["mae_std"] == pytest.approx(per_image.std(correction=0).item(), rel=1e-6)
    assert whole["mae_std"] > 0


def test_results_are_python_floats_for_any_float_dtype():
    target = ramp(-0.5, 0.5).repeat(2, 1, 1, 1)
    for dtype in (torch.float16, torch.float64):
        accumulator = MetricAccumulator()
        accumulator.update((target + 0.1).to(dtype), target.to(dtype))
        result = accumulator.compute()
        assert set(result) == {"images"} | {f"{n}{s}" for n in METRIC_NAMES for s in ("", "_mean", "_std", "_fit", "_fit_std")}
        assert all(type(value) is float for key, value in result.items() if key != "images")
        assert result["mae"] == pytest.approx(0.1, rel=1e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inputs_give_the_cpu_numbers():
    generator = torch.Generator().manual_seed(3)
    target = torch.rand(3, 1, SIZE, SIZE, generator=generator) * 2 - 1
    pred = target + 0.1 * torch.randn(target.shape, generator=generator)
    results = []
    for device in ("cpu", "cuda"):
        accumulator = MetricAccumulator()
        accumulator.update(pred.to(device), target.to(device))
        results.append(accumulator.compute())
    for key, value in results[0].items():
        assert results[1][key] == pytest.approx(value, rel=1e-4)


def test_higher_is_better_covers_every_metric():
    assert set(HIGHER_IS_BETTER) == set(METRIC_NAMES)
    assert [name for name in METRIC_NAMES if not HIGHER_IS_BETTER[name]] == ["mae", "nrmse"]


def test_too_small_images_name_the_minimum_size():
    assert MS_SSIM_MIN_SIZE == 28
    image_metrics(torch.zeros(1, 1, 28, 28), torch.ones(1, 1, 28, 28))  # the minimum works
    with pytest.raises(ValueError, match="at least 28 pixels"):
        image_metrics(torch.zeros(1, 1, 27, 64), torch.zeros(1, 1, 27, 64))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="same shape"):
        batch_metrics(torch.zeros(2, 1, SIZE, SIZE), torch.zeros(1, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match="same shape"):
        batch_metrics(torch.zeros(1, SIZE, SIZE), torch.zeros(1, SIZE, SIZE))
    with pytest.raises(TypeError, match="float"):
        integers = torch.zeros(1, 1, SIZE, SIZE, dtype=torch.uint8)
        batch_metrics(integers, integers)
    with pytest.raises(ValueError, match="update"):
        MetricAccumulator().compute()


# --- the fitted (scale-invariant) protocol -------------------------------------------------------------


def random_images(seed: int, count: int = 3, side: int = 32) -> torch.Tensor:
    return torch.rand(count, 1, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(-5, 5).filter(lambda a: abs(a) > 1e-2), offset=st.floats(-3, 3), seed=st.integers(0, 2**16))
def test_an_affine_map_of_the_target_scores_perfectly_after_the_fit(scale, offset, seed):
    target = random_images(seed)
    accumulator = MetricAccumulator()
    accumulator.update(scale * target + offset, target)
    result = accumulator.compute()
    assert result["mae_fit"] == pytest.approx(0.0, abs=1e-5)
    assert result["ssim_fit"] == pytest.approx(1.0, abs=1e-4)
    assert result["psnr_fit"] > 80  # inf for an exact fit, float32 rounding aside
    if abs(scale - 1) > 0.1 or abs(offset) > 0.1:
        assert result["psnr"] < result["psnr_fit"]  # the tutorial's protocol counts the offset


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_the_fit_is_the_closed_form_least_squares_solution(seed):
    pred, target = random_images(seed), random_images(seed + 1)
    pred = pred * 0.3 + 0.2 * target  # correlated, so the fit is not trivial
    fitted = affine_fit(pred, target).double()
    for image in range(pred.shape[0]):
        design = torch.stack([pred[image].double().flatten(), torch.ones(pred[0].numel(), dtype=torch.float64)], 1)
        solution = torch.linalg.lstsq(design, target[image].double().flatten()[:, None]).solution
        expected = (design @ solution).view(pred.shape[1:])
        assert torch.allclose(fitted[image], expected, atol=1e-5)
        # and no other affine map does better
        residual = (fitted[image] - target[image]).square().sum()
        nudged = (fitted[image] * 1.01 + 0.001 - target[image]).square().sum()
        assert residual <= nudged


def test_a_constant_prediction_fits_to_the_target_mean():
    target = random_images(3)
    fitted = affine_fit(torch.full_like(target, 0.7), target)
    assert torch.allclose(fitted, target.mean(dim=(1, 2, 3), keepdim=True).expand_as(target), atol=1e-6)


def test_the_bicubic_baseline_goes_through_the_same_fit(tmp_path):
    from experiments.pairs.dataset import PairedImageDataset
    from experiments.microscope.synthetic import SyntheticConfig, generate
    from experiments.evaluation.loop import bicubic_baseline

    generate(tmp_path, train=2, validate=0, test_per_level=3, seed=2, config=SyntheticConfig(size=32))
    dataset = PairedImageDataset(tmp_path, "test", level="level_05", cache=False)
    baseline = bicubic_baseline(dataset)
    wf, gt = dataset.get_batch(range(len(dataset)))
    independent = image_metrics(affine_fit(wf, gt), gt)
    for name in METRIC_NAMES:
        assert baseline[f"{name}_fit"] == pytest.approx(independent[name].double().mean().item(), rel=1e-5)
    assert baseline["psnr_fit"] > baseline["psnr_mean"]  # the fit removes the input's offset and contrast
