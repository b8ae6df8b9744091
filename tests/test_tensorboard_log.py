"""``--log tensorboard`` (issue 24): the event files a run writes, read back with TensorBoard's own reader,
hold every epoch's loss, every evaluated metric per split and the samples grid of each evaluation, with
the values the run folder's metrics.json records."""

import json

import pytest

from experiments import train
from experiments.training.tensorboard_log import FOLDER
from training_helpers import make_tiny_data

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="the optional extra is not installed: pip install -e '.[tensorboard]'")


def test_the_event_files_hold_the_losses_metrics_and_sample_grids_of_metrics_json(tmp_path, capsys):
    root = make_tiny_data(tmp_path / "data")
    run_dir = tmp_path / "run"
    code = train.main(["--preset", "mse", "--data.root", str(root), "--run-dir", str(run_dir), "--log", "tensorboard",
                       "--epochs", "2", "--train.batch_size", "4", "--device", "cpu", "--diffusion.steps", "10",
                       "--network.channels", "4,8", "--network.base_channels", "8", "--network.attention", "false,false",
                       "--network.time_encoding_dim", "8", "--eval.max_test_images", "2", "--eval.figure_images", "2",
                       "--eval.levels", "level_09", "--eval.validation_images", "0", "--sampling.sampling_steps", "2",
                       "--no-progress"])
    assert code == 0, capsys.readouterr().err
    records = json.loads((run_dir / "metrics.json").read_text())
    epochs = records["epochs"] if isinstance(records, dict) else records
    events = event_accumulator.EventAccumulator(str(run_dir / FOLDER), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    losses = {event.step: event.value for event in events.Scalars("loss/train")}
    assert losses == pytest.approx({record["epoch"]: record["loss"] for record in epochs}, rel=1e-6)
    psnr = {event.step: event.value for event in events.Scalars("level_09/psnr")}
    assert psnr == pytest.approx({r["epoch"]: r["scores"]["level_09"]["psnr"] for r in epochs if "level_09" in r["scores"]},
                                 rel=1e-6)
    assert {"level_09/ssim", "level_09/ms_ssim", "level_09/mae", "level_09/nrmse"} <= set(events.Tags()["scalars"])
    grids = events.Images("samples/level_09")
    assert [grid.step for grid in grids] == sorted(psnr) and grids[0].height == 3 * 32 and grids[0].width == 2 * 32


def test_tensorboard_without_the_package_names_the_extra(monkeypatch, tmp_path):
    import builtins

    from ddpm.settings import UsageError
    from experiments.training.tensorboard_log import TensorBoardLog

    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(UsageError, match=r"\[tensorboard\]"):
        TensorBoardLog(tmp_path / FOLDER)
    assert not (tmp_path / FOLDER).exists()
