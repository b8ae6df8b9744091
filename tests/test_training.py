"""End-to-end training: run folder, resume equivalence, interruption, divergence, DDP."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from experiments.checkpoint import read_checkpoint
from experiments.config.schema import RunConfig
from experiments.microscope.synthetic import SyntheticConfig, generate
from experiments.records import read_records
from experiments.training.trainer import Trainer, TrainingDiverged, TrainingInterrupted
from training_helpers import IMAGE_SIZE, ddp_worker, make_tiny_data, model_state, tiny_config


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory):
    """An uninterrupted tiny run of two epochs (shared by several tests)."""
    run_dir = tmp_path_factory.mktemp("run")
    trainer = Trainer(tiny_config(data_root), run_dir, progress=False)
    trainer.fit()
    return run_dir, model_state(trainer)


def test_a_run_writes_its_folder(finished_run):
    run_dir, _ = finished_run
    for name in ("config.json", "metrics.csv", "metrics.json", "last.pt", "best.pt", "report.md",
                 "training_loss.png", "metrics.png", "forward_process.png", "time_encodings.png",
                 "samples_level_09_epoch001.png", "samples_level_09_epoch002.png"):
        assert (run_dir / name).is_file(), name
    history = read_records(run_dir)
    assert [record.epoch for record in history] == [1, 2] and history[-1].loss > 0
    for key in ("level_09/psnr", "level_09/ssim", "level_09/ms_ssim", "level_09/mae", "level_09/nrmse",
                "level_09/psnr_mean", "level_09/psnr_std", "validate/psnr"):
        split, metric = key.split("/")
        assert metric in history[-1].scores[split], key
    assert history[-1].scores["level_09"]["images"] == 4
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["epoch", "loss", "seconds"]
    assert "bicubic input" in (run_dir / "report.md").read_text()
    assert RunConfig.load(run_dir / "config.json").train.epochs == 2


def test_checkpoint_loads_with_weights_only_and_holds_the_state(finished_run):
    run_dir, weights = finished_run
    checkpoint = read_checkpoint(run_dir)  # torch.load(weights_only=True) inside
    progress = checkpoint.progress
    assert progress.epoch == 2 and progress.batch_in_epoch == 0 and progress.global_step == 8
    assert progress.optimizer["state"] and set(progress.rng) == {"torch", "cuda", "train"} and len(progress.history) == 2
    assert checkpoint.config == tiny_config(Path(checkpoint.config["data"]["root"])).to_dict()
    for name, tensor in weights.items():
        assert torch.equal(checkpoint.weights["model"][name], tensor)


@pytest.mark.parametrize("stop_at_step", [3, 4])  # mid-epoch, and right at the end of epoch 1
def test_resume_after_sigint_gives_bitwise_the_uninterrupted_weights(data_root, finished_run, tmp_path, stop_at_step):
    _, uninterrupted = finished_run

    def interrupt(trainer):
        if trainer.global_step == stop_at_step:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="--resume"):
        Trainer(tiny_config(data_root), tmp_path, progress=False).fit(on_step=interrupt)
    assert read_checkpoint(tmp_path).progress.global_step == stop_at_step
    resumed = Trainer(None, tmp_path, resume=True, progress=False)
    resumed.fit()
    assert resumed.global_step == 8
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    assert [record.epoch for record in resumed.history] == [1, 2]


def test_signal_handlers_are_restored_after_training(finished_run, data_root, tmp_path):
    before = signal.getsignal(signal.SIGINT)
    Trainer(tiny_config(data_root, epochs=1), tmp_path, progress=False).fit()
    assert signal.getsignal(signal.SIGINT) is before


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_root, tmp_path):
    def poison(trainer):
        if trainer.global_step == 5:  # in epoch 2, after epoch 1's checkpoint
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="last good state"):
        Trainer(tiny_config(data_root), tmp_path, progress=False).fit(on_step=poison)
    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint.progress.epoch == 1 and all_finite(checkpoint)


def test_unconditional_training_needs_one_input_channel(data_root, tmp_path):
    config = tiny_config(data_root, conditional=False)
    with pytest.raises(ValueError, match="in_channels 1"):
        Trainer(config, tmp_path, progress=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_on_two_processes_matches_one_process(data_root, finished_run, tmp_path, monkeypatch):
    """gloo on CPU: both ranks end with identical weights, equal to the single-process run with the
    same global batch up to the order of floating-point reductions."""
    _, single = finished_run
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    mp.spawn(ddp_worker, args=(2, free_port(), tiny_config(data_root), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name, tensor in single.items():
        assert torch.equal(rank0[name], rank1[name]), name
        torch.testing.assert_close(rank0[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    assert read_records(tmp_path)[-1].scores["level_09"]["images"] == 4


def test_ema_weights_are_checkpointed_and_resumed_exactly(data_root, tmp_path):
    config = tiny_config(data_root, ema_decay=0.9)
    straight = Trainer(config, tmp_path / "straight", progress=False)
    straight.fit()

    def interrupt(trainer):
        if trainer.global_step == 3:
            trainer.request_stop("test")

    with pytest.raises(TrainingInterrupted):
        Trainer(config, tmp_path / "resumed", progress=False).fit(on_step=interrupt)
    resumed = Trainer(None, tmp_path / "resumed", resume=True, progress=False)
    resumed.fit()
    weights = read_checkpoint(tmp_path / "resumed").weights
    for name, tensor in straight.ema.state_dict().items():
        assert torch.equal(weights["ema"][name], tensor), name
    assert any(not torch.equal(weights["ema"][k], weights["model"][k]) for k in weights["model"])


def test_standalone_evaluation_scores_every_level_beside_bicubic(finished_run, tmp_path, capsys):
    from experiments.evaluate import main

    run_dir, _ = finished_run
    assert main(["--checkpoint", str(run_dir), "--levels", "all", "--no-progress", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "evaluation.json").read_text())
    assert sorted(result["levels"]) == [f"level_{i:02d}" for i in range(1, 10)]
    for level in result["levels"].values():
        assert level["model"]["images"] == 4 and "psnr" in level["bicubic"]
    assert (tmp_path / "samples_level_05.png").is_file() and (tmp_path / "evaluation.md").is_file()
    assert "bicubic input" in capsys.readouterr().out


def test_standalone_evaluation_on_another_data_root_and_chosen_levels(finished_run, tmp_path):
    """A model trained on one data set is scored on another's test split (e.g. the held-out real cells)."""
    from experiments.evaluate import main

    run_dir, _ = finished_run
    other = tmp_path / "other"
    generate(other, train=1, validate=1, test_per_level=3, seed=9, config=SyntheticConfig(size=IMAGE_SIZE))
    assert main(["--checkpoint", str(run_dir), "--data-root", str(other), "--levels", "level_01,level_09",
                 "--no-progress", "--out", str(tmp_path / "evaluation")]) == 0
    result = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert sorted(result["levels"]) == ["level_01", "level_09"]
    # The run's own data set holds 4 test images per level, the other one 3.
    assert all(level["model"]["images"] == 3 for level in result["levels"].values())


