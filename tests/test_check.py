"""Issue 13, wired in: ``predict --check`` writes the consistency map, the FRC of two samples and a
summary, and ``evaluate`` adds RSE / RSP, FRC and the calibration of the std map to each level.

Expectations come from the files' geometry (shapes, pixel sizes given on the command line) and from a
planted structure: an output that is its input plus a bright blob the input lacks must light up the
consistency map at the blob, the SQUIRREL criterion.
"""

import json
from pathlib import Path
from dataclasses import replace

import numpy as np
import scipy.stats
import pytest
import tifffile
import torch

from experiments.config.schema import DataConfig, EvalConfig, SamplingConfig
from experiments.image_io.tif_io import read_metadata
from experiments.inference.predictor import Prediction, Predictor
from experiments.predict import main
from test_predict import FAST, TINY, save_checkpoint
from training_helpers import make_tiny_data

RNG = np.random.default_rng(13)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("run") / "last.pt")


def smooth_field(shape: tuple[int, ...]) -> np.ndarray:
    """A positive random field blurred over a few pixels: a widefield-like image in [0.2, 0.8]."""
    noise = torch.from_numpy(RNG.random(shape, dtype=np.float32))[None]
    blurred = torch.nn.functional.avg_pool2d(noise, 7, stride=1, padding=3, count_include_pad=False)[0].numpy()
    low, high = blurred.min(), blurred.max()
    return (0.2 + 0.6 * (blurred - low) / (high - low)).astype(np.float32)


def test_check_writes_the_map_the_summary_and_the_figure_for_every_frame(checkpoint, tmp_path, capsys):
    source = tmp_path / "stack.tif"
    tifffile.imwrite(source, smooth_field((2, 16, 14)), photometric="minisblack")
    out = tmp_path / "out"
    args = ["--checkpoint", checkpoint, "--input", source, "--output", out, "--check", "--upsample",
            "--pixel-size", "0.08", *FAST]
    assert main([str(arg) for arg in args]) == 0, capsys.readouterr().err

    consistency = out / "stack_sr_consistency.tif"
    with tifffile.TiffFile(consistency) as tif:
        # Two frames on the native input's grid (the fit handles the 2x of --upsample), its pixel size.
        assert tif.series[0].shape == (2, 16, 14)
        pixels = tif.ome_metadata
    assert 'PhysicalSizeX="0.08"' in pixels
    summary = json.loads((out / "check.json").read_text())["frames"]
    assert [entry["frame"] for entry in summary] == [0, 1]
    for entry in summary:
        assert all(np.isfinite(entry[key]) for key in ("rse", "rsp", "alpha", "beta", "sigma_px"))
        assert entry["frc_resolution_px"] is not None and np.isfinite(entry["frc_resolution_px"])
        # The output's pixel is 0.04 µm = 40 nm: the FRC in nm is 40 x the FRC in pixels.
        assert entry["frc_resolution_nm"] == pytest.approx(40.0 * entry["frc_resolution_px"])
    assert read_metadata(out / "stack_sr.tif")["check"] == [
        {key: value for key, value in entry.items() if key not in ("source", "output", "frame")} for entry in summary
    ]
    figure = out / "stack_sr_check.png"
    assert figure.stat().st_size > 10_000 and figure.read_bytes()[:4] == b"\x89PNG"


