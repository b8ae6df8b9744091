"""The network benchmark's statistics, peak derivation, FLOP count and round loop, on fixed numbers.

Expectations are computed by hand from the definitions (Hyndman & Fan quantile 7, the verdict rule,
cores x clock x FLOP/cycle, 2 C_in C_out k^2 H W per convolution), never by the code under test.
"""

import json
import math

import pytest
import torch
from torch import nn

from experiments.bench import unet as bench
from experiments.bench.flops import count_flops
from experiments.bench.machine import Machine, cpu_peak, flop_per_cycle, machine_peak, read_machine
from experiments.bench.stats import NO_DIFFERENCE, quantile, ratios, round_order, spread, verdict


# ------------------------------------------------------------------ statistics
def test_quantile_interpolates_between_order_statistics():
    # Sorted 1, 2, 3, 4: q = 0.25 sits at position 0.75 -> 1 + 0.75 * (2 - 1).
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.25) == pytest.approx(1.75)
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.5) == pytest.approx(2.5)
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.75) == pytest.approx(3.25)
    assert quantile([7.0], 0.9) == 7.0


def test_spread_of_five_rounds():
    # Sorted 1, 1, 3, 4, 5: quartile positions 1, 2, 3 fall on order statistics.
    summary = spread([3.0, 1.0, 4.0, 1.0, 5.0])
    assert (summary.median, summary.q1, summary.q3, summary.low, summary.high) == (3.0, 1.0, 4.0, 1.0, 5.0)
    assert summary.iqr == 3.0


def test_ratios_pair_rounds_and_refuse_unequal_counts():
    assert ratios([2.0, 3.0], [4.0, 2.0]) == [0.5, 1.5]
    with pytest.raises(ValueError, match="rounds"):
        ratios([1.0, 2.0], [1.0])


@pytest.mark.parametrize("round_ratios, expected", [
    ([1.10, 1.20, 1.05], "gain"),
    ([0.90, 0.95, 0.99], "loss"),
    ([0.97, 1.15, 1.05], NO_DIFFERENCE),  # the example: the range covers 1
    ([1.00, 1.20, 1.30], NO_DIFFERENCE),  # a round with no gain at all
])
def test_verdict_claims_only_what_every_round_shows(round_ratios, expected):
    assert verdict(round_ratios) == expected


def test_round_order_alternates():
    assert [round_order("AB", i) for i in range(4)] == [["A", "B"], ["B", "A"], ["A", "B"], ["B", "A"]]
    assert round_order("ABC", 1) == ["C", "B", "A"]


# ------------------------------------------------------------------ peak
@pytest.mark.parametrize("flags, expected", [
    ({"sse2", "avx", "avx2", "fma", "avx512f"}, 64),
    ({"sse2", "avx", "avx2", "fma"}, 32),
    ({"sse2", "avx", "avx2"}, 16),  # AVX2 without FMA: separate add and multiply
    ({"sse2"}, 8),
    ({"neon", "asimd"}, None),
])
def test_flop_per_cycle_from_flags(flags, expected):
    found = flop_per_cycle(flags)
    assert (found[0] if found else None) == expected


def test_cpu_peak_is_cores_times_clock_times_flop_per_cycle():
    peak = cpu_peak(2, 2445.402, {"avx2", "fma"})
    assert peak.gflops == pytest.approx(2 * 2.445402 * 32)  # 156.5 GFLOP/s
    assert "2 cores x 2.445 GHz x 32 FLOP/cycle" in peak.derivation
    assert cpu_peak(4, 3000.0, {"neon"}).gflops is None


CPUINFO = """processor\t: 0
model name\t: Test CPU 9000
cpu MHz\t\t: 3000.000
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse2 avx avx2 fma

processor\t: 1
model name\t: Test CPU 9000
cpu MHz\t\t: 3000.000
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse2 avx avx2 fma
"""