def test_standalone_evaluation_names_a_missing_checkpoint(tmp_path, capsys):
    from experiments.evaluate import main

    assert main(["--checkpoint", str(tmp_path / "nowhere.pt")]) == 1
    assert "nowhere.pt" in capsys.readouterr().err


def test_unconditional_run_trains_a_generator(data_root, tmp_path):
    """The tutorial's Section 5: no condition, one input channel; samples but no paired metrics."""
    from dataclasses import replace

    config = tiny_config(data_root, conditional=False, epochs=1)
    config = replace(config, network=replace(config.network, in_channels=1))
    trainer = Trainer(config, tmp_path, progress=False)
    history = trainer.fit()
    assert history[0].loss > 0 and "level_09" not in history[0].scores
    assert (tmp_path / "samples_level_09_epoch001.png").is_file() and (tmp_path / "last.pt").is_file()


def test_a_new_run_never_overwrites_an_existing_one(finished_run, data_root):
    run_dir, _ = finished_run
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(tiny_config(data_root), run_dir, progress=False)


def test_resume_refuses_configuration_overrides(finished_run, capsys):
    from experiments.train import main

    run_dir, _ = finished_run
    assert main(["--resume", str(run_dir), "--epochs", "9"]) == 1
    assert "epochs" in capsys.readouterr().err
    # The preset, the name and the folders are the run's own too: given, they would look obeyed and be ignored.
    for flags in (["--preset", "regression"], ["--name", "other"], ["--out-dir", "elsewhere"], ["--run-dir", "x"]):
        before = sorted(path.name for path in run_dir.iterdir())
        assert main(["--resume", str(run_dir), *flags]) == 1
        error = capsys.readouterr().err
        assert f"drop {flags[0]}" in error and str(run_dir) in error, error
        assert sorted(path.name for path in run_dir.iterdir()) == before


