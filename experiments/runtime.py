"""Where a run executes: device choice, seeding, and the process group of a DDP run."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
import torch.distributed as dist

from ddpm.settings import UsageError

Device = Literal["auto", "cuda", "mps", "cpu"]
DEVICES: tuple[str, ...] = get_args(Device)
# "auto": bf16 on CUDA, fp32 elsewhere (resolve_precision).
Precision = Literal["fp32", "bf16", "auto"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` takes CUDA, then Apple's MPS, then the CPU (tutorial Listing 6)."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device auto or cpu")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps was asked for, but this PyTorch has no MPS backend; use --device auto or cpu")
    if requested not in DEVICES:
        raise UsageError(f"unknown device {requested!r}; choose one of {DEVICES}")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a run: rank 0 of 1 unless launched by ``torchrun``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (NCCL on CUDA, else gloo)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_kind == "cuda":
        torch.cuda.set_device(local_rank)
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def gather_objects(value: object, place: Distributed) -> list:
    """``value`` of every rank, in rank order, on every rank (``[value]`` outside a process group)."""
    if not place.enabled:
        return [value]
    gathered = [None] * place.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def leave_distributed(place: Distributed) -> None:
    """Wait for every rank, then leave the process group (nothing outside one)."""
    if place.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_device(device: torch.device, place: Distributed) -> torch.device:
    """This rank's own GPU in a multi-GPU run (``cuda:LOCAL_RANK``), else ``device`` itself."""
    if device.type == "cuda" and place.enabled:
        return torch.device("cuda", place.local_rank)
    return device


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto`` is bf16 on CUDA and fp32 elsewhere; bf16 is refused off CUDA, where it is slower."""
    if requested == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if requested == "bf16" and device.type != "cuda":
        raise UsageError(f"train.precision bf16 needs a CUDA GPU, but this run is on {device.type}; use fp32 or auto")
    if requested not in PRECISIONS:
        raise UsageError(f"unknown precision {requested!r}; choose one of {PRECISIONS}")
    return requested


def autocast(device: torch.device, precision: str):
    """Mixed precision for the network only: the loss and the diffusion coefficients stay fp32,
    since autocast leaves element-wise arithmetic in the dtype of its inputs."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def set_tf32(enabled: bool) -> None:
    """TF32 matrix multiplications and convolutions on Ampere and newer GPUs (no effect elsewhere).

    Set explicitly both ways: cuDNN allows TF32 by default, which would change the tutorial's fp32.
    """
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
