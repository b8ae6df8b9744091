"""A run's ``report.md``: its metrics beside the bicubic input (the baseline) and the paper's table.

Rows are ``label -> {metric: value}``; a row may also hold ``"<metric>_std"``, shown as ``mean ± std``.
Typical use at the end of a run::

    rows = comparison_rows(test_metrics, bicubic_metrics, paper_key="l1")
    write_report(run_dir / "report.md", "L1 run, level_09", config_summary, rows, notes=[...])
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ddpm.settings import UsageError

from experiments.records import HIGHER_IS_BETTER, METRIC_LABELS, METRIC_NAMES, PAPER_KEYS, PaperKey

# Bachimanchi & Volpe (2024), Section 4.9.4: test level_09 after 60 epochs, tutorial protocol (per batch of 64).
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "mse": {"mae": 0.088, "nrmse": 0.059, "ms_ssim": 0.962, "ssim": 0.841, "psnr": 24.605},
    "l1": {"mae": 0.064, "nrmse": 0.047, "ms_ssim": 0.962, "ssim": 0.849, "psnr": 26.475},
}

ROW_RUN = "this run"
ROW_RUN_PER_IMAGE = "this run, per image"
ROW_BICUBIC = "bicubic input"
ROW_BICUBIC_PER_IMAGE = "bicubic input, per image"
ROW_GAIN = "gain over bicubic (+ = better)"
ROW_RUN_FIT = "this run, fitted to target"
ROW_BICUBIC_FIT = "bicubic input, fitted to target"
ROW_GAIN_FIT = "gain over bicubic, fitted (+ = better)"

GAIN_NOTE = (
    f"'{ROW_GAIN}': positive means this run beats the bicubic input; it is bicubic − run for the error "
    "metrics (MAE, NRMSE: lower is better) and run − bicubic for SSIM, MS-SSIM and PSNR (higher is better), "
    "from the per-batch values."
)
PROTOCOL_NOTE = (
    "Rows without ± follow the tutorial's protocol: each metric over a batch of images, then the mean over "
    "batches (a short last batch weighs as much as a full one). Rows with ± give the mean ± standard deviation "
    "(population) over images. Rows 'fitted to target' are scale-invariant (CARE's protocol): each image, "
    "output and bicubic input alike, is first mapped by the affine a x + b that minimises its squared error "
    "to the target, so what an offset or contrast change also fixes scores nothing. All metrics use data "
    "range 2.0 on images in [-1, 1]."
)


def paper_row_label(paper_key: str) -> str:
    """``"mse"`` -> ``"paper (MSE)"``, ``"l1"`` -> ``"paper (L1)"``."""
    return f"paper ({paper_key.upper()})"


def _markdown_cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def _format_cell(row: Mapping[str, float], column: str) -> str:
    if column not in row:
        return "–"
    if f"{column}_std" in row:
        return f"{row[column]:.3f} ± {row[f'{column}_std']:.3f}"
    return f"{row[column]:.3f}"


def format_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str] = METRIC_NAMES) -> str:
    """A Markdown table: one line per row (its label first), one column per metric, 3 decimals.

    Headers carry the metric's label and ↓ (lower is better) or ↑; a missing value shows as "–"; a
    row holding ``"<metric>_std"`` shows ``mean ± std``.
    """
    unknown = [column for column in columns if column not in METRIC_LABELS]
    if unknown:
        raise ValueError(f"unknown metric columns {unknown}; choose from {METRIC_NAMES}")
    headers = [f"{METRIC_LABELS[column]} {'↑' if HIGHER_IS_BETTER[column] else '↓'}" for column in columns]
    lines = ["| | " + " | ".join(headers) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, row in rows.items():
        cells = [_markdown_cell(label)] + [_format_cell(row, column) for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _tutorial_values(results: Mapping[str, float]) -> dict[str, float]:
    return {name: results[name] for name in METRIC_NAMES if name in results}


def _spread_values(results: Mapping[str, float], mean: str, std: str) -> dict[str, float]:
    """``{metric: mean, metric_std: std}`` from a MetricAccumulator result's ``<metric><mean>`` and
    ``<metric><std>`` keys (``_mean`` / ``_std`` per image, ``_fit`` / ``_fit_std`` fitted)."""
    values: dict[str, float] = {}
    for name in METRIC_NAMES:
        if f"{name}{mean}" in results and f"{name}{std}" in results:
            values[name] = results[f"{name}{mean}"]
            values[f"{name}_std"] = results[f"{name}{std}"]
    return values


def _per_image_values(results: Mapping[str, float]) -> dict[str, float]:
    return _spread_values(results, "_mean", "_std")


def _fitted_values(results: Mapping[str, float]) -> dict[str, float]:
    return _spread_values(results, "_fit", "_fit_std")


def gain_over(ours: Mapping[str, float], baseline: Mapping[str, float]) -> dict[str, float]:
    """Improvement of ``ours`` over ``baseline`` per metric, positive = better: baseline − ours for error
    metrics, ours − baseline for the others. Only metrics present in both."""
    return {
        name: (ours[name] - baseline[name]) if HIGHER_IS_BETTER[name] else (baseline[name] - ours[name])
        for name in METRIC_NAMES
        if name in ours and name in baseline
    }


def comparison_rows(
    ours: Mapping[str, float], baseline: Mapping[str, float] | None, paper_key: PaperKey | None
) -> dict[str, dict[str, float]]:
    """Rows for :func:`format_table`, in this order (each only when its data is there):

    "this run", "this run, per image" (mean ± std), "bicubic input", "bicubic input, per image",
    "paper (MSE)" or "paper (L1)", "gain over bicubic (+ = better)" (see ``GAIN_NOTE``), then the
    scale-invariant protocol: "this run, fitted to target", "bicubic input, fitted to target" and
    "gain over bicubic, fitted" (see ``PROTOCOL_NOTE``).
    ``ours`` and ``baseline`` are ``MetricAccumulator.compute()`` results (``baseline``: the bicubic
    input scored against the targets); ``paper_key`` picks a row of ``PAPER_RESULTS`` or none.
    """
    if not _tutorial_values(ours):
        raise ValueError(f"'ours' holds none of the metrics {METRIC_NAMES}; pass MetricAccumulator.compute()'s result")
    if paper_key is not None and paper_key not in PAPER_RESULTS:
        raise ValueError(f"unknown paper_key {paper_key!r}; choose one of {PAPER_KEYS} or None")
    rows = {ROW_RUN: _tutorial_values(ours)}
    if _per_image_values(ours):
        rows[ROW_RUN_PER_IMAGE] = _per_image_values(ours)
    if baseline is not None:
        rows[ROW_BICUBIC] = _tutorial_values(baseline)
        if _per_image_values(baseline):
            rows[ROW_BICUBIC_PER_IMAGE] = _per_image_values(baseline)
    if paper_key is not None:
        rows[paper_row_label(paper_key)] = dict(PAPER_RESULTS[paper_key])
    if baseline is not None:
        rows[ROW_GAIN] = gain_over(ours, baseline)
    fitted = _fitted_values(ours)
    if fitted:
        rows[ROW_RUN_FIT] = fitted
        if baseline is not None and _fitted_values(baseline):
            rows[ROW_BICUBIC_FIT] = _fitted_values(baseline)
            rows[ROW_GAIN_FIT] = gain_over(fitted, rows[ROW_BICUBIC_FIT])  # reads the means, not the _std keys
    return rows


def levels_table(per_level: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """The :func:`comparison_rows` of several test levels as one table, each label prefixed by its level
    (``"level_09: this run"``), levels in the given order."""
    return {f"{level}: {label}": dict(row) for level, rows in per_level.items() for label, row in rows.items()}


def _flatten(settings: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """Nested settings -> ``{"training.lr": 1e-4, ...}``."""
    flat: dict[str, object] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _figure_lines(folder: Path, figures: Sequence[str] | None) -> list[str]:
    if figures is None:
        names = sorted(path.name for path in folder.glob("*.png"))
    else:
        missing = [name for name in figures if not (folder / name).is_file()]
        if missing:
            raise ValueError(f"figures {missing} are not in {folder}; write them before the report or leave them out")
        names = list(figures)
    return [f"### {Path(name).stem.replace('_', ' ')}\n\n![{Path(name).stem}]({name})\n" for name in names]


def write_report(
    path: str | Path,
    title: str,
    config_summary: Mapping[str, object],
    rows: Mapping[str, Mapping[str, float]],
    notes: Sequence[str],
    figures: Sequence[str] | None = None,
) -> Path:
    """Write a Markdown report to ``path`` (e.g. ``run_dir / "report.md"``) and return the path.

    Sections: the title; "Results" (the table of ``rows``, then the protocol note when a row holds a
    ± column and the sign note when the gain row is present); "Configuration" (``config_summary``,
    nested dicts flattened to dotted names); "Notes" (one bullet per entry of ``notes``); "Figures"
    (links to ``figures``, file names in the report's folder; by default every PNG there, by name).
    """
    path = Path(path)
    sections = [f"# {title}\n", "## Results\n", format_table(rows) + "\n"]
    if any(key.endswith("_std") for row in rows.values() for key in row):
        sections.append(PROTOCOL_NOTE + "\n")
    if any(label == ROW_GAIN or label.endswith(f": {ROW_GAIN}") for label in rows):
        sections.append(GAIN_NOTE + "\n")
    if config_summary:
        settings = _flatten(config_summary)
        table = ["| setting | value |", "|---|---|"]
        table += [f"| {_markdown_cell(key)} | {_markdown_cell(value)} |" for key, value in settings.items()]
        sections += ["## Configuration\n", "\n".join(table) + "\n"]
    if notes:
        sections += ["## Notes\n", "\n".join(f"- {note}" for note in notes) + "\n"]
    figure_lines = _figure_lines(path.parent, figures)
    if figure_lines:
        sections += ["## Figures\n", *figure_lines]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(sections), encoding="utf-8")
    return path


def parse_named(entries: Sequence[str], flag: str, example: str = "'1 sample=runs/x/evaluation'") -> dict[str, Path]:
    """``NAME=PATH`` entries (``flag``'s values) -> {NAME: PATH}, in their order; a malformed entry, or a name
    given twice (one would silently replace the other), is a UsageError naming it."""
    named = {}
    for entry in entries:
        name, separator, path = entry.partition("=")
        if not separator or not name.strip() or not path:
            raise UsageError(f"{flag} takes NAME=PATH (e.g. {example}), got {entry!r}")
        if name.strip() in named:
            raise UsageError(f"{flag} names {name.strip()!r} twice ({named[name.strip()]} and {path}); give each its own name")
        named[name.strip()] = Path(path)
    return named


def read_named_evaluations(entries: Sequence[str], flag: str) -> dict[str, dict]:
    """``NAME=FOLDER`` entries (``flag``'s values) -> {NAME: the folder's ``evaluation.json``}, in their order;
    a malformed entry or an unreadable file is a UsageError naming it."""
    evaluations = {}
    for name, folder in parse_named(entries, flag).items():
        path = folder / "evaluation.json"
        try:
            evaluations[name] = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise UsageError(f"{flag} '{name}={folder}': {path} cannot be read ({error}); run experiments.evaluate") from None
    return evaluations


def paired_gains(result: Mapping, metric: str = "psnr_fit") -> list[float]:
    """Per-image gains of the model over the bicubic input at one level of an ``evaluation.json`` (the same
    images, in the same order: its ``per_image`` entry)."""
    per_image = result["per_image"]
    return [m - b for m, b in zip(per_image["model"][metric], per_image["bicubic"][metric])]
