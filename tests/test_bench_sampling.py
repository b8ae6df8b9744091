"""The sampling benchmark end to end on a tiny checkpoint and tiny synthetic data (seconds on a CPU)."""

import json
import math
from pathlib import Path

import pytest
import torch

from ddpm import DDIMSampler, SimpleSampler
from experiments.bench.sampling import (
    compare_to_simple,
    ddim_step_counts,
    build_parser,
    main,
    quality_configs,
    run_benchmark,
    time_chain,
    training_images_per_s,
)
from experiments.config.schema import DiffusionConfig, RunConfig, SamplingConfig, TrainConfig
from experiments.build import build_diffusion, build_model
from training_helpers import make_tiny_data
from unet import UNetConfig

# T = 30 gives DDIM rows at 10 and 25 steps and a capped row at 30.
TINY = RunConfig(
    name="tiny",
    diffusion=DiffusionConfig(steps=30, beta_start=1e-3, beta_end=0.2),
    network=UNetConfig(channels=(4, 8), base_channels=(8,), attention=(False, False), time_encoding_dim=8),
    train=TrainConfig(batch_size=4, device="cpu"),
    sampling=SamplingConfig(sampler="ddim", sampling_steps=3),
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder with a last.pt in the trainer's format (random weights)."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    payload = {"model": build_model(TINY, torch.device("cpu")).state_dict(), "config": TINY.to_dict()}
    torch.save(payload, folder / "last.pt")
    return folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("data"))


def numbers(value):
    """Every int and float inside nested dicts and lists."""
    if isinstance(value, dict):
        return [n for item in value.values() for n in numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in numbers(item)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_main_writes_speed_and_quality_tables_into_the_run_folder(run_dir, data_root, capsys):
    args = ["--checkpoint", run_dir / "last.pt", "--data", data_root, "--device", "cpu", "--images", 3,
            "--batch-size", 2, "--timed-steps", 4, "--train-steps", 1]
    returned = run_benchmark(build_parser().parse_args([str(arg) for arg in args]))
    written = json.loads((run_dir / "bench_sampling.json").read_text())
    provenance = {key: written.pop(key) for key in ("commit", "machine")}  # experiments.bench.record's
    assert written == json.loads(json.dumps(returned)) and provenance["machine"]["device"] == "cpu"
    assert all(math.isfinite(n) for n in numbers(written))

    speed = written["speed"]
    assert speed["steps_total"] == 30 and speed["image_size"] == [32, 32] and speed["batch_size"] == 2
    chains = [(row["sampler"], row["steps"], row["timed_steps"], row["extrapolated"]) for row in speed["chains"]]
    assert chains == [("simple", 30, 4, True), ("ddim", 10, 4, True), ("ddim", 25, 4, True), ("ddim", 30, 4, True)]
    assert all(row["seconds_per_image"] > 0 for row in speed["chains"])
    assert speed["train"]["images_per_s"] > 0 and speed["train"]["batch_size"] == 4

    quality = written["quality"]
    assert quality["ddim_eta"] == 0.0 and quality["images"] == 3
    assert list(quality["rows"]) == ["bicubic", "simple 30", "ddim 10", "ddim 25", "ddim 30"]
    for row in quality["rows"].values():
        assert row["images"] == 3
        assert {"psnr", "psnr_mean", "ssim", "ssim_mean"} <= set(row)
    # Two batches of the 3 images: the network runs steps x 2 times.
    assert quality["rows"]["simple 30"]["network_evaluations"] == 60
    comparison = quality["comparison"]
    assert comparison["ddim_steps"] == 30 and comparison["network_evaluation_ratio"] == 1.0
    rows = quality["rows"]
    assert comparison["psnr_gap_db"] == pytest.approx(rows["ddim 30"]["psnr"] - rows["simple 30"]["psnr"])
    out = capsys.readouterr().out
    assert "extrapolated from 4 timed steps" in out and "| ddim 25 | 25 |" in out


def test_images_zero_skips_the_quality_table(run_dir, tmp_path):
    out = tmp_path / "speed.json"
    assert main(["--checkpoint", str(run_dir), "--device", "cpu", "--images", "0", "--image-size", "16",
                 "--batch-size", "1", "--timed-steps", "0", "--train-steps", "1", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert "quality" not in written and written["speed"]["image_size"] == [16, 16]
    assert not any(row["extrapolated"] for row in written["speed"]["chains"])


def test_ddim_step_counts_are_capped_at_T_without_repeats():
    assert ddim_step_counts(200) == [10, 25, 50, 100]
    assert ddim_step_counts(30) == [10, 25, 30]
    assert ddim_step_counts(8) == [8]


def test_quality_rows_are_simple_then_ddim_with_the_given_eta():
    rows = quality_configs(SamplingConfig(samples=4, sampler="ddim"), 30, eta=0.5)
    assert list(rows) == ["simple 30", "ddim 10", "ddim 25", "ddim 30"]
    assert rows["simple 30"].sampler == "simple"
    assert all(row.samples == 1 for row in rows.values())
    assert [(row.sampling_steps, row.eta) for name, row in rows.items() if name != "simple 30"] == [
        (10, 0.5), (25, 0.5), (30, 0.5)
    ]


def test_short_chains_are_timed_in_full_and_long_ones_extrapolated():
    diffusion = build_diffusion(TINY, torch.device("cpu"))
    model = build_model(TINY, torch.device("cpu")).eval()
    condition = torch.zeros(1, 1, 16, 16)
    full = time_chain(diffusion, model, condition, DDIMSampler(sampling_steps=3), timed_steps=5)
    cut = time_chain(diffusion, model, condition, SimpleSampler(), timed_steps=2)
    assert (full.sampler, full.steps, full.timed_steps, full.extrapolated) == ("ddim", 3, 3, False)
    assert (cut.sampler, cut.steps, cut.timed_steps, cut.extrapolated) == ("simple", 30, 2, True)


def test_training_speed_leaves_the_weights_untouched():
    diffusion = build_diffusion(TINY, torch.device("cpu"))
    model = build_model(TINY, torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert training_images_per_s(model, diffusion, 2, (16, 16), "l1", steps=1, warmup=0) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_target_is_met_by_any_ddim_row_up_to_50_steps_within_the_gap():
    def row(steps, psnr):
        return {"steps": steps, "psnr": psnr, "psnr_mean": psnr, "ssim": 0.5}

    rows = {"simple 200": row(200, 30.0), "ddim 25": row(25, 29.8), "ddim 50": row(50, 29.0),
            "ddim 100": row(100, 30.0)}
    comparison = compare_to_simple(rows, 200)
    assert comparison["psnr_gap_db"] == pytest.approx(-1.0) and comparison["network_evaluation_ratio"] == 4.0
    assert comparison["target_met"]  # by the 25-step row
    rows["ddim 25"] = row(25, 29.0)
    assert not compare_to_simple(rows, 200)["target_met"]  # 100 steps do not count
