"""A study's results: per test level and arm, the mean over seeds with its 95 % interval in both protocols,
the paired difference of two arms (same seeds), the bicubic input, and a figure of quality against level.

Read from each run's ``evaluation.json`` (:mod:`experiments.studies.runner`); written as ``study.md``
(tables), ``study.json`` (every number, with the study's configuration, the machine and the timings)
and ``study_levels.png``. Protocols: ``tutorial`` (the tutorial's per-batch values, as the paper
scores) and ``fitted`` (per image after the affine least-squares fit to the target, CARE's protocol;
scale-invariant), see :mod:`experiments.evaluation.metrics`; the FRC resolution against the target
(scale-invariant already) stands beside the fitted ones. The error bars of the mean of N samples have
tables of their own (:data:`TRUST_METRICS`: the posterior check, the 90 % interval's coverage raw and
calibrated on validation, its width, and whether the std is high where the error is), for every arm that
has a std (one deterministic evaluation has none), and so has the detail the outputs hold (:data:`DETAIL_METRICS`:
high-frequency power beside the target's, :mod:`experiments.trust.spectrum`), with the spectra averaged over seeds
in ``study_spectra.png``. A deterministic arm (a regression) is evaluated once; where the mean of N is scored on
the same images as one sample, its one output stands in the mean-of-N tables too, since it is its mean.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments import figures
from experiments.integrity.json_files import write_json
from experiments.records import HIGHER_IS_BETTER, METRIC_LABELS
from experiments.studies.config import StudyConfig
from experiments.studies.runner import MEAN, SINGLE, plan
from experiments.evaluation.stats import Interval, mean_interval, paired_difference
from experiments.trust.figures import plot_spectra

PROTOCOLS = {"tutorial": "", "fitted": "_fit"}  # protocol -> the suffix of its keys in evaluation.json
COLUMNS = ("psnr", "ssim", "ms_ssim", "nrmse", "mae")
FRC = "frc_px"
SUMMARY_MD, SUMMARY_JSON, FIGURE, SPECTRA = "study.md", "study.json", "study_levels.png", "study_spectra.png"
BICUBIC = "bicubic"
TRUST = "trust"  # the pseudo-protocol of the error bars' measures
# measure -> (its label with what it should be, where it is in a level of evaluation.json)
TRUST_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dispersion": ("posterior dispersion (1: draws, 0: copies)", ("quality", "model", "posterior", "dispersion")),
    "coverage90_raw": ("coverage of the raw 90 % interval (goal 0.90)", ("calibration", "raw", "coverage90")),
    "coverage90": ("coverage of the calibrated 90 % interval (goal 0.88-0.92)", ("calibration", "interval", "coverage90")),
    "width90": ("width of the calibrated 90 % interval, [-1, 1] units", ("calibration", "interval", "width90")),
    "worst_gap": ("calibrated curve's worst bin, abs(RMSE - predicted) / predicted (goal below 0.15)",
                  ("calibration", "interval", "worst_gap")),
    "rank_correlation": ("rank correlation of std and abs. error", ("calibration", "raw", "rank_correlation")),
}


DETAIL = "detail"  # the pseudo-protocol of the outputs' high-frequency power
DETAIL_METRICS: dict[str, str] = {
    "hf_power_db": "power above 1/4 cycle per pixel over the target's, output (dB; 0: the target's detail)",
    "hf_power_sample_db": "power above 1/4 cycle per pixel over the target's, one sample (dB)",
}


def _values(scores: dict, quality: dict, protocol: str) -> dict[str, float]:
    values = {name: scores[f"{name}{PROTOCOLS[protocol]}"] for name in COLUMNS}
    if protocol == "fitted" and quality.get(FRC) is not None:
        values[FRC] = quality[FRC]
    return values


def trust_values(result: dict) -> dict[str, float]:
    """The :data:`TRUST_METRICS` a level's result holds (none for an evaluation without a std)."""
    values = {}
    for metric, (_, keys) in TRUST_METRICS.items():
        value = result
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            values[metric] = float(value)
    return values


