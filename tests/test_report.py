"""report.md: the table, the comparison rows with their sign convention, and the written file."""

import pytest

from experiments.records import METRIC_NAMES
from experiments.evaluation.report import (
    GAIN_NOTE,
    PAPER_RESULTS,
    PROTOCOL_NOTE,
    ROW_BICUBIC,
    ROW_BICUBIC_PER_IMAGE,
    ROW_GAIN,
    ROW_RUN,
    ROW_RUN_PER_IMAGE,
    comparison_rows,
    format_table,
    gain_over,
    write_report,
)


def accumulator_result(mae, nrmse, ssim, ms_ssim, psnr, std=0.01):
    """What MetricAccumulator.compute() returns, with per-image means a little off the per-batch values."""
    values = dict(zip(METRIC_NAMES, (mae, nrmse, ssim, ms_ssim, psnr)))
    result = dict(values, images=150)
    for name, value in values.items():
        result[f"{name}_mean"] = value + 0.001
        result[f"{name}_std"] = std
    return result


OURS = accumulator_result(mae=0.070, nrmse=0.050, ssim=0.850, ms_ssim=0.960, psnr=26.0)
BICUBIC = accumulator_result(mae=0.100, nrmse=0.080, ssim=0.700, ms_ssim=0.900, psnr=22.5)


def table_cells(table: str) -> dict[str, list[str]]:
    lines = table.splitlines()
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def test_paper_results_hold_the_summary_table():
    assert PAPER_RESULTS["mse"] == {"mae": 0.088, "nrmse": 0.059, "ms_ssim": 0.962, "ssim": 0.841, "psnr": 24.605}
    assert PAPER_RESULTS["l1"] == {"mae": 0.064, "nrmse": 0.047, "ms_ssim": 0.962, "ssim": 0.849, "psnr": 26.475}


def test_format_table_three_decimals_in_metric_order():
    table = format_table({"paper (MSE)": PAPER_RESULTS["mse"], "partial": {"psnr": 20.12345}})
    lines = table.splitlines()
    assert lines[0] == "| | MAE ↓ | NRMSE ↓ | SSIM ↑ | MS-SSIM ↑ | PSNR (dB) ↑ |"
    assert lines[1] == "|---|---|---|---|---|---|"
    cells = table_cells(table)
    assert cells["paper (MSE)"] == ["0.088", "0.059", "0.841", "0.962", "24.605"]
    assert cells["partial"] == ["–", "–", "–", "–", "20.123"]


def test_format_table_shows_std_and_chosen_columns():
    table = format_table({"a | b": {"psnr": 25.0, "psnr_std": 1.25, "mae": 0.1}}, columns=("psnr", "mae"))
    assert table.splitlines()[0] == "| | PSNR (dB) ↑ | MAE ↓ |"
    assert table.splitlines()[2] == "| a \\| b | 25.000 ± 1.250 | 0.100 |"  # a pipe in a label is escaped
    with pytest.raises(ValueError, match="unknown metric columns"):
        format_table({}, columns=("loss",))


def test_gain_is_positive_when_better_for_every_metric():
    gain = gain_over(OURS, BICUBIC)
    assert gain == pytest.approx({"mae": 0.030, "nrmse": 0.030, "ssim": 0.150, "ms_ssim": 0.060, "psnr": 3.5})
    worse = gain_over(BICUBIC, OURS)
    assert all(value < 0 for value in worse.values())


def test_comparison_rows():
    rows = comparison_rows(OURS, BICUBIC, "l1")
    assert list(rows) == [ROW_RUN, ROW_RUN_PER_IMAGE, ROW_BICUBIC, ROW_BICUBIC_PER_IMAGE, "paper (L1)", ROW_GAIN]
    assert rows[ROW_RUN] == {name: OURS[name] for name in METRIC_NAMES}  # per batch, no "images" count
    assert rows[ROW_RUN_PER_IMAGE]["psnr"] == OURS["psnr_mean"]
    assert rows[ROW_RUN_PER_IMAGE]["psnr_std"] == OURS["psnr_std"]
    assert rows["paper (L1)"] == PAPER_RESULTS["l1"]
    assert rows[ROW_GAIN] == gain_over(OURS, BICUBIC)

    cells = table_cells(format_table(rows))
    assert cells[ROW_GAIN] == ["0.030", "0.030", "0.150", "0.060", "3.500"]
    assert cells[ROW_RUN_PER_IMAGE][4] == "26.001 ± 0.010"