def test_an_invented_blob_lights_up_the_consistency_map_where_it_was_invented(checkpoint, tmp_path, monkeypatch, capsys):
    image = smooth_field((48, 48))
    source = tmp_path / "cell.tif"
    tifffile.imwrite(source, image)
    blob = torch.zeros(48, 48)
    rows, columns = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    blob += torch.exp(-((rows - 20) ** 2 + (columns - 28) ** 2) / (2 * 1.5**2))

    def hallucinating(self, frames, count, request, generator_of):
        # The input itself (fully explained by it) plus a bright blob it does not hold, for every sample.
        for index, image in frames:
            output = image[None] + 1.5 * blob
            yield index, Prediction(output, torch.zeros_like(output) if request.sampling.samples > 1 else None,
                                    output.expand(request.keep, *output.shape))

    monkeypatch.setattr(Predictor, "sample_frames", hallucinating)
    args = ["--checkpoint", checkpoint, "--input", source, "--output", tmp_path / "out", "--check", *FAST]
    assert main([str(arg) for arg in args]) == 0, capsys.readouterr().err
    error = tifffile.imread(tmp_path / "out" / "cell_sr_consistency.tif")
    near = (rows - 20) ** 2 + (columns - 28) ** 2 <= 3**2
    # Inside the fitted region only: an 11 px border here, (48 - 2) // 4 (fit_border on a small input).
    inner = torch.zeros(48, 48, dtype=torch.bool)
    inner[11:-11, 11:-11] = True
    at_blob = float(error[near.numpy()].mean())
    elsewhere = float(error[(inner & ~near & ((rows - 20) ** 2 + (columns - 28) ** 2 > 6**2)).numpy()].mean())
    assert at_blob > 3 * elsewhere


def _refuse(token: str):
    raise ValueError(f"check.json is not strict JSON: {token}")


@pytest.mark.parametrize("shape, constant_frame", [((3, 24, 24), 1), ((2, 3, 40), None), ((1, 1, 40), None)])
def test_degenerate_frames_get_noted_measures_in_strict_json(checkpoint, tmp_path, monkeypatch, capsys, shape,
                                                             constant_frame):
    """A constant frame among normal ones, and frames a few pixels high: the check completes, check.json
    is strict JSON, every undefined measure is None with a note, and the consistency TIF holds no NaN."""
    stack = smooth_field(shape)
    if constant_frame is not None:
        stack[constant_frame] = 0.5
    source = tmp_path / "stack.tif"
    tifffile.imwrite(source, stack, photometric="minisblack")
    # Every sample is the input itself: a constant frame stays constant, so its FRC is undefined too.
    def identity(self, frames, count, request, generator_of):
        for index, image in frames:
            output = image[None]
            yield index, Prediction(output, torch.zeros_like(output) if request.sampling.samples > 1 else None,
                                    output.expand(request.keep, *output.shape))

    monkeypatch.setattr(Predictor, "sample_frames", identity)
    args = ["--checkpoint", checkpoint, "--input", source, "--output", tmp_path / "out", "--check", *FAST]
    assert main([str(arg) for arg in args]) == 0, capsys.readouterr().err
    frames = json.loads((tmp_path / "out" / "check.json").read_text(), parse_constant=_refuse)["frames"]
    assert len(frames) == shape[0]
    for entry in frames:
        for key in ("rse", "rsp", "alpha", "beta", "sigma_px", "frc_resolution_px", "frc_half_bit_px"):
            assert entry[key] is None or np.isfinite(entry[key]), key
            assert entry[key] is not None or entry.get(f"{key}_note") or key.startswith("frc_"), key  # frc_*: Nyquist
    if constant_frame is not None:
        assert "constant" in frames[constant_frame]["rsp_note"] and "constant" in frames[1]["frc_resolution_px_note"]
        assert all(frames[index]["rsp"] > 0.9 for index in range(shape[0]) if index != constant_frame)
    if shape[1] == 1:
        assert "too small" in frames[0]["rse_note"] and "zeros" in frames[0]["error_map_note"]
    assert np.isfinite(tifffile.imread(tmp_path / "out" / "stack_sr_consistency.tif")).all()


@pytest.fixture(scope="module")
def evaluation_run(tmp_path_factory):
    data = make_tiny_data(tmp_path_factory.mktemp("data"))
    config = replace(TINY, data=DataConfig(root=str(data), num_workers=0),
                     eval=EvalConfig(batch_size=2, max_test_images=2, levels=("level_09",)),
                     sampling=SamplingConfig(sampler="ddim", sampling_steps=3))
    return save_checkpoint(tmp_path_factory.mktemp("evalrun") / "last.pt", config)


def pooled(batches):
    samples = np.concatenate([batch for batch, _ in batches], axis=1)[:, :, 0]
    return samples, np.concatenate([target for _, target in batches])[:, 0]


