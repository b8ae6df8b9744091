"""bench.solvers (issue 23): the quality-against-evaluations table is computed from paired samples, its
choice of the fewest matching evaluations follows the rule it states, and runs merge into one figure."""

import json
from dataclasses import replace

import pytest

from experiments.bench import solvers
from experiments.bench.solvers import QualityRow, fewest_matching
from experiments.config.schema import DataConfig
from experiments.make_data import main as synthetic_main
from test_predict import TINY, save_checkpoint


def row(sampler: str, evaluations: int, psnr: float, level: str = "level_09", model: str = "m") -> QualityRow:
    return QualityRow(model, level, sampler, evaluations, 4, 2, psnr, 0.5, psnr + 1, 0.6, psnr - 3, 3.0)


def test_the_fewest_matching_count_is_the_first_within_the_tolerance_at_every_level():
    rows = [row("ddim", 10, 30.0), row("ddim", 10, 20.0, "level_01"),
            row("dpmpp2m", 2, 29.9), row("dpmpp2m", 2, 19.0, "level_01"),  # level_01 misses by 0.8 dB
            row("dpmpp2m", 3, 29.7), row("dpmpp2m", 3, 19.85, "level_01"),  # level_09 misses by 0.3 dB
            row("dpmpp2m", 4, 29.85), row("dpmpp2m", 4, 19.9, "level_01"),
            row("dpmpp2m", 5, 31.0), row("dpmpp2m", 5, 21.0, "level_01")]
    assert fewest_matching(rows, "m", 0.2) == 4
    assert fewest_matching(rows, "m", 1.0) == 2
    assert fewest_matching(rows, "m", 0.0) == 5
    assert fewest_matching([r for r in rows if r.sampler == "dpmpp2m"], "m", 0.2) is None  # no reference run
    blurred = [replace(r, ssim_fit=0.45) if (r.sampler, r.evaluations) == ("dpmpp2m", 4) else r for r in rows]
    assert fewest_matching(blurred, "m", 0.2) == 5  # its SSIM is 0.05 below the reference's


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    assert synthetic_main(["--out", str(root), "--train", "4", "--validate", "2", "--test-per-level", "2",
                           "--size", "32", "--seed", "3"]) == 0
    config = replace(TINY, data=DataConfig(root=str(root)))
    return save_checkpoint(tmp_path_factory.mktemp("run") / "last.pt", config)


def test_one_evaluation_is_the_same_for_both_samplers_and_runs_merge(checkpoint, tmp_path, capsys):
    """With one evaluation both samplers return the data prediction at T - 1 from the same start, so their
    rows must agree exactly: the table is paired. Two runs then merge into one JSON and one figure."""
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    for name, out in (("a", first), ("b", second)):
        argv = ["--checkpoint", f"{name}={checkpoint}", "--levels", "level_09", "--images", "2", "--samples", "2",
                "--evaluations", "1,2", "--out", str(out)]
        assert solvers.main(argv) == 0, capsys.readouterr().err
    rows = json.loads(first.read_text())["rows"]
    assert [(r["sampler"], r["evaluations"]) for r in rows] == [("ddim", 1), ("ddim", 2), ("dpmpp2m", 1), ("dpmpp2m", 2)]
    keys = ("psnr_fit", "ssim_fit", "psnr_fit_mean", "psnr_tutorial")
    assert [rows[0][k] for k in keys] == [rows[2][k] for k in keys]
    assert rows[1]["psnr_fit"] != rows[3]["psnr_fit"]  # two evaluations: the chains differ
    merged = tmp_path / "all.json"
    assert solvers.main(["--merge", str(first), str(second), "--out", str(merged)]) == 0
    result = json.loads(merged.read_text())
    assert list(result["checkpoints"]) == ["a", "b"] and len(result["rows"]) == 8
    assert merged.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert solvers.main(["--merge", str(first), str(first), "--out", str(tmp_path / "twice.json")]) == 1
    assert "already come from an earlier file" in capsys.readouterr().err
