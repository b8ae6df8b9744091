"""Image-quality metrics of the tutorial (Listing 24) under three protocols.

Five metrics compare a prediction with its target, both ``[B, C, H, W]`` in [-1, 1] (C = 1 here):

* MAE = mean |pred - target|;
* NRMSE = sqrt(mean (pred - target)^2) / (max target - min target);
* SSIM (torchmetrics defaults: Gaussian window, sigma 1.5, k1 0.01, k2 0.03);
* MS-SSIM with kernel size 7 and the three betas (0.0448, 0.2856, 0.3001), i.e. three scales;
* PSNR = 10 log10(data_range^2 / mean (pred - target)^2).

SSIM, MS-SSIM and PSNR come from torchmetrics' functional API, all with ``data_range = 2.0`` (the width
of [-1, 1]), as in the tutorial. Nothing is clamped: the caller decides whether samples are clipped
first. Identical images give PSNR = inf; a constant target gives NRMSE = inf (its range is zero).

Three protocols, all kept by :class:`MetricAccumulator`:

* **tutorial** (key ``"mae"`` ...): each metric over a whole batch (MAE, NRMSE and PSNR pool the
  batch's pixels, NRMSE divides by the range of the whole batch's target, SSIM and MS-SSIM are the
  batch mean of per-image values), then the plain mean over batches. A short last batch therefore
  weighs as much as a full one. Kept so that numbers compare with the paper's table.
* **per image** (keys ``"mae_mean"``, ``"mae_std"`` ...): each metric per image, then the mean and
  the standard deviation over all images. The std is the population std (divisor N): the spread of
  the test set's values, defined also for a single image.
* **fitted** (keys ``"mae_fit"``, ``"mae_fit_std"`` ...): per image as above, after each prediction is
  mapped by the affine ``a p + b`` that minimises its squared error to the target (:func:`affine_fit`;
  CARE's protocol, Weigert et al., Nature Methods 15, 1090-1097, 2018). Scale-invariant: an offset or
  contrast that a linear rescale also fixes scores nothing, so what remains is structure. Every
  prediction goes through the same fit, the bicubic baseline included.
"""

import torch
from torch import Tensor

from experiments.records import METRIC_NAMES