def evaluations_of(config: StudyConfig, run) -> dict[str, Path]:
    """The evaluation folders whose results count for ``run``: its own, and for a deterministic arm its one output
    as its mean of N too, where the mean of N is scored on as many images as one sample."""
    found = {name: run.folder / name for name in (SINGLE, MEAN) if (run.folder / name / "evaluation.json").is_file()}
    if run.arm.regression and SINGLE in found and config.mean_samples > 0 and config.mean_images == config.images:
        found[MEAN] = found[SINGLE]
    return found


def collect(config: StudyConfig, out: Path) -> dict:
    """``{evaluation: {level: {arm: {protocol: {metric: {seed: value}}}}}}`` over the runs evaluated so
    far (:func:`evaluations_of`), with the bicubic input under the arm name ``"bicubic"`` (the same images for every
    run), the error bars' measures under the protocol :data:`TRUST` and the detail's under :data:`DETAIL`."""
    found: dict = {}
    for run in plan(config, out):
        for evaluation, folder in evaluations_of(config, run).items():
            for level, result in json.loads((folder / "evaluation.json").read_text())["levels"].items():
                per_level = found.setdefault(evaluation, {}).setdefault(level, {})
                quality = result.get("quality", {})
                for arm, scores, frc in ((run.arm.name, result["model"], quality.get("model", {})),
                                         (BICUBIC, result["bicubic"], quality.get("bicubic", {}))):
                    for protocol in PROTOCOLS:
                        for metric, value in _values(scores, frc, protocol).items():
                            per_level.setdefault(arm, {}).setdefault(protocol, {}).setdefault(metric, {})[run.seed] = value
                    for metric in DETAIL_METRICS:
                        if isinstance(frc.get(metric), (int, float)):
                            per_level.setdefault(arm, {}).setdefault(DETAIL, {}).setdefault(metric, {})[run.seed] = frc[metric]
                for metric, value in trust_values(result).items():
                    per_level.setdefault(run.arm.name, {}).setdefault(TRUST, {}).setdefault(metric, {})[run.seed] = value
    return found


