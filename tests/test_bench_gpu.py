"""The GPU readiness benchmark: its refusals, and its timing and estimates run on a tiny network on the CPU."""

import math

import pytest
import torch

from experiments.bench.gpu import (
    BF16,
    EPOCHS,
    FP32,
    TRAINING_PAIRS,
    epoch_estimate,
    main,
    measure,
    run_ddp,
)
from unet import UNetConfig

TINY = UNetConfig(channels=(4, 8), base_channels=(8,), attention=(False, False), time_encoding_dim=8)


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_cuda_one_line_naming_the_gpu(tmp_path, capsys):
    out = tmp_path / "bench_gpu.json"
    assert main(["--out", str(out), "--rounds", "1"]) == 1
    line = one_error_line(capsys)
    assert "needs a CUDA GPU" in line and "sees none" in line
    assert not out.exists()


def test_image_size_not_a_multiple_is_refused(tmp_path, capsys):
    assert main(["--image-size", "7", "--out", str(tmp_path / "x.json")]) == 1
    line = one_error_line(capsys)
    assert "--image-size 7" in line and str(UNetConfig().size_multiple) in line


def test_measure_on_cpu_gives_a_well_formed_report():
    rows = measure(TINY, [FP32, BF16], torch.device("cpu"), lambda: None,
                   batch_size=2, image_size=16, rounds=1, steps=1, warmup=0)
    assert [row["name"] for row in rows] == [FP32.name, BF16.name]
    for row in rows:
        assert {"precision", "channels_last", "tf32", "compile", "images_per_s", "rounds", "estimate",
                "peak_memory_mib"} <= row.keys()
        assert len(row["rounds"]) == 1
        rate = row["images_per_s"]["median"]
        assert math.isfinite(rate) and rate > 0
        assert row["images_per_s"]["low"] <= rate <= row["images_per_s"]["high"]
        assert row["peak_memory_mib"] is None  # CUDA only
        estimate = row["estimate"]
        assert estimate["epoch_seconds"] == pytest.approx(TRAINING_PAIRS / rate)
        assert estimate["total_seconds"] == pytest.approx(EPOCHS * TRAINING_PAIRS / rate)


def test_epoch_estimate_arithmetic():
    estimate = epoch_estimate(400.0)
    assert (estimate["training_pairs"], estimate["epochs"]) == (41_040, 60)
    assert estimate["epoch_seconds"] == pytest.approx(102.6)
    assert estimate["total_seconds"] == pytest.approx(6156.0)
    assert estimate["total_hours"] == pytest.approx(1.71)
    assert "evaluation" in estimate["note"] and "extra" in estimate["note"]


def test_ddp_records_why_it_did_not_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert run_ddp(TINY, BF16, 2, 16, 1, 1, 0) == {"run": False, "reason": "1 CUDA GPU(s) visible; a DDP run needs 2"}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert "does not split" in run_ddp(TINY, BF16, 3, 16, 1, 1, 0)["reason"]