@pytest.mark.parametrize("crop", [64, 15])  # larger than the 32-pixel images; not a multiple of 2
def test_a_bad_crop_is_refused_before_training(data_root, tmp_path, crop):
    from dataclasses import replace

    config = tiny_config(data_root)
    config = replace(config, data=replace(config.data, crop=crop))
    with pytest.raises(ValueError, match="data.crop"):
        Trainer(config, tmp_path, progress=False)


def test_validation_can_be_switched_off(data_root, tmp_path):
    from dataclasses import replace

    config = tiny_config(data_root, epochs=1)
    config = replace(config, eval=replace(config.eval, validation_images=0))
    history = Trainer(config, tmp_path, progress=False).fit()
    assert "psnr" in history[0].scores["level_09"] and "validate" not in history[0].scores
    assert not (tmp_path / "best.pt").exists()


# ------------------------------------------------ non-finite weights never reach a checkpoint (issue 11)
def poison_at(step: int):
    """An ``on_step`` hook that turns one weight NaN right after training step ``step``."""

    def poison(trainer):
        if trainer.global_step == step:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    return poison


def all_finite(checkpoint) -> bool:
    return all(torch.isfinite(t).all() for weights in checkpoint.weights.values() for t in weights.values())


def test_a_nan_update_at_the_last_step_of_an_epoch_is_never_saved(data_root, tmp_path):
    """Step 8 ends epoch 2: its loss was finite, so only the epoch-end save can see the NaN weights."""
    with pytest.raises(TrainingDiverged, match="last good state") as raised:
        Trainer(tiny_config(data_root), tmp_path, progress=False).fit(on_step=poison_at(8))
    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint.progress.epoch == 1 and checkpoint.progress.global_step == 4 and all_finite(checkpoint)
    assert all_finite(read_checkpoint(tmp_path / "best.pt"))
    assert "after 1 epoch(s), step 4" in str(raised.value) and "--resume" in str(raised.value)


@pytest.mark.parametrize("step", [2, 4])  # mid-epoch (a NaN loss), and the last step of the first epoch
def test_a_nan_in_the_first_epoch_says_that_no_checkpoint_exists(data_root, tmp_path, step):
    with pytest.raises(TrainingDiverged, match="nothing to resume") as raised:
        Trainer(tiny_config(data_root), tmp_path, progress=False).fit(on_step=poison_at(step))
    assert "last good state" not in str(raised.value) and "last.pt does not exist" in str(raised.value)
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()


def test_a_nan_validation_score_never_becomes_best(data_root, tmp_path, monkeypatch):
    import experiments.training.trainer as training

    real = training.evaluate

    def nan_validation(*args, description, **kwargs):
        result = real(*args, description=description, **kwargs)
        if description == "validate":
            result.metrics["psnr"] = float("nan")
        return result

    monkeypatch.setattr(training, "evaluate", nan_validation)
    trainer = Trainer(tiny_config(data_root, epochs=1), tmp_path, progress=False)
    trainer.fit()
    assert not (tmp_path / "best.pt").exists() and trainer.best_score is None


def test_the_checkpoint_writer_refuses_non_finite_tensors(tmp_path):
    from experiments.checkpoint import NonFiniteCheckpoint, save_atomic

    save_atomic({"model": {"w": torch.ones(2)}}, tmp_path / "last.pt")
    with pytest.raises(NonFiniteCheckpoint, match=r"last\.pt was not written: model\.w hold NaN or inf"):
        save_atomic({"model": {"w": torch.tensor([1.0, float("inf")])}}, tmp_path / "last.pt")
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["model"]["w"], torch.ones(2))


def test_the_same_payload_gives_the_same_bytes_wherever_it_is_written(tmp_path):
    """A shipped model's digest changes only with its contents: the file's name and the writer's temporary
    leave no trace in its bytes."""
    from experiments.checkpoint import save_atomic

    payload = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "config": {"a": 1}}
    first, second = save_atomic(payload, tmp_path / "a" / "model.pt"), save_atomic(payload, tmp_path / "other.pt")
    assert first.read_bytes() == second.read_bytes()
    assert torch.equal(torch.load(first, weights_only=True)["model"]["w"], payload["model"]["w"])


# --------------------------------------------------------------- files, errors and signals (issue 11)
def test_checkpoints_get_the_mode_of_the_runs_other_files(finished_run):
    run_dir, _ = finished_run
    expected = (run_dir / "metrics.json").stat().st_mode & 0o777
    for name in ("last.pt", "best.pt"):
        assert (run_dir / name).stat().st_mode & 0o777 == expected, name