def curve_by_hand(batches) -> tuple[float, float]:
    """(scale, floor): numpy's least squares of each bin's relative misfit (scale^2 v_b + floor^2) / e_b - 1,
    rows weighted by the square root of the bin's pixels, over 10 equal-count bins of the pixels sorted by their
    predicted error std, std sqrt((N + 1) / (N - 1)) (the population std of N samples; the mean's error);
    v_b the bin's mean predicted variance, e_b its mean squared error."""
    samples, targets = pooled(batches)
    n = samples.shape[0]
    predicted = (samples.std(0, ddof=0) * np.sqrt((n + 1) / (n - 1))).ravel()
    error = (samples.mean(0) - targets).ravel()
    order = np.argsort(predicted, kind="stable")
    bins = list(zip(np.array_split(predicted[order], 10), np.array_split(error[order], 10)))
    root = np.sqrt([len(p) for p, _ in bins])
    v = np.array([np.mean(p**2) for p, _ in bins])
    e = np.array([np.mean(x**2) for _, x in bins])
    rows = np.stack([v / e, 1 / e], axis=1) * root[:, None]
    (scale2, floor2), *_ = np.linalg.lstsq(rows, root, rcond=None)
    if scale2 <= 0 or floor2 < 0:
        scale2, floor2 = (root**2 * v / e).sum() / (root**2 * (v / e) ** 2).sum(), 0.0
    return float(np.sqrt(scale2)), float(np.sqrt(floor2))


def interval_by_hand(batches, scale: float, floor: float) -> float:
    """The split-conformal factor: the ceil((n + 1) 0.9)-th smallest |error| / modelled error std, over 1.645."""
    samples, targets = pooled(batches)
    n = samples.shape[0]
    std = np.hypot(scale * samples.std(0, ddof=0) * np.sqrt((n + 1) / (n - 1)), floor)
    error = np.abs(samples.mean(0) - targets)
    ratio = np.sort(np.where(std > 0, error / np.where(std > 0, std, 1), np.where(error > 0, np.inf, 0)).ravel())
    return float(ratio[min(len(ratio), int(np.ceil((len(ratio) + 1) * 0.9))) - 1] / scipy.stats.norm.ppf(0.95))


def coverage_by_hand(samples, targets, scale, floor) -> float:
    n = samples.shape[0]
    half = scipy.stats.norm.ppf(0.95) * np.hypot(scale * samples.std(0, ddof=0) * np.sqrt((n + 1) / (n - 1)), floor)
    return float(np.mean(np.abs(samples.mean(0) - targets) <= half))