def test_comparison_rows_without_baseline_or_paper():
    rows = comparison_rows({"psnr": 20.0}, None, None)
    assert rows == {ROW_RUN: {"psnr": 20.0}}
    assert list(comparison_rows(OURS, None, "mse")) == [ROW_RUN, ROW_RUN_PER_IMAGE, "paper (MSE)"]
    with pytest.raises(ValueError, match="choose one of"):
        comparison_rows(OURS, BICUBIC, "huber")
    with pytest.raises(ValueError, match="none of the metrics"):
        comparison_rows({"loss": 1.0}, BICUBIC, None)


def test_write_report(tmp_path):
    (tmp_path / "metrics.png").write_bytes(b"png")
    (tmp_path / "sample_grid_final.png").write_bytes(b"png")
    (tmp_path / "metrics.csv").write_text("epoch\n")
    rows = comparison_rows(OURS, BICUBIC, "mse")
    config = {"preset": "mse", "training": {"epochs": 60, "lr": 1e-4}}
    path = write_report(tmp_path / "report.md", "MSE run, level_09", config, rows, ["trained on 1 GPU"])

    assert path == tmp_path / "report.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# MSE run, level_09\n")
    assert format_table(rows) in text
    assert GAIN_NOTE in text and PROTOCOL_NOTE in text
    assert "| training.epochs | 60 |" in text and "| training.lr | 0.0001 |" in text
    assert "- trained on 1 GPU" in text
    assert "![metrics](metrics.png)" in text and "![sample_grid_final](sample_grid_final.png)" in text
    assert "metrics.csv" not in text  # only figures are linked
    assert text.index("## Results") < text.index("## Configuration") < text.index("## Notes") < text.index("## Figures")


def test_write_report_with_chosen_figures_and_bare_rows(tmp_path):
    (tmp_path / "a.png").write_bytes(b"png")
    (tmp_path / "b.png").write_bytes(b"png")
    path = write_report(tmp_path / "r.md", "t", {}, {"paper (L1)": PAPER_RESULTS["l1"]}, [], figures=["b.png"])
    text = path.read_text(encoding="utf-8")
    assert "(b.png)" in text and "(a.png)" not in text
    assert GAIN_NOTE not in text and PROTOCOL_NOTE not in text  # no gain row, no ± row
    assert "## Configuration" not in text and "## Notes" not in text
    with pytest.raises(ValueError, match="missing.png"):
        write_report(tmp_path / "r.md", "t", {}, {}, [], figures=["missing.png"])


def test_the_run_report_shows_every_evaluated_level(tmp_path, capsys):
    """Issue 10: the demo evaluates level_01 and level_09; report.md showed only the first."""
    import torch

    from experiments.config.presets import DEMO
    from experiments.records import EpochRecord
    from experiments.training.run_folder import RunFolder

    scores = {"level_01": {"mae": 0.3, "nrmse": 0.2, "ssim": 0.4, "ms_ssim": 0.6, "psnr": 19.0},
              "level_09": {"mae": 0.1, "nrmse": 0.1, "ssim": 0.8, "ms_ssim": 0.9, "psnr": 26.0}}
    bicubic = {"mae": 0.5, "nrmse": 0.3, "ssim": 0.2, "ms_ssim": 0.5, "psnr": 15.0}
    history = [EpochRecord(1, 0.5, 1.0, {level: {**s, "images": 4} for level, s in scores.items()})]
    RunFolder(tmp_path, DEMO).write_report(history, {level: bicubic for level in scores}, torch.device("cpu"))
    text = (tmp_path / "report.md").read_text()
    for level, row in scores.items():
        assert f"| {level}: this run | {row['mae']:.3f} |" in text
        assert f"| {level}: gain over bicubic (+ = better) |" in text
    assert "test levels | level_01, level_09" in text and GAIN_NOTE in text
    printed = capsys.readouterr().out
    assert "level_01" in printed and "level_09" in printed
