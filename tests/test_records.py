"""Run records as data: epoch records round-trip through metrics.json and metrics.csv, old flat rows still
read, and run configurations written before sampling had its own section still load."""

import csv
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.config.presets import DEMO

from experiments.config.schema import RunConfig, SamplingConfig
from experiments.records import (
    CSV_FILE,
    JSON_FILE,
    METRIC_NAMES,
    EpochRecord,
    evaluated,
    last_scores,
    read_records,
    write_records,
)

finite = st.floats(-1e6, 1e6, allow_nan=False)
scores = st.dictionaries(st.sampled_from(METRIC_NAMES + tuple(f"{m}_std" for m in METRIC_NAMES)), finite, min_size=1)
splits = st.dictionaries(st.sampled_from(["level_01", "level_09", "validate"]), scores, max_size=3)
records = st.lists(st.builds(EpochRecord, st.integers(1, 100), finite, st.floats(0, 1e4), splits), max_size=5)


@settings(max_examples=40, deadline=None)
@given(records)
def test_records_round_trip_through_json_and_the_flat_csv_row(history):
    for record in history:
        assert EpochRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
        # The flat row is the CSV's form, and it reads back to the same record.
        assert EpochRecord.from_json(record.row()) == record


def test_written_records_read_back_and_the_csv_has_one_column_per_score(tmp_path):
    history = [
        EpochRecord(1, 0.5, 2.0),
        EpochRecord(2, 0.25, 2.5, {"level_09": {"psnr": 20.0, "ssim": 0.5}, "validate": {"psnr": 21.0}}),
    ]
    write_records(tmp_path, history)
    assert read_records(tmp_path) == history
    rows = list(csv.DictReader(open(tmp_path / CSV_FILE, newline="")))
    assert list(rows[0]) == ["epoch", "loss", "seconds", "level_09/psnr", "level_09/ssim", "validate/psnr"]
    assert rows[0]["level_09/psnr"] == "" and float(rows[1]["validate/psnr"]) == 21.0
    assert last_scores(history, "level_09") == (2, {"psnr": 20.0, "ssim": 0.5})
    assert last_scores(history, "level_01") is None
    assert evaluated(history, "validate") == [(2, {"psnr": 21.0})]


def test_a_flat_metrics_json_of_an_older_run_reads_as_records(tmp_path):
    (tmp_path / JSON_FILE).write_text(json.dumps([{"epoch": 1, "loss": 0.3, "seconds": 4.0, "level_09/psnr": 19.5}]))
    assert read_records(tmp_path) == [EpochRecord(1, 0.3, 4.0, {"level_09": {"psnr": 19.5}})]


@pytest.mark.parametrize("bad", [[{"epoch": 1}], {"epoch": 1, "loss": 0.1, "seconds": 1.0}])
def test_a_metrics_json_that_is_not_a_list_of_records_is_refused(tmp_path, bad):
    (tmp_path / JSON_FILE).write_text(json.dumps(bad))
    with pytest.raises(ValueError):
        read_records(tmp_path)


def test_a_config_with_the_sampling_fields_in_eval_still_loads():
    old = DEMO.to_dict()
    old["eval"] = {**old["eval"], **old.pop("sampling")}
    assert "sampler" in old["eval"] and "sampling" not in old
    assert RunConfig.from_dict(old) == DEMO
    assert RunConfig.from_dict(DEMO.to_dict()) == DEMO


def test_sampling_resolves_its_steps_against_t_in_one_place():
    assert SamplingConfig(sampler="ddim").resolved(10).sampling_steps == 10  # DDIM's default 50, capped at T
    assert SamplingConfig(sampler="ddim").resolved(2000).sampling_steps == 50
    simple = SamplingConfig(sampler="simple", sampling_steps=7, eta=0.5).resolved(30)
    assert (simple.sampling_steps, simple.eta) == (None, 0.0)  # options Eq. 11 does not take are reset
    assert simple.network_evaluations(30) == 30
