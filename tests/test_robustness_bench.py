"""python -m experiments.bench.robustness: its microscopes, its verdict arithmetic and a run end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments.bench import robustness
from experiments.bench.robustness import GOAL, NOMINAL, Condition, broadening_for, conditions, degradation_of, goal_verdict
from experiments.microscope.degradation import FIXED
from experiments.microscope.optics import BIOSR_488_OTF, BroadenedOTF, fwhm_nm, read_mrc_otf
from test_figures import read_png


@pytest.mark.parametrize("target", [215.0, 280.0, 450.0])
def test_each_psf_width_is_the_measured_psf_broadened_to_it(target):
    measured = read_mrc_otf(BIOSR_488_OTF)
    extra = broadening_for(target)
    assert fwhm_nm(BroadenedOTF(measured, extra)) == pytest.approx(max(target, fwhm_nm(measured)), abs=1.0)
    degradation = degradation_of(Condition(target, 0.2, 9))
    assert degradation.optics == "measured" and degradation.extra_blur_fwhm_nm == (extra, extra)
    assert degradation.background == (0.2, 0.2)


def test_the_conditions_sweep_each_axis_and_cover_the_goal_grid():
    everything = conditions()
    assert len(everything) == len(set(everything))
    grid = [c for c in everything if c.optics == "measured"]
    fwhm, background, level = NOMINAL
    assert {c.fwhm_nm for c in grid if (c.background, c.level) == (background, level)} == set(robustness.FWHMS_NM)
    assert {c.background for c in grid if (c.fwhm_nm, c.level) == (fwhm, level)} == set(robustness.BACKGROUNDS)
    assert {c.level for c in grid if (c.fwhm_nm, c.background) == (fwhm, background)} == set(robustness.LEVELS)
    goal = [c for c in grid if c.optics == "measured" and c.level == 9 and c.fwhm_nm <= 350 and c.background <= 0.3]
    assert len(goal) == 3 * 4
    assert robustness.FIXED_SIMULATION in everything and degradation_of(robustness.FIXED_SIMULATION) == FIXED


def test_the_verdict_takes_the_least_gain_and_the_spread_over_the_goal_grid_only():
    rows = {c: {"mean": 3.0} for c in conditions()}
    rows[Condition(450.0, 0.1, 9)] = {"mean": -5.0}  # outside the goal grid: no effect
    rows[Condition(215.0, 0.1, 9, "gaussian")] = {"mean": -5.0}  # another PSF shape: no effect
    assert goal_verdict(rows) == {"least_gain_db": 3.0, "spread_db": 0.0, "met": True}
    rows[Condition(350.0, 0.3, 9)] = {"mean": 2.4}
    verdict = goal_verdict(rows)
    assert verdict["least_gain_db"] == 2.4 and verdict["spread_db"] == pytest.approx(0.6) and not verdict["met"]
    rows[Condition(350.0, 0.3, 9)] = {"mean": 4.1}
    assert goal_verdict(rows)["spread_db"] == pytest.approx(1.1) and not goal_verdict(rows)["met"]


def test_a_run_writes_every_condition_of_every_model_and_the_figure(tmp_path, monkeypatch, capsys):
    from experiments.bench.predict import random_weight_checkpoint
    from experiments.config.presets import NATIVE, REGRESSION

    few = [Condition(215.0, 0.1, 9), Condition(280.0, 0.1, 9)]
    monkeypatch.setattr(robustness, "conditions", lambda: few)
    monkeypatch.setattr(robustness, "goal_verdict", lambda rows: {"least_gain_db": 0.0, "spread_db": 0.0, "met": False})
    monkeypatch.setattr(robustness, "save_figure", lambda results, path: path.write_bytes(b"png"))
    for name, config in (("a", NATIVE), ("b", NATIVE), ("c", REGRESSION)):
        (tmp_path / name).mkdir()
        random_weight_checkpoint(tmp_path / name / "model.pt", config)
    out = tmp_path / "r.json"
    models = [arg for name in "abc" for arg in ("--checkpoint", str(tmp_path / name / "model.pt"))]
    assert robustness.main([*models, "--windows", "2", "--out", str(out), "--figure", str(tmp_path / "r.png")]) == 0
    record = json.loads(out.read_text())
    assert set(record["models"]) == {"a", "b", "c"} and record["windows"] == 2
    # Each model on its own task's windows, with the sampler make predict gives it.
    assert [record["models"][n]["task"] for n in "abc"] == ["native", "native", "tutorial"]
    assert [record["models"][n]["sampling"]["sampler"] for n in "abc"] == ["dpmpp2m", "dpmpp2m", "regression"]
    for model in record["models"].values():
        assert [(row["fwhm_nm"], row["level"]) for row in model["conditions"]] == [(215.0, 9), (280.0, 9)]
        assert all(math.isfinite(row["mean"]) and row["n"] == 2 for row in model["conditions"])
    # The same weights and seeds give the same gains: the windows and noise do not depend on the model's order.
    assert record["models"]["a"]["conditions"] == record["models"]["b"]["conditions"]
    assert record["commit"] and "machine" in record
    assert robustness.main(["--checkpoint", str(tmp_path / "a" / "model.pt"), "--windows", "2", "--out", str(out),
                            "--figure", str(tmp_path / "r.png")]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_the_figure_has_a_panel_per_axis(tmp_path):
    rows = {c: {"mean": 1.0 + c.level / 9, "ci95_half_width": 0.2} for c in conditions()}
    robustness.save_figure({"today": rows, "new": rows}, tmp_path / "f.png")
    image = read_png(tmp_path / "f.png")
    assert image.shape[1] > 2 * image.shape[0] and np.std(image) > 0


def test_the_model_card_states_each_condition_and_the_verdict_of_the_benchmark(tmp_path):
    from ddpm.settings import UsageError
    from experiments.publishing.model_card import read_robustness, robustness_section

    rows = [{"optics": "gaussian", "fwhm_nm": 215.0, "background": 0.1, "level": 9, "mean": 3.3312, "ci95_half_width": 0.361, "n": 64},
            {"optics": "measured", "fwhm_nm": 350.0, "background": 0.3, "level": 9, "mean": 2.386, "ci95_half_width": 0.27, "n": 64}]
    record = {"windows": 64, "goal": GOAL,
              "verdicts": {"m": {"least_gain_db": 2.386, "spread_db": 0.9452, "met": False}},
              "models": {"m": {"checkpoint": "m.pt", "task": "native", "conditions": rows,
                               "sampling": {"sampler": "dpmpp2m", "sampling_steps": 4}}}, "commit": "abc"}
    (tmp_path / "r.json").write_text(json.dumps(record))
    entry = read_robustness(f"m={tmp_path / 'r.json'}")
    section = robustness_section(entry)
    assert "| Gaussian (the fixed simulation), 215 nm | 10 % | level_09 | **+3.33** ± 0.36 |" in section
    assert "| measured, broadened to 350 nm | 30 % | level_09 | **+2.39** ± 0.27 |" in section
    assert "least gain is +2.39 dB and the gains span 0.95 dB" in section and "not met" in section
    assert robustness_section(None) == ""
    with pytest.raises(UsageError, match="holds no model 'other'"):
        read_robustness(f"other={tmp_path / 'r.json'}")
    with pytest.raises(UsageError, match="write NAME=FILE"):
        read_robustness(str(tmp_path / "r.json"))


@pytest.mark.parametrize("task, target_side, input_side", [("native", 128, 64), ("tutorial", 64, 64)])
def test_the_held_out_windows_of_each_task_are_the_same_cells_on_its_grids(task, target_side, input_side):
    targets, inputs = robustness.held_out_windows(Condition(280.0, 0.1, 9), 2, 0, task)
    assert targets.shape == (2, 1, target_side, target_side) and inputs.shape == (2, 1, input_side, input_side)
    assert targets.min() >= -1 and targets.max() <= 1 and inputs.min() >= -1 and inputs.max() <= 1
    native_targets, _ = robustness.held_out_windows(Condition(280.0, 0.1, 9), 2, 0, "native")
    # the tutorial task's target is the native one binned 2 x 2 onto the camera grid (up to the scaling of each)
    binned = native_targets.reshape(2, 1, 64, 2, 64, 2).mean((3, 5))
    if task == "tutorial":
        assert np.corrcoef(binned.flatten(), targets.flatten())[0, 1] > 0.99
