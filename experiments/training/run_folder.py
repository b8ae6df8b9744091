"""What a training run writes into its folder besides checkpoints: ``config.json``, the per-epoch
``metrics.csv`` / ``metrics.json``, the figures (Figs. 2 and 3, sample grids, loss and metric curves)
and ``report.md``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import torch

from ddpm import Diffusion
from experiments import figures
from experiments.config.schema import RunConfig
from experiments.evaluation.loop import Evaluation
from experiments.evaluation.report import comparison_rows, format_table, levels_table, write_report
from experiments.records import EpochRecord, Scores, evaluated, last_scores, write_records
from experiments.training.tensorboard_log import FOLDER as TENSORBOARD_FOLDER
from experiments.training.tensorboard_log import TensorBoardLog

CONFIG_FILE = "config.json"


def new_run_dir(config: RunConfig) -> Path:
    """``<out_dir>/<name>-<timestamp>`` (``-2``, ``-3``, ... when taken), not yet created: the trainer creates
    it once the run has been checked, so a run refused at the start leaves nothing behind."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.out_dir) / f"{config.name}-{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = Path(config.out_dir) / f"{config.name}-{stamp}-{suffix}"
    return run_dir


def final_rows(config: RunConfig, history: list[EpochRecord], baselines: dict[str, Scores]) -> dict[str, dict[str, dict[str, float]]]:
    """Per evaluated test level, its last evaluated scores beside the bicubic input's (``baselines``) and,
    when ``eval.paper_comparison`` names one, the paper's numbers."""
    rows = {}
    for level in config.eval.levels:
        last = last_scores(history, level)
        if last is not None:
            rows[level] = comparison_rows(last[1], baselines.get(level), paper_key=config.eval.paper_comparison)
    return rows


class RunFolder:
    """The files of one run folder (see the module's docstring); checkpoints are the trainer's."""

    def __init__(self, path: Path, config: RunConfig) -> None:
        self.path = path
        self.config = config
        self.tensorboard = TensorBoardLog(path / TENSORBOARD_FOLDER) if config.train.log == "tensorboard" else None

    def close(self) -> None:
        """Close what stays open during a run (the TensorBoard writer)."""
        if self.tensorboard is not None:
            self.tensorboard.close()

    def save_config(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.config.save(self.path / CONFIG_FILE)

    def write_introductory_figures(self, target: torch.Tensor, diffusion: Diffusion) -> None:
        """Fig. 2 (the forward process on one training target ``[1, C, H, W]`` in [-1, 1]) and Fig. 3
        (the time encodings)."""
        steps = torch.linspace(0, diffusion.steps - 1, 8).round().long().tolist()
        generator = torch.Generator(device=target.device).manual_seed(0)
        noisy = torch.cat([diffusion.forward_diffusion(target, t, generator=generator)[0] for t in steps])
        figures.plot_forward_process(noisy.cpu(), steps, self.path / "forward_process.png")
        stride = max(1, diffusion.steps // 200)
        figures.plot_time_encodings(diffusion.time_encodings[::stride].cpu(), self.path / "time_encodings.png", stride=stride)

    def write_samples(self, result: Evaluation, level: str, epoch: int) -> None:
        """The grid of inputs, samples and targets of test ``level`` after ``epoch`` (1-based)."""
        figures.plot_sample_grid(
            result.inputs,
            result.outputs,
            result.targets,
            self.path / f"samples_{level}_epoch{epoch:03d}.png",
            title=f"{self.config.name}, epoch {epoch}, test {level}",
        )
        if self.tensorboard is not None:
            self.tensorboard.samples(result.inputs, result.outputs, result.targets, level, epoch)

    def write_metrics(self, history: list[EpochRecord], baselines: dict[str, Scores]) -> None:
        """``metrics.json``, ``metrics.csv`` (:func:`experiments.records.write_records`), the loss curve and
        the metric curves of the first test level beside its bicubic input (``baselines``)."""
        write_records(self.path, history)
        if self.tensorboard is not None and history:
            self.tensorboard.epoch(history[-1])
        figures.plot_training_loss([record.loss for record in history], self.path / "training_loss.png")
        level = self.config.eval.levels[0]
        curves = [{"epoch": epoch, **scores} for epoch, scores in evaluated(history, level)]
        if curves:
            figures.plot_metrics(curves, self.path / "metrics.png", baseline=baselines.get(level))

    def write_report(self, history: list[EpochRecord], baselines: dict[str, Scores], device: torch.device) -> None:
        """``report.md`` (summary, final metrics table, figures) of a conditional run; the table is printed."""
        if not self.config.train.conditional:
            return
        config = self.config
        per_level = final_rows(config, history, baselines)
        summary = {
            "preset / name": config.name,
            "epochs": config.train.epochs,
            "loss": config.train.loss,
            "diffusion steps": config.diffusion.steps,
            "sampler": config.sampling.sampler,
            "test levels": ", ".join(per_level),
            "test images": ", ".join(f"{level}: {history[-1].scores.get(level, {}).get('images')}" for level in per_level),
            "device": str(device),
        }
        notes = ["Metrics on [-1, 1] images with data range 2.0."]
        last_epoch = history[-1].epoch
        shown = ["training_loss.png", "metrics.png"]
        shown += [f"samples_{level}_epoch{last_epoch:03d}.png" for level in per_level]
        shown += ["forward_process.png", "time_encodings.png"]
        shown = [name for name in shown if (self.path / name).is_file()]
        write_report(self.path / "report.md", f"Run {self.path.name}", summary, levels_table(per_level), notes,
                     figures=shown)
        for level, rows in per_level.items():
            print(f"\n{level}\n{format_table(rows)}")
