"""--resume reconciles last.pt with config.json: what config.json lacks comes from the checkpoint, what
the checkpoint's state was made with cannot change, every other edit takes effect and is announced."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from ddpm.settings import UserError
from experiments.config.schema import ConfigFileError, RunConfig
from experiments.checkpoint import read_checkpoint
from experiments.training.trainer import Trainer, TrainingDiverged
from training_helpers import make_tiny_data, tiny_config


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("data"))


def finished(data_root: Path, run_dir: Path, **train) -> Path:
    Trainer(tiny_config(data_root, epochs=1, **train), run_dir, progress=False).fit()
    return run_dir


@pytest.fixture(scope="module")
def plain_run(data_root, tmp_path_factory):
    """One finished epoch of a tiny run without EMA (copied, never changed, by the tests)."""
    return finished(data_root, tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def ema_run(data_root, tmp_path_factory):
    return finished(data_root, tmp_path_factory.mktemp("ema"), ema_decay=0.9)


def copy_of(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def edit_config(run_dir: Path, edit) -> None:
    path = run_dir / "config.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def saved_config(run_dir: Path) -> RunConfig:
    return RunConfig.from_dict(read_checkpoint(run_dir).config)


def set_field(section: str, name: str, value):
    return lambda data: data[section].__setitem__(name, value)


@pytest.mark.parametrize(
    "lack, taken",
    [
        (lambda run_dir: edit_config(run_dir, lambda data: data["diffusion"].pop("steps")), "diffusion.steps"),
        (lambda run_dir: edit_config(run_dir, lambda data: data.pop("diffusion")), "diffusion"),
        (lambda run_dir: (run_dir / "config.json").unlink(), "config.json is missing"),
    ],
    ids=["a field", "a section", "the file"],
)
def test_what_config_json_lacks_is_taken_from_the_checkpoint(plain_run, tmp_path, capsys, lack, taken):
    run_dir = copy_of(plain_run, tmp_path)
    lack(run_dir)
    trainer = Trainer(None, run_dir, resume=True, progress=False)
    assert trainer.config == saved_config(run_dir) and trainer.diffusion.steps == 10  # not the default 2,000
    assert taken in capsys.readouterr().out
    # The folder tells the truth again: config.json is complete.
    assert json.loads((run_dir / "config.json").read_text())["diffusion"]["steps"] == 10
    assert RunConfig.load(run_dir / "config.json") == trainer.config


@pytest.mark.parametrize(
    "run, edit, field, new, old",
    [
        ("plain_run", set_field("network", "channels", [4, 16]), "network.channels", "[4, 16]", "[4, 8]"),
        ("plain_run", lambda data: data.__setitem__("network", {"kind": "resnet"}), "network.kind", '"resnet"', '"unet"'),
        ("plain_run", set_field("diffusion", "steps", 20), "diffusion.steps", "20", "10"),
        ("plain_run", set_field("diffusion", "schedule", "cosine"), "diffusion.schedule", '"cosine"', '"linear"'),
        ("plain_run", set_field("train", "ema_decay", 0.99), "train.ema_decay", "0.99", "null"),
        ("ema_run", set_field("train", "ema_decay", None), "train.ema_decay", "null", "0.9"),
        ("plain_run", set_field("train", "loss", "l1"), "train.loss", '"l1"', '"mse"'),
        ("plain_run", set_field("train", "seed", 7), "train.seed", "7", "0"),
        ("plain_run", set_field("train", "batch_size", 2), "train.batch_size", "2", "4"),
        ("plain_run", set_field("data", "crop", 16), "data.crop", "16", "null"),
        # Each field the loss is made of, named here rather than read from FIXED, so that a field
        # dropped from FIXED fails its row.
        ("plain_run", set_field("train", "loss_weighting", "min_snr"), "train.loss_weighting", '"min_snr"', '"none"'),
        ("plain_run", set_field("train", "min_snr_gamma", 2.0), "train.min_snr_gamma", "2.0", "5.0"),
        ("plain_run", lambda data: (data["train"].__setitem__("objective", "regression"),
                                    data["sampling"].update(sampler="regression", sampling_steps=None, eta=0.0)),
         "train.objective", '"regression"', '"diffusion"'),
        ("plain_run", set_field("train", "conditional", False), "train.conditional", "false", "true"),
        ("plain_run", set_field("data", "normalization", "percentile"), "data.normalization", '"percentile"',
         '"tutorial"'),
        ("plain_run", set_field("data", "augment", True), "data.augment", "true", "false"),
        ("plain_run", set_field("data", "max_train_pairs", 3), "data.max_train_pairs", "3", "null"),
        ("plain_run", set_field("data", "task", "native"), "data.task", '"native"', '"tutorial"'),
        ("plain_run", set_field("eval", "best_metric", "ssim"), "eval.best_metric", '"ssim"', '"psnr"'),
    ],
    ids=["network", "network kind", "T", "schedule", "EMA on", "EMA off", "loss", "seed", "batch", "crop",
         "loss weighting", "min-SNR gamma", "objective", "conditional", "normalisation", "augment", "pairs", "task",
         "best metric"],
)
def test_a_change_the_checkpoint_cannot_take_is_refused_and_nothing_is_written(
    request, tmp_path, run, edit, field, new, old
):
    run_dir = copy_of(request.getfixturevalue(run), tmp_path)
    edit_config(run_dir, edit)
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    with pytest.raises(UserError) as refused:
        Trainer(None, run_dir, resume=True, progress=False)
    message = str(refused.value)
    assert f"{field} is {new} there but {old} in last.pt" in message, message
    assert str(run_dir / "config.json") in message and "start a new run" in message and "\n" not in message
    assert {path.name: path.read_bytes() for path in run_dir.iterdir()} == before


def test_a_new_ema_decay_takes_effect(ema_run, tmp_path, capsys):
    run_dir = copy_of(ema_run, tmp_path)
    edit_config(run_dir, set_field("train", "ema_decay", 0.95))
    assert Trainer(None, run_dir, resume=True, progress=False).ema.decay == 0.95
    assert "resume: train.ema_decay 0.9 -> 0.95 (config.json)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, why",
    [('{"train": {"lr": -1}}', "--train.lr must be > 0"), ("[1, 2]", "JSON list"), ('{"trian": {}}', "trian")],
)
def test_an_invalid_config_json_is_refused_naming_the_file(plain_run, tmp_path, text, why):
    run_dir = copy_of(plain_run, tmp_path)
    (run_dir / "config.json").write_text(text)
    with pytest.raises(ConfigFileError, match=re.escape(why)) as refused:
        Trainer(None, run_dir, resume=True, progress=False)
    assert str(run_dir / "config.json") in str(refused.value)


def test_a_new_learning_rate_and_weight_decay_reach_the_optimizer_and_are_announced(plain_run, tmp_path, capsys):
    run_dir = copy_of(plain_run, tmp_path)
    edit_config(run_dir, lambda data: data["train"].update(lr=1e-4, weight_decay=0.05))
    trainer = Trainer(None, run_dir, resume=True, progress=False)
    assert all(group["lr"] == 1e-4 and group["weight_decay"] == 0.05 for group in trainer.optimizer.param_groups)
    announced = [line for line in capsys.readouterr().out.splitlines() if line.startswith("resume:")]
    assert announced == [
        "resume: train.lr 0.001 -> 0.0001 (config.json)",
        "resume: train.weight_decay 0.01 -> 0.05 (config.json)",
    ]
    assert RunConfig.load(run_dir / "config.json") == trainer.config


def test_more_epochs_continue_to_the_new_count_and_fewer_than_completed_are_refused(plain_run, tmp_path, capsys):
    run_dir = copy_of(plain_run, tmp_path)
    edit_config(run_dir, set_field("train", "epochs", 2))
    history = Trainer(None, run_dir, resume=True, progress=False).fit()
    assert [record.epoch for record in history] == [1, 2] and read_checkpoint(run_dir).progress.epoch == 2
    assert "resume: train.epochs 1 -> 2 (config.json)" in capsys.readouterr().out
    edit_config(run_dir, set_field("train", "epochs", 1))
    with pytest.raises(UserError, match=r"train\.epochs is 1 .* completed 2 epochs; set it to 2 or more"):
        Trainer(None, run_dir, resume=True, progress=False)


def test_a_folder_without_last_pt_cannot_be_resumed(tmp_path, capsys):
    from experiments.train import main

    with pytest.raises(UserError, match=f"cannot resume {re.escape(str(tmp_path))}: it holds no last.pt"):
        Trainer(None, tmp_path, resume=True, progress=False)
    assert main(["--resume", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert str(tmp_path / "nowhere") in err and len(err.splitlines()) == 1


def diverges_above(lr: float):
    """An ``on_step`` hook standing in for a learning rate that is too high: after the first epoch, an
    update made at a learning rate above ``lr`` turns a weight NaN."""

    def hook(trainer):
        if trainer.epoch >= 1 and trainer.optimizer.param_groups[0]["lr"] > lr:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    return hook


def test_the_divergence_advice_works_when_followed(data_root, tmp_path, monkeypatch, capsys):
    from experiments.train import main

    hook = diverges_above(5e-4)
    with pytest.raises(TrainingDiverged) as diverged:
        Trainer(tiny_config(data_root, lr=1e-3), tmp_path, progress=False).fit(on_step=hook)
    message = str(diverged.value)
    config_path = Path(re.search(r"Lower train\.lr in (\S+) ", message).group(1))
    command = shlex.split(re.search(r"continue with: (.+)$", message).group(1))
    assert command[:3] == ["python", "-m", "experiments.train"]

    edit_config(config_path.parent, set_field("train", "lr", 1e-4))
    fit = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda trainer: fit(trainer, on_step=hook))  # the same data, the same trouble
    capsys.readouterr()
    assert main([*command[3:], "--no-progress"]) == 0
    assert "resume: train.lr 0.001 -> 0.0001 (config.json)" in capsys.readouterr().out
    progress = read_checkpoint(tmp_path).progress
    assert progress.epoch == 2 and all(group["lr"] == 1e-4 for group in progress.optimizer["param_groups"])
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in progress.history)
