"""The model card of a shipped checkpoint (``pretrained/<name>/MODEL_CARD.md``, written by
``python -m experiments.publish``): written from the inference-only checkpoint
(:func:`experiments.checkpoint.inference_only`) and the ``evaluation.json`` files of
``python -m experiments.evaluate``, so every number in it is a measured one.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ddpm.settings import UsageError
from experiments.checkpoint import Checkpoint
from experiments.config.schema import RunConfig, SamplingConfig
from experiments.microscope.biosr_sim import read_degradation, read_manifest
from experiments.evaluation.report import ROW_BICUBIC_FIT, paired_gains
from experiments.evaluation.stats import t_quantile_975
from experiments.inference.loading import load_for_inference
from experiments.inference.sampling import prediction_sampling
from experiments.integrity.json_files import portable_path, strict_json
from experiments.trust.calibration import CALIBRATION_METHODS, PREDICTED, StdCalibration
from unet import describe_network

# The checkpoint's own name in a pretrained folder, and its card.
MODEL_FILE = "model.pt"
CARD_FILE = "MODEL_CARD.md"
LEVEL_COLUMNS = ("psnr", "ssim")

LICENCE = """- Code: MIT. Weights: trained on windows of nine BioSR SIM cells (microtubules; Qiao C. et al. (2021),
  "Evaluation and development of deep neural networks for image super-resolution in optical microscopy",
  Nature Methods 18, 194-202, https://doi.org/10.1038/s41592-020-01048-5), released under CC BY 4.0: cite
  BioSR when you use these weights or their outputs (`experiments/data/real/README.md`).
- Method: Bachimanchi H., Volpe G. (2024), "Diffusion Models to Enhance the Resolution of Microscopy
  Images: A Tutorial"."""


def interval(mean: float, spread: float, images: int) -> str:
    """``mean ± half-width`` of the 95 % t interval of a mean over ``images`` whose population std is ``spread``."""
    if images < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {t_quantile_975(images - 1) * spread / math.sqrt(images - 1):.2f}"


def paired_gain(result: dict, metric: str = "psnr_fit") -> tuple[float, float | None]:
    """The mean per-image gain of the model over the bicubic input and its per-image std (population), from
    the per-image values ``evaluation.json`` holds; the difference of the means and None without them."""
    if not result.get("per_image"):
        return result["model"][metric] - result["bicubic"][metric], None
    gains = paired_gains(result, metric)
    return statistics.fmean(gains), statistics.pstdev(gains)


def level_rows(evaluation: dict) -> list[str]:
    """One Markdown row per level: fitted PSNR and SSIM of model and bicubic (95 % intervals of the mean over
    images, per-image spread in brackets), the paired fitted PSNR gain, and the tutorial protocol's PSNR."""
    rows = []
    for level, result in evaluation["levels"].items():
        model, bicubic = result["model"], result["bicubic"]
        images = int(model["images"])
        cells = [f"{interval(scores[f'{metric}_fit'], scores[f'{metric}_fit_std'], images)} "
                 f"(sd {scores[f'{metric}_fit_std']:.2f})"
                 for metric in LEVEL_COLUMNS for scores in (model, bicubic)]
        gain, spread = paired_gain(result)
        gain_cell = f"**{gain:+.2f}**" + ("" if spread is None else
                                          f" ± {interval(gain, spread, images).split(' ± ')[-1]} (sd {spread:.2f})")
        rows.append(f"| {level} | {images} | {cells[0]} | {cells[1]} | {gain_cell} | {cells[2]} | {cells[3]} | "
                    f"{model['psnr']:.2f} | {bicubic['psnr']:.2f} |")
    return rows


def prediction_note(recorded: SamplingConfig) -> str:
    """What the card's numbers were sampled with beside what prediction samples with, when they differ."""
    used = prediction_sampling(recorded)
    if used.sampler == "regression":
        return "Prediction and export run the same one network evaluation."
    return (f"Each heading names the sampler its numbers were measured with; `make predict`, `make export` and the "
            f"napari widget sample with {used.sampler} on {used.sampling_steps} network evaluations unless told "
            "otherwise (`--sampler`, `--sampling-steps`; `docs/sampling.md` compares the two on these cells).")


def metrics_section(name: str, evaluation: dict) -> str:
    sampling = evaluation["sampling"]
    samples = "one sample" if sampling["samples"] == 1 else f"the mean of {sampling['samples']} samples"
    how = ("one network evaluation" if sampling["sampler"] == "regression" else
           f"{sampling['sampler']}, {sampling['sampling_steps']} steps, {samples}")
    header = ("| level | images | PSNR fitted, model | PSNR fitted, bicubic | gain (dB) | SSIM fitted, model | "
              "SSIM fitted, bicubic | PSNR tutorial, model | PSNR tutorial, bicubic |\n|" + "---|" * 9)
    return (f"### {name} ({how}, seed {sampling['seed']})\n\n{header}\n" + "\n".join(level_rows(evaluation)) + "\n")


def data_description(root: str) -> str:
    """Where the training data came from: the cells of a real-structure set (its ``windows.csv``), else the root."""
    try:
        rows = read_manifest(Path(root))
    except OSError:
        return f"`{root}` (BioSR layout)"
    cells = {split: sorted({row["cell"].removeprefix("Cell_") for row in rows if row["split"] == split})
             for split in ("train", "validate", "test")}
    degradation = read_degradation(Path(root))
    drawn = "" if degradation is None or degradation["preset"] == "fixed" else (
        f", each window's degradation drawn from the `{degradation['preset'] or 'own'}` ranges of "
        "`experiments/microscope/degradation.py`")
    return (f"`{root}` (`make real-data`): windows of real BioSR SIM cells {', '.join(cells['train'])} degraded to "
            f"widefield by the physical model of `experiments/microscope/widefield.py`{drawn}; validation cell(s) "
            f"{', '.join(cells['validate'])}; test cells {', '.join(cells['test'])}, held out whole")


def read_robustness(spec: str) -> dict:
    """``NAME=FILE``: model ``NAME``'s entry of the JSON ``FILE`` of ``python -m experiments.bench.robustness``,
    as the card states it (windows, sampler, goal, verdict, conditions, the commit that measured it)."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise UsageError(f"--robustness {spec!r}: write NAME=FILE (NAME: the model's name in the benchmark's JSON)")
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"--robustness {path}: cannot be read as the benchmark's JSON ({error})") from error
    models = record.get("models", {})
    if name not in models:
        raise UsageError(f"--robustness {path}: holds no model {name!r}; it holds {sorted(models)}")
    sampling = models[name]["sampling"]
    return {"windows": record["windows"], "sampler": sampling["sampler"],
            "sampling_steps": sampling["sampling_steps"], "goal": record["goal"],
            "verdict": record["verdicts"][name], "conditions": models[name]["conditions"], "commit": record["commit"]}


def robustness_section(robustness: dict | None) -> str:
    """The card's table of the fitted gain across microscopes (one model's entry of
    ``python -m experiments.bench.robustness``'s JSON: its conditions, the goal and its verdict), or nothing."""
    if robustness is None:
        return ""
    shapes = {"measured": "measured, broadened to", "gaussian": "Gaussian (the fixed simulation),"}
    rows = "\n".join(
        f"| {shapes[row.get('optics', 'measured')]} {row['fwhm_nm']:.0f} nm | {100 * row['background']:.0f} % | "
        f"level_{row['level']:02d} | "
        f"**{row['mean']:+.2f}** ± {row['ci95_half_width']:.2f} |" for row in robustness["conditions"])
    goal, verdict = robustness["goal"], robustness["verdict"]
    sampled = ("its one network evaluation" if robustness["sampler"] == "regression" else
               f"{robustness['sampler']} on\n{robustness['sampling_steps']} evaluations")
    return f"""## Across microscopes
The fitted gain over bicubic (dB, mean ± 95 % interval over {robustness['windows']} held-out windows) when the
microscope is not the one of the training data: BioSR's measured PSF broadened to each width, a background of
mostly out-of-focus structure, BioSR's photon levels; sampled with {sampled}. Measured by `python -m experiments.bench.robustness`
(`docs/benchmarks.md`). Over {goal['fwhm_nm'][0]:.0f} to {goal['fwhm_nm'][1]:.0f} nm and
{100 * goal['background'][0]:.0f} to {100 * goal['background'][1]:.0f} % background at level_{goal['level']:02d} the
least gain is {verdict['least_gain_db']:+.2f} dB and the gains span {verdict['spread_db']:.2f} dB (goal: at least
{goal['min_gain_db']:+.1f} dB, spanning less than {goal['max_spread_db']:.1f} dB: {'met' if verdict['met'] else 'not met'}).

| PSF (FWHM) | background | photons | gain (dB) |
|---|---|---|---|
{rows}

"""


def shipped_calibration(evaluations: dict[str, dict], method: str, diffusion_steps: int) -> tuple[str, StdCalibration]:
    """The error model ``method`` (:data:`~experiments.trust.calibration.CALIBRATION_METHODS`) that the first
    evaluation with one fitted on its validation split, with the sampling it holds for: (its name, it)."""
    if method not in CALIBRATION_METHODS:
        raise UsageError(f"--calibration {method!r}: choose one of {CALIBRATION_METHODS}")
    for name, evaluation in evaluations.items():
        fitted = evaluation.get("calibration")
        if fitted and method in fitted:
            sampling = evaluation["sampling"]
            config = SamplingConfig(**{key: sampling[key] for key in ("sampler", "variance", "sampling_steps", "eta", "samples")})
            return name, StdCalibration(fitted[method]["scale"], fitted[method]["floor"], method, config.sampler,
                                        config.network_evaluations(diffusion_steps), config.eta,
                                        PREDICTED if evaluation.get("predicted_std") else config.samples, fitted["images"])
    raise UsageError("--calibration needs an --evaluation with a std (2 or more samples, or a probabilistic regression) "
                     "on a data root with a validation split (python -m experiments.evaluate --samples 8): none of the "
                     "evaluations given fitted one")


def calibration_section(name: str, evaluation: dict, calibration: StdCalibration) -> str:
    """The card's table of the shipped error model on the held-out cells of evaluation ``name``, level by level:
    the 90 % interval's coverage and width, the curve's ENCE and worst bin, and the posterior check."""
    rows = []
    for level, result in evaluation["levels"].items():
        row, posterior = result["calibration"][calibration.method], result["quality"]["model"].get("posterior")
        raw = result["calibration"]["raw"]
        dispersion = "– (no samples)" if posterior is None else f"{posterior['dispersion']:.2f}"
        rows.append(f"| {level} | {raw['coverage90']:.2f} | **{row['coverage90']:.2f}** | {row['width90']:.3f} | "
                    f"{row['ence']:.2f} | {row['worst_gap']:.2f} | {dispersion} |")
    predicted = calibration.samples == PREDICTED
    flags = "--std" if predicted else f"--samples {calibration.samples} --std"
    raw = "model's predicted std alone" if predicted else "samples' std alone"
    other = "" if predicted else " Another sampler or evaluation count writes the raw std."
    return f"""## Error bars
`{flags}` writes the {calibration.describe()}. On the held-out cells
(evaluation "{name}"): the share of pixels inside +-1.645 of it (coverage 90 %, goal 0.88 to 0.92; raw: the
{raw}), the interval's mean width ([-1, 1] units), the calibration curve's ENCE and its worst bin
(|RMSE - predicted| / predicted, goal below 0.15), and the posterior check's dispersion (1: the samples spread
as draws from the posterior; 0: copies; `docs/trust.md`).{other}

| level | coverage 90 %, raw | coverage 90 %, calibrated | width 90 % | ENCE | worst bin | dispersion |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

"""


def model_card(title: str, summary: str, checkpoint: Checkpoint, evaluations: dict[str, dict], limits: list[str],
               model_path: Path, size_bytes: int, trained_on: str | None = None, robustness: dict | None = None,
               calibrated_by: str | None = None) -> str:
    """The Markdown model card of an inference-only checkpoint, its evaluations (name -> evaluation.json), when
    measured its gain across microscopes (:func:`robustness_section`) and, when it ships one, its error model
    (measured on the evaluation named ``calibrated_by``: :func:`calibration_section`)."""
    config = RunConfig.from_dict(checkpoint.config)
    source = checkpoint.source
    predictor = load_for_inference(model_path, "cpu")
    grid = predictor.grid  # the checkpoint's, or the legacy default, as prediction reads it
    parameters = sum(p.numel() for p in predictor.model.parameters())
    train, data = config.train, config.data
    objective = ("probabilistic regression (one evaluation: the image and a per-pixel Laplace scale, its error bar)"
                 if train.predicts_std else "regression (one evaluation, the baseline)" if train.objective == "regression"
                 else f"diffusion of the residual of the regression `{train.base}` (its weights inside this file), "
                 f"T = {config.diffusion.steps}" if train.objective == "residual"
                 else f"diffusion, T = {config.diffusion.steps} ({config.diffusion.schedule} betas "
                 f"{config.diffusion.beta_start:g} to {config.diffusion.beta_end:g})")
    task = (f"native: widefield on the camera's grid ({grid.input_pixel_um * 1000:.1f} nm pixels) in, SIM grid "
            f"({grid.output_pixel_um * 1000:.1f} nm) out, 2x the side; the model enlarges its input itself"
            if config.data.task == "native" else
            f"tutorial: input and output on the camera's grid ({grid.input_pixel_um * 1000:.1f} nm pixels); the "
            "output cannot hold the SIM's 31.3 nm detail (`--upsample` puts it on a grid twice as fine, no sharper)")
    sections = "\n".join(metrics_section(name, evaluation) for name, evaluation in evaluations.items())
    limit_lines = "\n".join(f"- {line}" for line in limits)
    trust_flags = (" --std --check" if train.predicts_std else  # its std is predicted, not a spread of samples
                   " --check" if train.objective == "regression" else " --samples 8 --std --check")  # no spread to show
    error_bars = ("" if checkpoint.calibration is None else
                  calibration_section(calibrated_by, evaluations[calibrated_by], StdCalibration(**checkpoint.calibration)))
    return f"""# {title}

{summary}

`{model_path.name}`: {size_bytes / 1e6:.1f} MB, {predictor.weights} weights of run `{source.run}` (epoch
{source.epoch}), sha256 {predictor.digest}. Use it as any checkpoint:

    make predict CHECKPOINT={model_path.as_posix()} INPUT=cells/
    python -m experiments.predict --checkpoint {model_path.as_posix()} --input cells/ --output results{trust_flags}
    make export CHECKPOINT={model_path.as_posix()}

## Task
{task}. Inputs are scaled as the training data were (`{data.normalization}` normalisation); pass the camera
image itself with its pixel size (`--pixel-size` in µm, or OME / ImageJ metadata): a pixel more than 25 %
off the training inputs' gets a warning.

## Training
- Data: {data_description(data.root)}.
- Network: {describe_network(config.network)}; {parameters:,} parameters.
- Objective: {objective}; loss {train.loss}{', min-SNR weighting' if train.loss_weighting == 'min_snr' else ''}.
- Budget: {f'fine-tuned from `{train.init}`: ' if train.init else ''}{train.epochs} epochs of {'all' if data.max_train_pairs is None else data.max_train_pairs} training pairs on {f'{data.crop} x {data.crop}' if data.crop else 'whole'} windows, batch {train.batch_size}, AdamW lr {train.lr:g}, EMA {train.ema_decay}, seed {train.seed}; {source.training_seconds / 60:.0f} min of training{f' on {trained_on}' if trained_on else ''} (the epochs' own times; evaluations not counted).

## Metrics on the held-out cells
Both protocols of `docs/study.md`: **fitted** (each output and the bicubic input mapped by the affine fit to
the target that minimises its squared error, as CARE does: scale-invariant) and the tutorial's (pooled per
batch, as the paper reports). Means over the test images with their 95 % intervals (t, over images) and the
per-image standard deviation (sd); gain = fitted PSNR of the model minus that of the bicubic input
(`{ROW_BICUBIC_FIT}`), image by image (paired), with its interval and per-image sd. Measured by `python -m experiments.evaluate` (the evaluation folders named below).
{prediction_note(config.sampling)}

{sections}
{robustness_section(robustness)}{error_bars}## Limits
{limit_lines}
- Trained on synthetic widefield images made from real SIM images, not on recorded widefield images: on a
  real microscope's images the noise, the PSF and the background differ, so check every output
  (`{trust_flags.strip()}`, `docs/trust.md`).
- Microtubules only, one magnification: on other structures or scales it will draw filaments that are not there.

## Licence and citation
{LICENCE}
"""


def card_json(checkpoint: Checkpoint, evaluations: dict[str, dict], robustness: dict | None = None,
              calibrated_by: str | None = None) -> dict:
    """The card's numbers as JSON (strict: NaN and inf become null with a note); a shipped calibration with the
    name of the evaluation its table comes from."""
    portable = {name: {**evaluation, "checkpoint": portable_path(evaluation["checkpoint"])}
                for name, evaluation in evaluations.items()}
    calibration = None if checkpoint.calibration is None else {**checkpoint.calibration, "evaluation": calibrated_by}
    extra = {key: value for key, value in (("robustness", robustness), ("calibration", calibration)) if value is not None}
    return strict_json({"source": checkpoint.source.to_json(), "grid": checkpoint.grid, "config": checkpoint.config,
                        "evaluations": portable, **extra})
