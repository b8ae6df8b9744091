"""Tiny data and configurations for end-to-end training tests (seconds on a CPU)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from experiments.config.schema import DataConfig, DiffusionConfig, EvalConfig, RunConfig, TrainConfig
from experiments.microscope.synthetic import SyntheticConfig, generate
from experiments.training.trainer import Trainer
from unet import UNetConfig

# MS-SSIM with kernel 7 over three scales needs images of at least 28 pixels.
IMAGE_SIZE = 32


def make_tiny_data(root: Path) -> Path:
    generate(root, train=16, validate=4, test_per_level=4, seed=3, config=SyntheticConfig(size=IMAGE_SIZE))
    return root


def tiny_config(root: Path, **train) -> RunConfig:
    return RunConfig(
        name="tiny",
        diffusion=DiffusionConfig(steps=10, beta_start=1e-3, beta_end=0.2),
        network=UNetConfig(channels=(4, 8), base_channels=(8,), attention=(False, False), time_encoding_dim=8),
        data=DataConfig(root=str(root), num_workers=0),
        train=replace(TrainConfig(epochs=2, batch_size=4, lr=1e-3, device="cpu"), **train),
        eval=EvalConfig(batch_size=2, max_test_images=4, validation_images=2, figure_images=2),
    )


def model_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def ddp_worker(rank: int, world_size: int, port: int, config: RunConfig, run_dir: str) -> None:
    """One process of a gloo DDP run (for torch.multiprocessing.spawn): train, then save its weights."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    trainer = Trainer(config, run_dir, progress=False)
    trainer.fit()
    torch.save(model_state(trainer), Path(run_dir) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()
