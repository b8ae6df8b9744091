"""Several evaluations on one test set side by side (the library of ``python -m experiments.compare``).

Each evaluation is an ``evaluation.json`` of ``python -m experiments.evaluate`` on the same held-out images
(for instance the native-task model, one sample and the mean of N, and a tutorial-task model scored there
with ``--upsample``). Per level and protocol the table gives each evaluation's PSNR and SSIM and, for the
fitted protocol, its gain over the bicubic input image by image (paired), with its 95 % interval and the
per-image sd; the figure draws them against the level. The evaluations with a std map (several samples, or
a probabilistic regression) also get their error bars' measures, level by level (:func:`error_bar_table`), and
those with spectra their high-frequency power beside the target's (:func:`spectrum_table`, :func:`plot_spectra`).
Training curves (``metrics.csv`` of run folders)
give the fitted gain over the bicubic input of the images each run evaluated, against the epoch.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from experiments import figures
from experiments.evaluation.stats import mean_interval
from experiments.records import METRIC_LABELS
from experiments.evaluation.report import paired_gains
from experiments.studies.summary import TRUST_METRICS, trust_values

BICUBIC = "bicubic input"
PROTOCOLS = {"fitted": "_fit", "tutorial": ""}


def level_table(evaluations: dict[str, dict], metric: str) -> str:
    """Markdown: one row per level; the bicubic input (from the first evaluation), each evaluation in the
    fitted protocol with its paired gain, and in the tutorial protocol."""
    names = list(evaluations)
    first = evaluations[names[0]]["levels"]
    header = (f"| level | images | {BICUBIC}, fitted | " + " | ".join(f"{name}, fitted | gain" for name in names)
              + f" | {BICUBIC}, tutorial | " + " | ".join(f"{name}, tutorial" for name in names) + " |")
    lines = [header, "|" + "---|" * (3 + 2 * len(names) + 1 + len(names))]
    for level in first:
        results = [evaluations[name]["levels"][level] for name in names]
        bicubic = first[level]["bicubic"]
        cells = [level, str(int(first[level]["model"]["images"])), f"{bicubic[f'{metric}_fit']:.3f}"]
        for result in results:
            gains = paired_gains(result, f"{metric}_fit")
            gain, spread = mean_interval(gains), statistics.pstdev(gains)
            cells += [f"{result['model'][f'{metric}_fit']:.3f}", f"**{gain.format()}** (sd {spread:.3f})"]
        cells.append(f"{bicubic[metric]:.3f}")
        cells += [f"{result['model'][metric]:.3f}" for result in results]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(evaluations: dict[str, dict], pairs: list[tuple[str, str]], metric: str = "psnr_fit") -> dict[str, dict]:
    """Per pair ``(first, second)`` and level, ``first - second`` of ``metric`` image by image (the same images, in
    the same order), with its 95 % interval: ``{"first - second": {level: Interval}}``."""
    table = {}
    for first, second in pairs:
        table[f"{first} - {second}"] = {
            level: mean_interval([a - b for a, b in zip(result["per_image"]["model"][metric],
                                                        evaluations[second]["levels"][level]["per_image"]["model"][metric])])
            for level, result in evaluations[first]["levels"].items()}
    return table


def error_bar_table(evaluations: dict[str, dict]) -> str | None:
    """Markdown: per level, every evaluation with a std map and its error bars' measures (:data:`TRUST_METRICS`);
    None when no evaluation has one."""
    measured = {name: {level: trust_values(result) for level, result in evaluation["levels"].items()}
                for name, evaluation in evaluations.items()}
    measured = {name: levels for name, levels in measured.items() if any(levels.values())}
    if not measured:
        return None
    lines = ["| level | evaluation | " + " | ".join(label for label, _ in TRUST_METRICS.values()) + " |",
             "|" + "---|" * (2 + len(TRUST_METRICS))]
    for level in next(iter(evaluations.values()))["levels"]:
        for name, levels in measured.items():
            values = levels.get(level, {})
            lines.append(f"| {level} | {name} | " + " | ".join(
                f"{values[metric]:.2f}" if metric in values else "–" for metric in TRUST_METRICS) + " |")
    return "\n".join(lines)


def spectra(evaluations: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """Per evaluation, the levels whose trust measures hold spectra (:mod:`experiments.trust.spectrum`): level ->
    ``{"model": ..., "bicubic": ..., "spectrum": ...}``."""
    found = {name: {level: result["quality"] for level, result in evaluation["levels"].items()
                    if "spectrum" in result.get("quality", {})} for name, evaluation in evaluations.items()}
    return {name: levels for name, levels in found.items() if levels}


def spectrum_table(evaluations: dict[str, dict]) -> str | None:
    """Markdown: per level, the power above a quarter cycle per pixel relative to the target's (dB) of the bicubic
    input and of each evaluation's output and one sample; None when no evaluation recorded spectra."""
    measured = spectra(evaluations)
    if not measured:
        return None
    names = list(measured)
    lines = [f"| level | {BICUBIC} | " + " | ".join(f"{name}: output | {name}: one sample" for name in names) + " |",
             "|" + "---|" * (2 + 2 * len(names))]
    def cell(row: dict, key: str) -> str:
        return "–" if key not in row else "n/a" if row[key] is None else f"{row[key]:+.2f}"

    for level in next(iter(measured.values())):
        cells = [level, cell(measured[names[0]][level]["bicubic"], "hf_power_db")]
        for name in names:
            model = measured[name].get(level, {}).get("model", {})
            cells += [cell(model, key) for key in ("hf_power_db", "hf_power_sample_db")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_levels(evaluations: dict[str, dict], path: Path, title: str) -> Path:
    """PSNR and SSIM against the level in both protocols, every evaluation and the bicubic input; the fitted
    panels draw each evaluation's mean with the 95 % interval of its paired gain around it."""
    figure = figures.new_figure(12, 8)
    grid = figure.subplots(2, 2, squeeze=False)
    figure.subplots_adjust(hspace=0.35)
    names = list(evaluations)
    first = evaluations[names[0]]["levels"]
    x = [int(level.split("_")[1]) for level in first]
    for row, (protocol, suffix) in enumerate(PROTOCOLS.items()):
        for column, metric in enumerate(("psnr", "ssim")):
            axes = grid[row, column]
            key = f"{metric}{suffix}"
            axes.plot(x, [first[level]["bicubic"][key] for level in first], "o-", color="0.4", markersize=3,
                      label=BICUBIC)
            for index, name in enumerate(names):
                levels = evaluations[name]["levels"]
                y = [levels[level]["model"][key] for level in first]
                errors = ([mean_interval(paired_gains(levels[level], key)).half_width or 0.0 for level in first]
                          if protocol == "fitted" else None)
                axes.errorbar(x, y, yerr=errors, fmt="o-", markersize=3, capsize=2, color=f"C{index}", label=name)
            axes.set_title(f"{METRIC_LABELS[metric]}, {protocol} protocol")
            axes.set_xlabel("test level (1: lowest SNR)")
            axes.grid(alpha=0.3)
    grid[0, 0].legend(fontsize=7)
    figure.suptitle(title)
    return figures.save_figure(figure, path)


def read_curve(run: Path, level: str) -> list[tuple[int, float]]:
    """(epoch, fitted PSNR) at ``level`` for every evaluated epoch of the run folder's ``metrics.csv``."""
    with open(Path(run) / "metrics.csv", newline="") as handle:
        return [(int(row["epoch"]), float(row[f"{level}/psnr_fit"])) for row in csv.DictReader(handle)
                if row.get(f"{level}/psnr_fit")]


def plot_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], baselines: dict[str, float], path: Path,
                title: str) -> Path:
    """Fitted PSNR gain over the bicubic input (``baselines``: level -> its fitted PSNR on the same images)
    against the epoch, one line per run (colour) and level (style)."""
    figure = figures.new_figure(7, 4.5)
    axes = figure.subplots()
    for index, (name, levels) in enumerate(curves.items()):
        for (level, points), style in zip(levels.items(), ("-", "--", ":", "-.")):
            axes.plot([epoch for epoch, _ in points], [value - baselines[level] for _, value in points], style,
                      marker="o", markersize=3, color=f"C{index}", label=f"{name}, {level}")
    axes.axhline(0, color="0.4", lw=0.8)
    axes.set_xlabel("epoch")
    axes.set_ylabel("fitted PSNR gain over bicubic (dB)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    axes.set_title(title)
    return figures.save_figure(figure, path)