def test_evaluate_adds_the_trust_measures_and_the_calibration_figure(evaluation_run, tmp_path, monkeypatch):
    """Also: the model's scores with --samples 3 are those of the mean of its 3 samples, recomputed here from
    the samples themselves (numpy's mean and least-squares fit), not those of any one sample; and the
    calibration scale is the binned least squares of Levi et al. written out in numpy, on the validation
    split's samples and targets, never the test level's."""
    from experiments import evaluate as command
    from experiments.evaluation import trust_report
    from test_published_numbers import fitted_by_hand

    seen, validation = [], []  # (samples [S, B, 1, H, W], targets [B, 1, H, W]) of every batch, as drawn

    class Recording(trust_report.TrustAccumulator):
        def update(self, inputs, samples, targets):
            (validation if self.calibration_only else seen).append((samples.double().numpy(),
                                                                     targets.double().numpy()))
            super().update(inputs, samples, targets)

    monkeypatch.setattr(command, "TrustAccumulator", Recording)
    monkeypatch.setattr(trust_report, "TrustAccumulator", Recording)
    # eta 1: DDIM draws fresh noise at every step, so the samples (and so their mean and one of them) differ
    assert command.main(["--checkpoint", str(evaluation_run), "--samples", "3", "--eta", "1", "--device", "cpu",
                         "--no-progress", "--out", str(tmp_path)]) == 0
    level = json.loads((tmp_path / "evaluation.json").read_text())["levels"]["level_09"]
    samples = np.concatenate([batch for batch, _ in seen], axis=1)[:, :, 0]
    targets = np.concatenate([target for _, target in seen])[:, 0]
    assert samples.shape[0] == 3 and level["model"]["images"] == len(targets) == 2
    mean = samples.mean(0)
    fitted = [fitted_by_hand(mean[i], targets[i])["psnr"] for i in range(len(targets))]
    np.testing.assert_allclose(level["per_image"]["model"]["psnr_fit"], fitted, rtol=0, atol=1e-3)
    assert level["model"]["psnr_fit"] == pytest.approx(np.mean(fitted), abs=1e-3)
    assert level["model"]["psnr_fit_std"] == pytest.approx(np.std(fitted), abs=1e-3)
    # Unfitted, the untrained network's samples are mostly noise, which their mean averages down: the mean's
    # PSNR is far from any one sample's, so this tells the mean from a sample.
    def psnr(images):
        return np.mean([10 * np.log10(4 / np.mean((image - target) ** 2)) for image, target in zip(images, targets)])

    assert level["model"]["psnr_mean"] == pytest.approx(psnr(mean), abs=1e-3)
    assert min(abs(psnr(sample) - psnr(mean)) for sample in samples) > 1.0
    quality = level["quality"]
    for key in ("rse", "rsp", "frc_px", "frc_samples_px"):
        assert np.isfinite(quality["model"][key]), key
    # FRC resolutions lie between Nyquist (2 px) and the image size (32 px: ring 1).
    assert 2.0 <= quality["bicubic"]["frc_px"] <= 32.0 and 2.0 <= quality["model"]["frc_samples_px"] <= 32.0
    calibration = level["calibration"]
    scale, floor = curve_by_hand(validation)
    assert (calibration["curve"]["scale"], calibration["curve"]["floor"]) == pytest.approx((scale, floor), rel=1e-6, abs=1e-9)
    factor = interval_by_hand(validation, scale, floor)
    assert (calibration["interval"]["scale"], calibration["interval"]["floor"]) == pytest.approx((scale * factor, floor * factor), rel=1e-6, abs=1e-9)
    # Fitted on the validation split's windows (its target files, read here), not on the test level's.
    root = Path(torch.load(evaluation_run, weights_only=True)["config"]["data"]["root"])
    files = sorted((root / "validate_gt").glob("*.tif"))
    recorded = np.concatenate([target for _, target in validation])[:, 0]
    assert len(recorded) == min(len(files), 2)
    for image, file in zip(recorded, files):
        assert np.corrcoef(image.ravel(), tifffile.imread(file).astype(np.float64).ravel())[0, 1] > 0.9999, file
    assert np.isfinite(calibration["curve"]["ece"]) and 0 <= calibration["raw"]["coverage90"] <= 1
    interval = calibration["interval"]
    assert interval["coverage90"] == pytest.approx(coverage_by_hand(samples, targets, interval["scale"], interval["floor"]))
    ranks = [np.argsort(np.argsort(values.ravel())) for values in (samples.std(axis=0), np.abs(mean - targets))]
    assert calibration["raw"]["rank_correlation"] == pytest.approx(np.corrcoef(*ranks)[0, 1], abs=1e-4)  # float32 ties
    posterior = level["quality"]["model"]["posterior"]
    n = samples.shape[0]
    ratio = [np.mean((samples[:, i] - targets[i]) ** 2) / np.mean((mean[i] - targets[i]) ** 2) for i in range(len(targets))]
    assert posterior["dispersion"] == pytest.approx(np.mean([(r - 1) / (2 * n / (n + 1) - 1) for r in ratio]), rel=1e-6)
    assert (tmp_path / "calibration_level_09.png").read_bytes()[:4] == b"\x89PNG"
    report = (tmp_path / "evaluation.md").read_text()
    assert "Can this output be trusted?" in report and "fitted on the validation split" in report


def test_evaluate_with_one_sample_has_no_sample_frc_and_no_calibration(evaluation_run, tmp_path):
    from experiments.evaluate import main as evaluate

    assert evaluate(["--checkpoint", str(evaluation_run), "--samples", "1", "--device", "cpu", "--no-progress",
                     "--out", str(tmp_path)]) == 0
    level = json.loads((tmp_path / "evaluation.json").read_text())["levels"]["level_09"]
    assert "frc_samples_px" not in level["quality"]["model"] and "calibration" not in level
    assert not (tmp_path / "calibration_level_09.png").exists()


