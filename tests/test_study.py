"""The study runner at tiny size: every run trained and evaluated through the commands, finished runs
skipped, an interrupted run resumed, and the interval arithmetic against a hand computation."""

from __future__ import annotations

import json
import math

import pytest

from ddpm.settings import UsageError

from experiments import train
from experiments.config.command_line import config_from_args
from experiments.microscope.synthetic import SyntheticConfig, generate
from experiments.studies import runner
from experiments.studies.config import Arm, StudyConfig
from experiments.evaluation.stats import mean_interval, paired_difference, t_quantile_975
from experiments.studies.summary import DETAIL, FIGURE, SPECTRA, SUMMARY_JSON, SUMMARY_MD, TRUST, trust_values
from experiments.training.trainer import Trainer, TrainingInterrupted

TINY = ("--channels", "4,8", "--base-channels", "8", "--attention", "false,false", "--time-encoding-dim", "8",
        "--diffusion.steps", "10", "--crop", "none", "--train.batch_size", "4", "--sampling-steps", "2",
        "--eval.max_test_images", "2", "--eval.validation_images", "0", "--epochs", "2", "--device", "cpu")


def tiny_study(root) -> StudyConfig:
    return StudyConfig(
        name="tiny",
        arms=(Arm("mse", "demo", ("--train.loss", "mse")), Arm("l1", "demo")),
        seeds=(0, 1),
        train_flags=("--data.root", str(root), *TINY),
        images=2, mean_samples=2, mean_images=2,
    )


def test_the_interval_is_the_hand_computation():
    assert t_quantile_975(2) == 4.303 and t_quantile_975(1) == 12.706
    interval = mean_interval([1.0, 2.0, 3.0])  # mean 2, sample sd 1
    assert interval.mean == 2.0 and interval.half_width == pytest.approx(4.303 / math.sqrt(3))
    difference = paired_difference({0: 3.0, 1: 5.0, 7: 1.0}, {0: 1.0, 1: 2.0})  # seeds 0, 1: 2 and 3
    assert difference.n == 2 and difference.mean == 2.5
    assert difference.half_width == pytest.approx(12.706 * math.sqrt(0.5) / math.sqrt(2))
    assert mean_interval([4.0]).half_width is None
    assert abs(t_quantile_975(60) - 2.000) < 1e-3 and abs(t_quantile_975(120) - 1.980) < 1e-3


def test_a_regression_arm_is_scored_once_and_a_diffusion_arm_also_as_a_mean(tmp_path):
    config = StudyConfig(name="t", arms=(Arm("l1", "demo"), Arm("mse", "demo"), Arm("regression", "regression")),
                         seeds=(0,), train_flags=())
    commands = {run.arm.name: runner.evaluate_commands(config, run, "cpu") for run in runner.plan(config, tmp_path)}
    assert set(commands["regression"]) == {runner.SINGLE} and set(commands["l1"]) == {runner.SINGLE, runner.MEAN}
    assert commands["l1"][runner.MEAN][commands["l1"][runner.MEAN].index("--samples") + 1] == "4"
    with pytest.raises(UsageError, match="paired arms"):
        StudyConfig(name="t", arms=(Arm("l1", "demo"),), seeds=(0,), train_flags=())
    with pytest.raises(UsageError, match="unknown preset"):
        StudyConfig(name="t", arms=(Arm("l1", "nope"), Arm("mse", "demo")), seeds=(0,), train_flags=())


