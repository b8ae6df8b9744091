"""python -m experiments.bench.uncertainty end to end at tiny size: per sampler, the error models fitted on
validation, and per level the posterior check, the coverage raw and calibrated and the rank correlation,
each the number the trust measures give on the same samples."""

from __future__ import annotations

import json
import math

import pytest

from experiments.bench import uncertainty
from test_native_task import native_run  # noqa: F401 (fixture)


def test_a_run_records_every_candidate_and_level(native_run, tmp_path, capsys):  # noqa: F811
    run_dir, root = native_run
    out = tmp_path / "u.json"
    assert uncertainty.main(["--checkpoint", str(run_dir / "last.pt"), "--data", str(root), "--images", "2",
                             "--samples", "3", "--levels", "level_09", "--candidate", "dpmpp2m-4",
                             "--candidate", "ddim-eta1-10", "--out", str(out)]) == 0, capsys.readouterr().err
    record = json.loads(out.read_text())
    assert list(record["candidates"]) == ["dpmpp2m-4", "ddim-eta1-10"] and record["samples"] == 3
    for name, evaluations in (("dpmpp2m-4", 4), ("ddim-eta1-10", 10)):
        candidate = record["candidates"][name]
        assert candidate["evaluations"] == evaluations
        assert set(candidate["models"]) == {"curve", "interval"} and candidate["models"]["interval"]["scale"] > 0
        row = candidate["levels"]["level_09"]
        assert row["posterior"]["images"] == 2 and candidate["passes"] == row["posterior"]["passes"]
        for method in ("raw", "curve", "interval"):
            assert 0.0 <= row[method]["coverage90"] <= 1.0 and row[method]["width90"] > 0
        assert row["raw"]["scale"] == 1.0 and row["raw"]["floor"] == 0.0
        assert -1.0 <= row["rank_correlation"] <= 1.0 and math.isfinite(row["posterior"]["dispersion"])
        assert math.isfinite(row["hf_power_sample_db"])
    assert record["commit"] and "machine" in record


@pytest.mark.parametrize("flags, words", [(["--samples", "1"], "--samples at least 2"),
                                          (["--images", "0"], "--images must be at least 1")])
def test_settings_that_measure_nothing_are_refused(native_run, tmp_path, capsys, flags, words):  # noqa: F811
    run_dir, _ = native_run
    assert uncertainty.main(["--checkpoint", str(run_dir / "last.pt"), *flags, "--out", str(tmp_path / "u.json")]) == 1
    assert words in capsys.readouterr().err and not (tmp_path / "u.json").exists()