def test_read_machine_counts_hyperthreads_once(tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    machine = read_machine(torch.device("cpu"), tmp_path / "cpuinfo")
    assert machine.cpu_model == "Test CPU 9000"
    assert machine.physical_cores == 1  # two logical processors on one core share its FMA units
    assert machine.mhz == 3000.0
    assert machine_peak(machine).gflops == pytest.approx(1 * 3.0 * 32)


def test_machine_peak_override_and_unknown_gpu():
    gpu = Machine("x", 8, 4, 3000.0, frozenset({"avx2", "fma"}), 8, "2", "cuda:0", "Some GPU")
    assert machine_peak(gpu).gflops is None
    assert "--peak-gflops" in machine_peak(gpu).derivation
    assert machine_peak(gpu, 1000.0).gflops == 1000.0


# ------------------------------------------------------------------ FLOPs
def test_conv_flops_match_the_analytic_count():
    c_in, c_out, k, size, batch = 3, 5, 3, 8, 2
    conv = nn.Conv2d(c_in, c_out, k, padding=1)
    x = torch.randn(batch, c_in, size, size)
    analytic = 2 * c_in * c_out * k * k * size * size  # per image; the bias adds count 0
    assert count_flops(lambda: conv(x)) / batch == analytic
    # Backward of a conv whose input needs no gradient: the weight gradient only, as costly as the forward.
    assert count_flops(lambda: conv(x).sum().backward()) / batch == 2 * analytic
    # With the input's gradient too: three convolutions' worth.
    x.requires_grad_(True)
    assert count_flops(lambda: conv(x).sum().backward()) / batch == 3 * analytic


# ------------------------------------------------------------------ summaries and the round loop
def result(network: str, train: float, forward: float, memory: float = 100.0) -> bench.BenchResult:
    return bench.BenchResult(network, "cpu", False, False, 2, 32, train, forward, memory, "process peak RSS",
                             "2", 2)


def test_summary_and_comparison_pair_rounds():
    ours, deeplay = bench.Variant("ours", channels_last=True), bench.Variant("deeplay")
    our_runs = [result("ours", 4.0, 20.0, 300.0), result("ours", 2.0, 10.0), result("ours", 3.0, 30.0)]
    deeplay_runs = [result("deeplay", 2.0, 10.0), result("deeplay", 4.0, 5.0), result("deeplay", 3.0, 15.0)]
    flops = bench.NetworkFlops(forward=1e9, train=3e9)
    row = bench.summarize_variant(ours, our_runs, flops, bench.Peak(30.0, "given"))
    assert row["variant"] == "ours channels_last"
    assert row["train"]["median"] == 3.0 and (row["train"]["low"], row["train"]["high"]) == (2.0, 4.0)
    assert row["train"]["gflops"] == pytest.approx(9.0)  # 3 GFLOP/image x 3 img/s
    assert row["train"]["peak_fraction"] == pytest.approx(0.3)
    assert row["forward"]["gflops"] == pytest.approx(20.0)
    assert row["peak_memory_mib"] == 300.0

    comparison = bench.compare(ours, our_runs, deeplay, deeplay_runs)
    # Round by round: train 4/2, 2/4, 3/3; forward 20/10, 10/5, 30/15.
    assert comparison["train"]["ratios"] == [2.0, 0.5, 1.0]
    assert comparison["train"]["median"] == 1.0 and comparison["train"]["verdict"] == NO_DIFFERENCE
    assert comparison["forward"]["ratios"] == [2.0, 2.0, 2.0] and comparison["forward"]["verdict"] == "gain"


def fake_run_module(calls: list):
    """A stand-in for the subprocess: records (python, options) and answers as the child would."""
    def run(python, options, args):
        calls.append((python, options))
        network = options[options.index("--network") + 1]
        if "--count-flops" in options:
            return {"forward": 1e9, "train": 3e9}
        speed = {"ours": 3.0, "deeplay": 2.0}[network] * (1 + 0.01 * len(calls))
        return {**result(network, speed, 5 * speed).__dict__, "channels_last": "--channels-last" in options}
    return run


def test_main_interleaves_rounds_and_writes_json(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(bench, "run_module", fake_run_module(calls))
    out = tmp_path / "bench.json"
    report = bench.run_benchmark(bench.build_parser().parse_args(
        ["--device", "cpu", "--rounds", "3", "--channels-last", "--deeplay-python", "dl-python",
         "--peak-gflops", "100", "--out", str(out)]))
    timed = [options for _, options in calls if "--count-flops" not in options]
    order = [options[options.index("--network") + 1] for options in timed]
    assert order == ["ours", "deeplay", "deeplay", "ours", "ours", "deeplay"]
    assert [python for python, options in calls if "deeplay" in options] == ["dl-python"] * 4  # FLOPs + 3 rounds
    printed = capsys.readouterr().out
    assert "WARNING: --rounds 3" in printed
    assert "ours channels_last / deeplay eager" in printed
    written = json.loads(out.read_text())
    provenance = {key: written.pop(key) for key in ("commit", "machine")}  # experiments.bench.record's
    assert written == json.loads(json.dumps(report)) and provenance["machine"]["device"] == "cpu"
    assert [len(row["rounds"]) for row in written["variants"]] == [3, 3]
    assert written["comparisons"][0]["train"]["verdict"] == "gain"  # 3.0 vs 2.0 in every round
    assert math.isclose(written["peak"]["gflops"], 100.0)


def test_children_run_from_the_repository_root():
    # The child process imports `experiments` from REPO_ROOT: this file's own checkout, not an installed copy.
    assert (bench.REPO_ROOT / "experiments" / "bench" / "unet.py").is_file()


def test_rounds_below_one_are_refused(capsys):
    assert bench.main(["--rounds", "0"]) == 1
    assert "--rounds: must be >= 1, got 0" in capsys.readouterr().err