def test_a_stale_temporary_from_a_killed_save_is_removed_on_resume_and_save(finished_run, data_root, tmp_path):
    from experiments.checkpoint import save_atomic

    stale = tmp_path / ".last.pt.deadbeef.tmp"
    stale.write_bytes(b"torn")
    save_atomic({"step": 1}, tmp_path / "last.pt")
    assert not stale.exists()

    def interrupt(trainer):
        if trainer.global_step == 2:
            trainer.request_stop("test")

    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        Trainer(tiny_config(data_root, epochs=1), run_dir, progress=False).fit(on_step=interrupt)
    stale = run_dir / ".last.pt.0badc0de.tmp"
    stale.write_bytes(b"torn")
    Trainer(None, run_dir, resume=True, progress=False)
    assert not stale.exists()


def test_sigterm_during_evaluation_stops_it_and_resumes_to_the_same_weights(data_root, finished_run, tmp_path, monkeypatch):
    """The signal arrives as evaluation starts: the run must stop before the next training step, with
    last.pt holding the whole first epoch, and a resumed run must end as the uninterrupted one."""
    import experiments.training.trainer as training

    _, uninterrupted = finished_run
    real, calls = training.evaluate, []

    def signalled(*args, **kwargs):
        if not calls:
            os.kill(os.getpid(), signal.SIGTERM)
        calls.append(kwargs["description"])
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", signalled)
    with pytest.raises(TrainingInterrupted, match="SIGTERM.*--resume"):
        Trainer(tiny_config(data_root), tmp_path, progress=False).fit()
    assert calls == ["test level_09"]  # abandoned at once: no validation, no further level
    progress = read_checkpoint(tmp_path).progress
    assert (progress.epoch, progress.batch_in_epoch, progress.global_step) == (0, 4, 4)
    monkeypatch.setattr(training, "evaluate", real)
    resumed = Trainer(None, tmp_path, resume=True, progress=False)
    resumed.fit()
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    assert [record.epoch for record in resumed.history] == [1, 2] and "level_09" in resumed.history[0].scores


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--train.batch_size", "0"], "--train.batch_size must be >= 1, got 0"),
        (["--eval.batch_size", "0"], "--eval.batch_size must be >= 1, got 0"),
        (["--crop", "-8"], "--data.crop must be >= 1, got -8"),
        (["--diffusion.steps", "0"], "--diffusion.steps must be >= 1, got 0"),
    ],
)
def test_train_command_reports_a_bad_value_in_one_line(argv, message, capsys):
    from experiments.train import main

    assert main(["--preset", "demo", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_train_command_names_a_corrupt_config_json_on_resume(finished_run, tmp_path, capsys):
    import shutil

    from experiments.train import main

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    (run_dir / "config.json").write_text('{"train": {"epochs": ')
    assert main(["--resume", str(run_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert str(run_dir / "config.json") in err and "start a new run" in err and len(err.splitlines()) == 1
    with pytest.raises(ValueError, match="config.json"):
        main(["--resume", str(run_dir), "--debug"])


def test_prediction_and_export_tile_by_the_training_image_side_the_checkpoint_records(finished_run):
    from experiments.inference.loading import LEGACY_IMAGE_SIDE, load_for_inference

    assert IMAGE_SIZE != LEGACY_IMAGE_SIDE  # else the test could not tell the recorded side from the fallback
    run_dir, _ = finished_run
    assert load_for_inference(run_dir / "last.pt", "cpu").tile == IMAGE_SIZE


def test_the_recorded_epoch_loss_is_the_mean_of_its_batches_losses(data_root, tmp_path, monkeypatch):
    """metrics.json's loss of each epoch, against the losses the diffusion returned, recorded on their way out;
    read in groups of 3 steps, so that groups straddle the epochs' ends (4 batches of 4 pairs each)."""
    from ddpm import Diffusion
    from experiments.training import trainer as training

    losses = []
    loss_of = Diffusion.training_loss

    def recording(self, *args, **kwargs):
        loss = loss_of(self, *args, **kwargs)
        losses.append(loss.item())
        return loss

    monkeypatch.setattr(Diffusion, "training_loss", recording)
    monkeypatch.setattr(training, "LOSS_READ_EVERY", 3)
    Trainer(tiny_config(data_root, epochs=2), tmp_path / "run", progress=False).fit()
    assert len(losses) == 8
    records = read_records(tmp_path / "run")
    for record, batch in zip(records, (losses[:4], losses[4:])):
        assert record.loss == pytest.approx(sum(batch) / 4, rel=1e-6)
    assert records[0].loss != pytest.approx(records[1].loss)
