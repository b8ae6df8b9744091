"""train --init CHECKPOINT: a run that starts from another checkpoint's weights (fine-tuning on a user's pairs)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from ddpm.settings import UsageError
from experiments.checkpoint import read_checkpoint
from experiments.config.command_line import config_from_args
from experiments.train import build_parser, main
from experiments.training.trainer import Trainer
from test_resume import data_root, ema_run  # noqa: F401 (fixtures)
from training_helpers import model_state, tiny_config


@pytest.fixture(scope="module")
def trained(ema_run):
    """A finished tiny run with EMA weights (test_resume's): the checkpoint to fine-tune."""
    return ema_run / "last.pt"


def test_a_fine_tuning_run_starts_from_the_checkpoints_sampling_weights(data_root, trained, tmp_path):
    trainer = Trainer(tiny_config(data_root, epochs=1, ema_decay=0.9, init=str(trained), lr=1e-4), tmp_path / "run",
                      progress=False)
    ema = read_checkpoint(trained).weights["ema"]
    for name, value in model_state(trainer).items():
        torch.testing.assert_close(value, ema[name], rtol=0, atol=0)
    for name, value in trainer.ema.model.state_dict().items():
        torch.testing.assert_close(value, ema[name], rtol=0, atol=0)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["init"] == str(trained)
    trainer.fit()
    changed = read_checkpoint(tmp_path / "run" / "last.pt").weights["model"]
    assert any(not torch.equal(changed[name], ema[name]) for name in ema)


def test_a_checkpoint_of_another_network_or_task_is_refused_naming_what_differs(data_root, trained, tmp_path):
    wider = tiny_config(data_root, init=str(trained))
    wider = replace(wider, network=replace(wider.network, channels=(8, 8)))
    with pytest.raises(UsageError, match="its network is .* this run's is .*fine-tuning keeps"):
        Trainer(wider, tmp_path / "wide", progress=False)
    regression = tiny_config(data_root, init=str(trained), objective="regression")
    regression = replace(regression, sampling=replace(regression.sampling, sampler="regression"))
    with pytest.raises(UsageError, match="its train.objective is diffusion, this run's is regression"):
        Trainer(regression, tmp_path / "regression", progress=False)


def test_a_checkpoint_an_older_version_wrote_is_read_with_the_defaults_it_meant(data_root, trained, tmp_path):
    # checkpoints written before tasks had a name hold no data.task: they meant the tutorial's task
    from experiments.checkpoint import write_checkpoint

    older = read_checkpoint(trained)
    data = {key: value for key, value in older.config["data"].items() if key != "task"}
    write_checkpoint(replace(older, config={**older.config, "data": data}), tmp_path / "older.pt")
    trainer = Trainer(tiny_config(data_root, epochs=1, init=str(tmp_path / "older.pt")), tmp_path / "run", progress=False)
    ema = older.weights["ema"]
    assert all(torch.equal(value, ema[name]) for name, value in model_state(trainer).items())


def test_the_command_takes_init_and_refuses_it_beside_resume(data_root, trained):
    parser = build_parser()
    args = parser.parse_args(["--preset", "demo", "--init", str(trained)])
    assert config_from_args(args).train.init == str(trained)
    assert main(["--resume", str(trained.parent), "--init", str(trained)]) == 1