@pytest.mark.slow  # about a minute and a half: 4 tiny runs, each trained and evaluated in its own process
def test_a_study_trains_evaluates_skips_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    generate(tmp_path / "data", train=8, validate=2, test_per_level=2, seed=3, config=SyntheticConfig(size=32))
    config = tiny_study(tmp_path / "data")
    out = tmp_path / "study"
    interrupted = runner.plan(config, out)[0]  # mse, seed 0: stopped in its second epoch, as by Ctrl-C
    args = train.build_parser().parse_args(runner.train_command(config, interrupted, "cpu")[2:])
    trainer = Trainer(config_from_args(args), interrupted.folder, progress=False)
    with pytest.raises(TrainingInterrupted):
        trainer.fit(on_step=lambda t: t.request_stop("test") if t.epoch == 1 else None)
    assert runner.epochs_done(interrupted.folder) == 1

    timings = runner.run_study(config, out, "cpu")
    assert "--resume" in (out / "runs" / f"{interrupted.name}.train.log").read_text()
    for run in runner.plan(config, out):
        assert runner.epochs_done(run.folder) == 2
        assert (run.folder / runner.SINGLE / "evaluation.json").is_file()
        assert (run.folder / runner.MEAN / "evaluation.json").is_file() != run.arm.regression
        assert timings[run.name]["evaluation-1_seconds"] > 0

    calls = []
    monkeypatch.setattr(runner, "_execute", lambda *a: calls.append(a) or 0.0)
    assert runner.run_study(config, out, "cpu") == timings and calls == []  # nothing left to do

    from experiments.studies.summary import write_summary

    summary = write_summary(config, out, timings, "test machine")
    for name in (SUMMARY_MD, SUMMARY_JSON, FIGURE, SPECTRA):
        assert (out / name).is_file()
    rows = summary[runner.SINGLE]["level_05"]
    assert set(rows) == {"mse", "l1", "bicubic", "l1 - mse (paired)"}
    # the paired row is the mean of the per-seed differences of the two arms' evaluation.json values
    values = {arm: [json.loads((out / "runs" / f"{arm}-seed{seed}" / runner.SINGLE / "evaluation.json").read_text())
                    ["levels"]["level_05"]["model"]["psnr_fit"] for seed in (0, 1)] for arm in ("l1", "mse")}
    expected = sum(a - b for a, b in zip(values["l1"], values["mse"])) / 2
    assert rows["l1 - mse (paired)"]["fitted"]["psnr"].mean == pytest.approx(expected)
    assert rows["bicubic"]["tutorial"]["psnr"].half_width == pytest.approx(0.0, abs=1e-9)  # the same input
    text = (out / SUMMARY_MD).read_text()
    assert "level_09, mean of 2 samples per image, fitted protocol" in text and "FRC vs target" in text

    # the error bars of the mean of N: each measure the mean over seeds of the runs' evaluation.json values
    levels = {arm: [json.loads((out / "runs" / f"{arm}-seed{seed}" / runner.MEAN / "evaluation.json").read_text())
                    ["levels"]["level_05"] for seed in (0, 1)] for arm in ("l1", "mse")}
    trust = summary[runner.MEAN]["level_05"]["l1"][TRUST]
    assert trust["dispersion"].mean == pytest.approx(
        sum(level["quality"]["model"]["posterior"]["dispersion"] for level in levels["l1"]) / 2)
    assert trust["coverage90_raw"].mean == pytest.approx(
        sum(level["calibration"]["raw"]["coverage90"] for level in levels["l1"]) / 2)
    assert -1 <= trust["rank_correlation"].mean <= 1 and trust["rank_correlation"].n == 2
    assert TRUST not in summary[runner.SINGLE]["level_05"]["l1"]  # one sample: no std
    assert "### Error bars, mean of 2 samples per image" in text
    # the detail: each arm's high-frequency power, the mean over seeds of what evaluate measured
    detail = summary[runner.MEAN]["level_05"]["l1"][DETAIL]
    assert detail["hf_power_sample_db"].mean == pytest.approx(
        sum(level["quality"]["model"]["hf_power_sample_db"] for level in levels["l1"]) / 2)
    assert "### Detail, mean of 2 samples per image" in text
    assert "| coverage of the raw 90 % interval (goal 0.90) | bicubic | mse | l1 | l1 - mse (paired) |" in text


def test_a_residual_arm_refines_the_run_of_its_base_arm_with_the_same_seed(tmp_path):
    from experiments.studies.config import RESIDUAL
    from experiments.studies.summary import evaluations_of

    runs = {(run.arm.name, run.seed): run for run in runner.plan(RESIDUAL, tmp_path)}
    command = runner.train_command(RESIDUAL, runs["residual", 1], "cpu")
    assert command[command.index("--train.base") + 1] == str(tmp_path / "runs" / "regression-6-seed1" / "last.pt")
    assert "--train.base" not in runner.train_command(RESIDUAL, runs["l1", 1], "cpu")
    with pytest.raises(UsageError, match="not an arm before it"):
        StudyConfig(name="t", arms=(Arm("residual", "residual", base="regression"), Arm("regression", "regression")),
                    seeds=(0,), train_flags=(), paired=("residual", "regression"))
    with pytest.raises(UsageError, match="only it takes one"):
        StudyConfig(name="t", arms=(Arm("regression", "regression"), Arm("l1", "demo", base="regression")),
                    seeds=(0,), train_flags=(), paired=("l1", "regression"))
    # a regression's one output is its mean of N when both are scored on the same images
    regression = runs["regression", 0]
    (regression.folder / runner.SINGLE).mkdir(parents=True)
    (regression.folder / runner.SINGLE / "evaluation.json").write_text("{}")
    assert evaluations_of(RESIDUAL, regression) == {runner.SINGLE: regression.folder / runner.SINGLE,
                                                    runner.MEAN: regression.folder / runner.SINGLE}
    l1 = runs["l1", 0]
    (l1.folder / runner.SINGLE).mkdir(parents=True)
    (l1.folder / runner.SINGLE / "evaluation.json").write_text("{}")
    assert evaluations_of(RESIDUAL, l1) == {runner.SINGLE: l1.folder / runner.SINGLE}  # its mean is sampled


def test_the_error_bar_measures_are_read_where_evaluate_writes_them():
    level = {"quality": {"model": {"posterior": {"dispersion": 0.3, "passes": False}}},
             "calibration": {"raw": {"coverage90": 0.6, "rank_correlation": 0.7},
                             "interval": {"coverage90": 0.85, "width90": 0.66, "worst_gap": 1.5}}}
    assert trust_values(level) == {"dispersion": 0.3, "coverage90_raw": 0.6, "coverage90": 0.85, "width90": 0.66,
                                   "worst_gap": 1.5, "rank_correlation": 0.7}
    # a regression's level, or an error model that could not be fitted: only what is there
    assert trust_values({"quality": {"model": {}}, "calibration": {"raw": {"coverage90": 0.6}}}) == {"coverage90_raw": 0.6}
    assert trust_values({"model": {}, "bicubic": {}}) == {}


def test_a_summary_of_no_runs_is_refused_and_writes_nothing(tmp_path, capsys):
    """study --summary-only on a folder without a finished run wrote a study.md listing no runs, linking a
    figure that did not exist."""
    from experiments.study import main

    out = tmp_path / "empty"
    assert main(["--preset", "cpu", "--summary-only", "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "holds no finished run" in error and f"--out {out}" in error
    assert not out.exists()