def mean_spectra(config: StudyConfig, out: Path, evaluation: str) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Per arm and level, the radially averaged spectra of ``evaluation`` (:mod:`experiments.trust.spectrum`)
    averaged over the seeds that recorded them: arm -> level -> ``{"frequency", "target", "sample", "mean",
    "bicubic"}``."""
    sums: dict = {}
    for run in plan(config, out):
        folder = evaluations_of(config, run).get(evaluation)
        if folder is None:
            continue
        for level, result in json.loads((folder / "evaluation.json").read_text())["levels"].items():
            spectrum = result.get("quality", {}).get("spectrum")
            if spectrum is not None:
                sums.setdefault(run.arm.name, {}).setdefault(level, []).append(spectrum)
    return {arm: {level: {key: [sum(values) / len(found) for values in zip(*(entry[key] for entry in found))]
                          for key in found[0]}
                  for level, found in levels.items()}
            for arm, levels in sums.items()}


def summarise(config: StudyConfig, found: dict) -> dict:
    """Intervals over seeds of every arm, and the paired difference ``paired[0] - paired[1]``:
    ``{evaluation: {level: {row: {protocol: {metric: Interval}}}}}``."""
    first, second = config.paired
    summary: dict = {}
    for evaluation, levels in found.items():
        for level, arms in sorted(levels.items()):
            rows = summary.setdefault(evaluation, {}).setdefault(level, {})
            for arm, protocols in arms.items():
                rows[arm] = {protocol: {metric: mean_interval(list(seeds.values())) for metric, seeds in metrics.items()}
                             for protocol, metrics in protocols.items()}
            if first in arms and second in arms:
                rows[f"{first} - {second} (paired)"] = {
                    protocol: {metric: difference for metric in arms[first][protocol]
                               if (difference := paired_difference(arms[first][protocol][metric],
                                                                   arms[second][protocol].get(metric, {}))) is not None}
                    for protocol in PROTOCOLS
                }
    return summary


def _header(protocol: str) -> list[str]:
    columns = [f"{METRIC_LABELS[name]} {'↑' if HIGHER_IS_BETTER[name] else '↓'}" for name in COLUMNS]
    return columns + (["FRC vs target (px) ↓"] if protocol == "fitted" else [])


def level_table(rows: dict[str, dict[str, dict[str, Interval]]], protocol: str) -> str:
    """One Markdown table: a row per arm (mean ± 95 % half-width over seeds), the bicubic input and
    the paired difference."""
    header = _header(protocol)
    metrics = [*COLUMNS, *([FRC] if protocol == "fitted" else [])]
    lines = ["| | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for row, protocols in rows.items():
        values = protocols.get(protocol, {})
        cells = [values[metric].format() if metric in values else "–" for metric in metrics]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_table(config: StudyConfig, levels: dict, protocol: str, metric: str) -> str:
    """One metric at every level (rows) for the bicubic input, every arm and the paired difference
    (columns): the study's answer at a glance."""
    first, second = config.paired
    columns = [BICUBIC, *(arm.name for arm in config.arms), f"{first} - {second} (paired)"]
    if protocol == TRUST:
        title = TRUST_METRICS[metric][0]
    elif protocol == DETAIL:
        title = DETAIL_METRICS[metric]
    else:
        title = f"{METRIC_LABELS.get(metric, 'FRC (px)')} {'↑' if HIGHER_IS_BETTER.get(metric, False) else '↓'}, {protocol}"
    lines = [f"| {title} | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for level, rows in levels.items():
        cells = [rows[column][protocol][metric].format() if metric in rows.get(column, {}).get(protocol, {}) else "–"
                 for column in columns]
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _measured(levels: dict, protocol: str, metrics: dict) -> list[str]:
    """The ``metrics`` of the pseudo-protocol ``protocol`` that some arm holds at some level."""
    return [metric for metric in metrics
            if any(metric in rows.get(arm, {}).get(protocol, {}) for rows in levels.values() for arm in rows)]


def write_markdown(config: StudyConfig, summary: dict, timings: dict, machine: str, path: Path) -> Path:
    """``study.md``: what was run, then per evaluation and level the table of each protocol."""
    first, second = config.paired
    lines = [
        f"# Study {config.name}: {', '.join(arm.name for arm in config.arms)} x seeds {list(config.seeds)}",
        "",
        f"Machine: {machine}. Each cell: the mean over seeds ± the half-width of its 95 % confidence interval "
        f"(Student's t, n - 1 degrees of freedom). '{first} - {second} (paired)': the difference of the two arms "
        "with the same seed, so seed-to-seed variation common to both cancels. Tutorial protocol: the tutorial's "
        "per-batch values on [-1, 1] images (comparable with the paper). Fitted protocol: per image after the affine "
        "least-squares fit of the output, and of the bicubic input alike, to the target (CARE's protocol, "
        "scale-invariant); FRC resolution of the output against the target, median over images.",
        "",
        f"Runs: {', '.join(f'{name} {sum(steps.values()) / 60:.1f} min' for name, steps in timings.items())}.",
        f"Figure: [{FIGURE}]({FIGURE}).",
    ]
    titles = {SINGLE: "one sample per image", MEAN: f"mean of {config.mean_samples} samples per image"}
    for evaluation, levels in summary.items():
        lines += ["", f"## Summary, {titles[evaluation]}"]
        for protocol, metric in (("fitted", "psnr"), ("fitted", "ssim"), ("fitted", FRC), ("tutorial", "psnr"),
                                 ("tutorial", "ssim")):
            lines += ["", metric_table(config, levels, protocol, metric)]
        trusted, detailed = _measured(levels, TRUST, TRUST_METRICS), _measured(levels, DETAIL, DETAIL_METRICS)
        if detailed:
            lines += ["", f"### Detail, {titles[evaluation]}", "",
                      "The power above a quarter cycle per pixel relative to the target's (`docs/trust.md`): 0 dB holds "
                      f"the target's detail, below 0 is blurred. One draw of the posterior keeps it, a mean loses it. "
                      f"Spectra averaged over seeds: [{SPECTRA}]({SPECTRA})."]
            lines += [line for metric in detailed for line in ("", metric_table(config, levels, DETAIL, metric))]
        if trusted:
            lines += ["", f"### Error bars, {titles[evaluation]}", "",
                      "The per-pixel std of the samples as an error bar: the posterior check (the squared error of one "
                      "sample over that of the mean, as a dispersion), the share of pixels inside +-1.645 std raw and "
                      "after the error model fitted on the validation split (never on test), its width, and the rank "
                      "correlation of std and abs. error. \"–\": no std (one deterministic evaluation) or not measured."]
            lines += [line for metric in trusted for line in ("", metric_table(config, levels, TRUST, metric))]
    for evaluation, levels in summary.items():
        for level, rows in levels.items():
            for protocol in PROTOCOLS:
                lines += ["", f"## {level}, {titles[evaluation]}, {protocol} protocol", "", level_table(rows, protocol)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plot_levels(config: StudyConfig, summary: dict, path: Path) -> Path:
    """PSNR and SSIM against the test level, both protocols, every arm (one sample: solid; mean of N:
    dashed) with 95 % intervals, and the bicubic input (like Fig. 2 of Qiao et al. 2021)."""
    figure = figures.new_figure(12, 8)
    grid = figure.subplots(2, 2, squeeze=False)
    figure.subplots_adjust(hspace=0.35)
    for row, protocol in enumerate(PROTOCOLS):
        for column, metric in enumerate(("psnr", "ssim")):
            axes = grid[row, column]
            for evaluation, style in ((SINGLE, "-"), (MEAN, "--")):
                levels = summary.get(evaluation, {})
                names = [arm.name for arm in config.arms] + ([BICUBIC] if evaluation == SINGLE else [])
                for index, name in enumerate(names):
                    points = [(int(level.split("_")[1]), rows[name][protocol][metric]) for level, rows in levels.items()
                              if name in rows and metric in rows[name].get(protocol, {})]
                    if not points:
                        continue
                    x = [point[0] for point in points]
                    y = [point[1].mean for point in points]
                    error = [point[1].half_width or 0.0 for point in points]
                    label = f"{name}" + (f", mean of {config.mean_samples}" if evaluation == MEAN else "")
                    colour = "0.4" if name == BICUBIC else f"C{index}"
                    axes.errorbar(x, y, yerr=error, fmt=style, marker="o", markersize=3, capsize=2, color=colour,
                                  label=label)
            axes.set_title(f"{METRIC_LABELS[metric]}, {protocol} protocol")
            axes.set_xlabel("test level (1: lowest SNR)")
            axes.grid(alpha=0.3)
    grid[0, 0].legend(fontsize=7)
    figure.suptitle(f"Study {config.name}: mean over seeds {list(config.seeds)} with 95 % intervals")
    return figures.save_figure(figure, path)


def write_summary(config: StudyConfig, out: Path, timings: dict, machine: str) -> dict:
    """Collect, summarise and write ``study.md``, ``study.json`` and the figure; returns the summary."""
    summary = summarise(config, collect(config, out))
    write_markdown(config, summary, timings, machine, out / SUMMARY_MD)
    if summary:
        plot_levels(config, summary, out / FIGURE)
    spectra = mean_spectra(config, out, MEAN if config.mean_samples > 0 else SINGLE)
    if spectra:
        plot_spectra(spectra, out / SPECTRA, f"Study {config.name}: power spectra over the target's, mean over seeds "
                     f"{list(config.seeds)}" + (f" (output: mean of {config.mean_samples})" if config.mean_samples else ""))
    write_json(out / SUMMARY_JSON, {
        "config": config.to_dict(), "machine": machine, "timings_seconds": timings,
        "results": {evaluation: {level: {row: {protocol: {metric: interval.to_json() for metric, interval in values.items()}
                                               for protocol, values in protocols.items()}
                                         for row, protocols in rows.items()}
                                 for level, rows in levels.items()}
                    for evaluation, levels in summary.items()},
    })
    return summary
