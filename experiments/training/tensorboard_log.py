"""TensorBoard event files of a run (``--log tensorboard``): the epoch losses, every evaluated metric per
split, and the samples grid of each evaluation, in ``<run folder>/tensorboard``. The run folder's own files
(metrics.csv / .json, the PNG figures) are written either way; TensorBoard only shows them live.

Needs the optional extra: ``pip install -e '.[tensorboard]'``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ddpm.settings import UsageError
from experiments.records import METRIC_NAMES, EpochRecord

FOLDER = "tensorboard"


class TensorBoardLog:
    """Writes into ``folder`` from the first record on; the package is imported here, so that a missing
    one is reported when the run starts, not after its first epoch."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise UsageError(f"--train.log tensorboard needs the tensorboard package ({error}); run: "
                             "pip install -e '.[tensorboard]', or train with --train.log files") from None
        self._writer_type, self.folder, self._writer = SummaryWriter, folder, None

    @property
    def writer(self):
        if self._writer is None:
            self._writer = self._writer_type(log_dir=str(self.folder))
        return self._writer

    def epoch(self, record: EpochRecord) -> None:
        """``loss/train`` and ``<split>/<metric>`` at step ``record.epoch``."""
        self.writer.add_scalar("loss/train", record.loss, record.epoch)
        for split, scores in record.scores.items():
            for metric in METRIC_NAMES:
                if metric in scores:
                    self.writer.add_scalar(f"{split}/{metric}", scores[metric], record.epoch)
        self.writer.flush()

    def samples(self, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor, level: str, epoch: int) -> None:
        """``samples/<level>``: inputs, samples and targets ([N, 1, H, W] in [-1, 1]) as three rows."""
        rows = torch.cat([inputs, outputs, targets]).float().add(1).div(2).clamp(0, 1)
        count = len(inputs)
        grid = torch.cat([torch.cat(list(rows[row * count : (row + 1) * count]), dim=2) for row in range(3)], dim=1)
        self.writer.add_image(f"samples/{level}", grid, epoch)  # [1, 3 H, N W], CHW
        self.writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