DATA_RANGE = 2.0  # images live in [-1, 1]
MS_SSIM_KERNEL_SIZE = 7
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001)  # one weight per scale: three scales
# torchmetrics needs H // (scales - 1)^2 > kernel - 1 and H >= 2^scales: with kernel 7 and 3 scales, 28 px.
MS_SSIM_MIN_SIZE = max(2 ** len(MS_SSIM_BETAS), MS_SSIM_KERNEL_SIZE * (len(MS_SSIM_BETAS) - 1) ** 2)


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(
            "pred and target must both be [B, C, H, W] with the same shape; "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.shape[0] == 0:
        raise ValueError("pred and target hold no images (batch size 0)")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise TypeError(
            f"pred and target must be float images in [-1, 1]; got {pred.dtype} and {target.dtype} "
            "(normalise integer images first, see experiments.data.normalization)"
        )
    height, width = pred.shape[-2:]
    if min(height, width) < MS_SSIM_MIN_SIZE:
        raise ValueError(
            f"images of {height} x {width} pixels are too small for MS-SSIM with kernel {MS_SSIM_KERNEL_SIZE} "
            f"and {len(MS_SSIM_BETAS)} scales: height and width must be at least {MS_SSIM_MIN_SIZE} pixels "
            "(evaluate at a larger image size)"
        )


def image_metrics(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Every metric of each image: name -> Tensor[B] (float32, on the inputs' device).

    ``pred`` and ``target`` are ``[B, C, H, W]`` float images in [-1, 1]; NRMSE divides by each
    image's own target range.
    """
    # Imported here: torchmetrics pulls in torchvision's model zoo, 2 s of every command's start on a CPU,
    # and predict, export and the figures only need this module's names.
    from torchmetrics.functional.image import (
        multiscale_structural_similarity_index_measure,
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    _check_pair(pred, target)
    pred, target = pred.float(), target.float()
    difference = (pred - target).flatten(1)
    flat_target = target.flatten(1)
    return {
        "mae": difference.abs().mean(1),
        "nrmse": difference.square().mean(1).sqrt() / (flat_target.amax(1) - flat_target.amin(1)),
        "ssim": structural_similarity_index_measure(pred, target, data_range=DATA_RANGE, reduction="none"),
        "ms_ssim": multiscale_structural_similarity_index_measure(
            pred, target, data_range=DATA_RANGE, kernel_size=MS_SSIM_KERNEL_SIZE, betas=MS_SSIM_BETAS, reduction="none"
        ),
        "psnr": peak_signal_noise_ratio(pred, target, data_range=DATA_RANGE, dim=(1, 2, 3), reduction="none"),
    }


def affine_fit(pred: Tensor, target: Tensor) -> Tensor:
    """Each image of ``pred`` [B, C, H, W] mapped by the affine ``a p + b`` that minimises
    ``sum (a p + b - target)^2`` over its pixels: the closed-form least squares ``a = cov(p, t) / var(p)``,
    ``b = mean(t) - a mean(p)`` (float64); a constant image maps to the target's mean (``a = 0``)."""
    p, t = pred.double().flatten(1), target.double().flatten(1)
    p_mean, t_mean = p.mean(1, keepdim=True), t.mean(1, keepdim=True)
    centred = p - p_mean
    variance = centred.square().sum(1, keepdim=True)
    covariance = (centred * (t - t_mean)).sum(1, keepdim=True)
    scale = torch.where(variance > 0, covariance / variance.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    return (scale * p + (t_mean - scale * p_mean)).view(pred.shape).to(pred.dtype)


def _batch_from_images(per_image: dict[str, Tensor], pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """The tutorial's per-batch values; SSIM and MS-SSIM reuse the per-image values (their batch value is the mean)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio  # see image_metrics

    pred, target = pred.float(), target.float()
    difference = pred - target
    return {
        "mae": difference.abs().mean(),
        "nrmse": difference.square().mean().sqrt() / (target.max() - target.min()),
        "ssim": per_image["ssim"].mean(),
        "ms_ssim": per_image["ms_ssim"].mean(),
        "psnr": peak_signal_noise_ratio(pred, target, data_range=DATA_RANGE),
    }


def batch_metrics(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Every metric over one batch as the tutorial computes it (Listing 24): name -> scalar Tensor.

    MAE, NRMSE and PSNR pool all pixels of the batch (NRMSE divides by the whole batch's target
    range); SSIM and MS-SSIM are the mean of the per-image values.
    """
    return _batch_from_images(image_metrics(pred, target), pred, target)


class MetricAccumulator:
    """Collects the metrics of successive batches; :meth:`compute` reports both protocols.

    ``update`` keeps its results on the inputs' device (no host synchronisation per batch); ``compute``
    moves them to the CPU once and returns Python floats, so batches from any device mix freely.

    Example::

        accumulator = MetricAccumulator()
        for inputs, targets in test_loader:
            accumulator.update(sample(inputs), targets)
        accumulator.compute()  # {"mae": ..., "mae_mean": ..., "mae_std": ..., ..., "images": 150}
    """

    def __init__(self) -> None:
        self._batches: list[Tensor] = []  # one [len(METRIC_NAMES)] row per batch
        self._images: list[Tensor] = []  # one [len(METRIC_NAMES), B] block per batch
        self._fitted: list[Tensor] = []  # the same after affine_fit

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch: ``pred`` and ``target`` are ``[B, C, H, W]`` float images in [-1, 1]."""
        with torch.no_grad():
            per_image = image_metrics(pred, target)
            per_batch = _batch_from_images(per_image, pred, target)
            self._images.append(torch.stack([per_image[name] for name in METRIC_NAMES]).detach())
            fitted = image_metrics(affine_fit(pred.float(), target.float()), target)
            self._fitted.append(torch.stack([fitted[name] for name in METRIC_NAMES]).detach())
            self._batches.append(torch.stack([per_batch[name] for name in METRIC_NAMES]).detach())

    def compute(self) -> dict[str, float]:
        """The three protocols over everything added so far.

        Returns ``{name: tutorial value, name_mean: per-image mean, name_std: per-image population
        std, name_fit: fitted mean, name_fit_std: fitted std}`` for every name in ``METRIC_NAMES``, plus
        ``"images"``: the number of images seen.
        """
        if not self._batches:
            raise ValueError("no images to evaluate: call update(pred, target) at least once before compute()")
        # float64 on the CPU so that the means over many images do not lose digits.
        batches = torch.stack([row.cpu() for row in self._batches]).double()
        images = torch.cat([block.cpu() for block in self._images], dim=1).double()
        fitted = torch.cat([block.cpu() for block in self._fitted], dim=1).double()
        result: dict[str, float] = {}
        for index, name in enumerate(METRIC_NAMES):
            result[name] = batches[:, index].mean().item()
            result[f"{name}_mean"] = images[index].mean().item()
            result[f"{name}_std"] = images[index].std(correction=0).item()
            result[f"{name}_fit"] = fitted[index].mean().item()
            result[f"{name}_fit_std"] = fitted[index].std(correction=0).item()
        result["images"] = images.shape[1]
        return result

    def per_image(self) -> dict[str, list[float]]:
        """Each image's fitted value of every metric (``<name>_fit``), in the order the images were added:
        paired with another accumulator over the same images, the per-image differences."""
        if not self._fitted:
            raise ValueError("no images to evaluate: call update(pred, target) at least once before per_image()")
        fitted = torch.cat([block.cpu() for block in self._fitted], dim=1).double()
        return {f"{name}_fit": fitted[index].tolist() for index, name in enumerate(METRIC_NAMES)}
