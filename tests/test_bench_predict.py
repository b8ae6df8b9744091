"""bench.predict: the camera-scale benchmark's figures are what they claim (tiny sizes, one step)."""

import math

import numpy as np
import pytest

from experiments.bench import predict as bench


@pytest.mark.slow  # a few seconds: the demo network on 9 tiles, twice, plus the unbatched run
def test_the_benchmark_reports_redundancy_overhead_and_the_unbatched_difference(tmp_path, capsys):
    out = tmp_path / "figures.json"
    argv = ["--size", "300", "--sampling-steps", "1", "--rounds", "2", "--verify", "--out", str(out)]
    figures = bench.run_benchmark(bench.build_parser().parse_args(argv))
    per_axis = math.ceil((300 - 128) / (128 - 32)) + 1  # tiles of 128 sharing >= 32 px, the last flush
    assert figures["tiles_per_step"] == per_axis**2
    assert figures["redundancy"] == pytest.approx(per_axis**2 * 128**2 / 300**2)
    assert len(figures["predict_seconds"]) == len(figures["bare_network_pixels_per_s"]) == 2
    for wall, rate, overhead in zip(figures["predict_seconds"], figures["bare_network_pixels_per_s"],
                                    figures["overhead"]):
        assert overhead == pytest.approx(wall / (300**2 / rate))  # one step of the image's pixels
    # Float32 rounding only, amplified by 1 / sqrt(alpha_bar_T) of the DDIM step from t = T - 1 (random
    # weights); mixed tiles or another noise field would differ by the order of the output, 1.
    assert 0 <= figures["max_abs_difference_unbatched"] < 1e-2
    printed = capsys.readouterr().out
    assert "CPU:" in printed and "load average" in printed and "min-max" in printed and out.is_file()


def test_the_real_structure_frame_is_a_mosaic_of_test_windows_with_its_target():
    frame, target = bench.real_structure_pair(600, level=9)
    assert frame.shape == target.shape == (600, 600) and frame.dtype == target.dtype == np.float32
    assert 0 <= frame.min() and frame.max() <= 1 and target.max() == pytest.approx(1.0)
    window = bench.MOSAIC_WINDOW
    # Each window is scaled on its own: the first target window reaches 1 within its own square.
    assert target[:window, :window].max() == pytest.approx(1.0, abs=1e-6)
    assert np.corrcoef(frame.ravel(), target.ravel())[0, 1] > 0.5  # the input shows the target's structures


def test_a_benchmark_that_measures_nothing_still_exits_0(capsys):
    # --rounds 0 without --verify or --quality: an empty report, which is still a success.
    assert bench.main(["--size", "16", "--rounds", "0"]) == 0


def test_the_error_bar_timing_runs_both_workflows_in_alternating_rounds(tmp_path, monkeypatch):
    """Each variant runs its own command (8 samples with --std --check, and the probabilistic model's --std
    --check without a sampler); the speed-up is round by round."""
    calls = []

    def timed(checkout, checkpoint, image, out_dir, args, sampler, flags):
        calls.append((checkpoint.name, sampler, tuple(flags)))
        return 10.0 if sampler else 2.0

    monkeypatch.setattr(bench, "command_seconds", timed)
    probabilistic = tmp_path / "probabilistic.pt"
    probabilistic.write_bytes(b"")
    args = bench.build_parser().parse_args(["--size", "64", "--error-bars", str(probabilistic), "--trust-rounds", "2",
                                            "--checkpoint", str(tmp_path / "diffusion.pt")])
    figures = bench.compare_error_bars(args.checkpoint, tmp_path / "frame.tif", tmp_path, args)
    assert calls[0][2] == bench.TRUST_FLAGS and calls[0][1] == (args.fast_sampler, args.fast_steps)
    assert calls[1] == ("probabilistic.pt", None, ("--std", "--check"))
    assert [call[0] for call in calls[2:]] == ["probabilistic.pt", "diffusion.pt"]  # the order alternates
    assert figures["speedup"] == [5.0, 5.0] and figures["seconds"]["predicted"] == [2.0, 2.0]