@pytest.mark.parametrize("mirrored", [False, True])
def test_an_output_equal_to_its_input_is_consistent_and_resolves_what_the_input_resolves(
    evaluation_run, tmp_path, monkeypatch, mirrored
):
    """Known answers: sampling replaced by a copy of the input, the re-degradation fits exactly (RSE 0,
    RSP 1), the output's FRC against the target is the bicubic input's, and two identical samples agree
    at every ring (Nyquist, 2 px). The input mirrored left-right instead no longer matches its input or
    its target: RSE > 0 and a coarser FRC resolution than the input's."""
    from experiments.evaluate import main as evaluate
    from experiments.inference.sampling import Sampling

    def copies(self, model, condition, *args, **kwargs):
        image = condition.flip(-1) if mirrored else condition
        return image.repeat(2, 1, 1, 1, 1).float()

    monkeypatch.setattr(Sampling, "draw", copies)
    assert evaluate(["--checkpoint", str(evaluation_run), "--samples", "1", "--device", "cpu", "--no-progress",
                     "--out", str(tmp_path)]) == 0
    quality = json.loads((tmp_path / "evaluation.json").read_text())["levels"]["level_09"]["quality"]
    assert quality["model"]["frc_samples_px"] == 2.0
    if mirrored:
        assert quality["model"]["rse"] > 1e-2 and quality["model"]["frc_px"] > 1.5 * quality["bicubic"]["frc_px"]
    else:
        assert quality["model"]["rse"] < 1e-6 and quality["model"]["rsp"] > 1 - 1e-6
        assert quality["model"]["frc_px"] == pytest.approx(quality["bicubic"]["frc_px"])
        # The output is the input: every score is the bicubic input's, image by image in the same order (the
        # pairing every published paired gain relies on).
        level = json.loads((tmp_path / "evaluation.json").read_text())["levels"]["level_09"]
        for name, value in level["bicubic"].items():
            assert level["model"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
        for name, values in level["per_image"]["bicubic"].items():
            assert level["per_image"]["model"][name] == pytest.approx(values, rel=1e-6), name


def test_check_leaves_the_output_itself_unchanged(checkpoint, tmp_path, capsys):
    """With one sample the FRC's second sample is drawn after the output's own, so the same seed gives the same
    output (it runs in the same batch, so only the network's batch-size-dependent float rounding may differ)."""
    source = tmp_path / "cell.tif"
    tifffile.imwrite(source, smooth_field((20, 20)))
    for folder, extra in (("plain", []), ("checked", ["--check"])):
        args = ["--checkpoint", checkpoint, "--input", source, "--output", tmp_path / folder, "--seed", "5",
                "--no-preview", *extra, *FAST]
        assert main([str(arg) for arg in args]) == 0, capsys.readouterr().err
    plain = tifffile.imread(tmp_path / "plain" / "cell_sr.tif")
    np.testing.assert_allclose(plain, tifffile.imread(tmp_path / "checked" / "cell_sr.tif"), atol=1e-5, rtol=0)
    assert 0.1 < plain.std()  # an image, not a constant


def test_an_error_model_that_cannot_be_fitted_is_a_note_not_a_failed_evaluation(evaluation_run, tmp_path, monkeypatch):
    """Samples that never differ on validation (an untrained or collapsed model) leave no error model to fit:
    the evaluation still scores every level, gives the raw calibration and says why there is no other."""
    from experiments import evaluate as command
    from experiments.evaluation import trust_report

    def never(self):
        raise ValueError("the samples never differ (std 0 everywhere): no spread to calibrate")

    monkeypatch.setattr(trust_report.TrustAccumulator, "fit_models", never)
    assert command.main(["--checkpoint", str(evaluation_run), "--samples", "2", "--eta", "1", "--device", "cpu",
                         "--no-progress", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "evaluation.json").read_text())
    assert "never differ" in record["calibration"]["calibration_note"] and "curve" not in record["calibration"]
    assert list(record["levels"]["level_09"]["calibration"]) == ["raw"]
    assert "no error model could be fitted" in (tmp_path / "evaluation.md").read_text()
