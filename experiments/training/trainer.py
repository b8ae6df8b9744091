"""The tutorial's training loop (Listings 19-24) as a resumable, seeded, optionally distributed run."""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ddpm.residual import refiner_condition, residual_of
from ddpm.settings import UsageError, UserError
from experiments.build import base_config, build_diffusion, build_model
from experiments.config.schema import RunConfig, check_consistency
from experiments.pairs.dataset import read_pairs
from experiments.data.layout import DatasetError
from experiments.data.layout import check_levels
from experiments.data.task import data_grid
from experiments.evaluation.loop import Evaluation, EvaluationStopped, bicubic_baseline, evaluate
from experiments.records import HIGHER_IS_BETTER, VALIDATION, EpochRecord, Scores
from experiments.runtime import (
    autocast,
    init_distributed,
    pick_device,
    rank_device,
    resolve_precision,
    seed_everything,
    set_tf32,
)
from experiments.checkpoint import (
    BEST,
    LAST,
    Checkpoint,
    NonFiniteCheckpoint,
    Progress,
    remove_stale_temporaries,
    restore_rng_state,
    rng_state,
    write_checkpoint,
)
from experiments.training.ema import EMA
from experiments.training.initial_weights import load_initial_weights
from experiments.training.residual_base import read_base
from experiments.training.resume import reconcile
from experiments.training.run_folder import CONFIG_FILE, RunFolder
from experiments.training.batch_order import EpochBatches
from unet import optimize_for_speed

# Steps between host reads of the training loss: each read waits for the GPU to catch up.
LOSS_READ_EVERY = 20


class TrainingDiverged(UserError):
    """The loss or the weights became NaN or inf; no checkpoint holding them was written."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; a checkpoint to resume from was written first."""


def random_crops(
    wf: torch.Tensor, gt: torch.Tensor, size: int, generator: torch.Generator, draws: int, mine: slice
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random ``size`` x ``size`` window of each input and target [B, C, H, W].

    Offsets are drawn for ``draws`` images and the ``mine`` share is used, so DDP ranks stay in step.
    The network is fully convolutional: it trains on windows and still runs on whole images.
    """
    height, width = gt.shape[-2:]
    rows = torch.randint(0, height - size + 1, (draws,), device=generator.device, generator=generator)[mine].tolist()
    cols = torch.randint(0, width - size + 1, (draws,), device=generator.device, generator=generator)[mine].tolist()
    windows = [(slice(None), slice(r, r + size), slice(c, c + size)) for r, c in zip(rows, cols)]
    return tuple(torch.stack([x[i][w] for i, w in enumerate(windows)]) for x in (wf, gt))


@contextmanager
def stop_on_signals(trainer: "Trainer"):
    """While training, SIGINT and SIGTERM ask the loop to checkpoint and stop after the current step."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        trainer.request_stop(signal.Signals(signum).name)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    """One training run in its run folder.

    The trainer writes ``last.pt`` (every epoch and on interruption) and ``best.pt`` (best validation
    score); :class:`~experiments.training.run_folder.RunFolder` writes the rest (config, metrics,
    figures, report). ``Trainer(config, run_dir, resume=True)`` continues a stopped run exactly where it
    stopped: same data order, same random draws, same final weights. It ignores ``config`` and continues
    with the checkpoint's, changed by the edits of the folder's config.json that can take effect
    (:func:`~experiments.training.resume.reconcile`).
    """

    def __init__(self, config: RunConfig | None, run_dir: str | Path, resume: bool = False, progress: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.progress = progress
        if resume:
            resumption = reconcile(self.run_dir)
            config = resumption.config
        elif (self.run_dir / LAST).exists():
            raise FileExistsError(
                f"{self.run_dir} already holds a run ({LAST}); continue it with --resume {self.run_dir}, "
                "or choose another --run-dir"
            )
        check_consistency(config)
        self.config = config
        self.folder = RunFolder(self.run_dir, config)
        device = pick_device(config.train.device)
        self.place = init_distributed(device.type)
        if config.train.batch_size % self.place.world_size:
            raise UsageError(
                f"train.batch_size {config.train.batch_size} is the global batch and must split evenly "
                f"over {self.place.world_size} processes; choose a multiple of {self.place.world_size}"
            )
        self.device = rank_device(device, self.place)
        seed_everything(config.train.seed)
        self.precision = resolve_precision(config.train.precision, self.device)
        if self.device.type == "cuda":
            set_tf32(config.train.tf32)
        # a residual run's regression part: read from --train.base once, then carried by the run's checkpoints
        self.base, base_weights = None, None
        if config.train.objective == "residual":
            self.base, base_weights = (resumption.checkpoint.base, None) if resume else read_base(config)
        self.model = build_model(config, self.device, None if self.base is None else base_config(self.base))
        if base_weights is not None:
            self.model.base.load_state_dict(base_weights)
        if config.train.init is not None and not resume:
            load_initial_weights(self.model, config)
        self.diffusion = build_diffusion(config, self.device)
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=config.train.lr, weight_decay=config.train.weight_decay
        )
        self.ema = EMA(self.model, config.train.ema_decay) if config.train.ema_decay is not None else None
        # self.model holds the weights; self.network is what runs them (NHWC, DDP, compiled).
        network = optimize_for_speed(self.model, channels_last=config.train.channels_last)
        if self.place.enabled:
            network = DistributedDataParallel(network, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.network = torch.compile(network) if config.train.compile else network
        # Time steps and noise: one stream, the same on every rank (see _draw).
        self.generator = torch.Generator(device=self.device).manual_seed(config.train.seed)
        self._load_data()
        self.epoch = 0
        self.batch_in_epoch = 0
        self.global_step = 0
        self.epoch_loss_sum = 0.0
        self.epoch_seconds = 0.0
        self.history: list[EpochRecord] = []
        self.best_score: float | None = None
        self._stop_reason: str | None = None
        # (epoch, global step) of the last.pt this run has on disk, for messages that must be true.
        self._last_saved: tuple[int, int] | None = None
        if resume:
            for name in (LAST, BEST):
                remove_stale_temporaries(self.run_dir / name)
            self._restore(resumption.checkpoint)
            self._last_saved = (self.epoch, self.global_step)
            if self.place.is_main:
                resumption.record()
        elif self.place.is_main:
            self.folder.save_config()

    # ----------------------------------------------------------------- data
    def _load_data(self) -> None:
        data, seed = self.config.data, self.config.train.seed
        check_levels(data.root, self.config.eval.levels)  # before the first split is read and cached
        self.grid = data_grid(data.root, data.task)
        self.train_set = read_pairs(data, "train", augment=data.augment, seed=seed)
        self.train_size = len(self.train_set) if data.max_train_pairs is None else min(data.max_train_pairs, len(self.train_set))
        size_multiple = self.config.network.size_multiple
        if data.crop is not None and (data.crop > min(self.train_set.image_shape) or data.crop % size_multiple):
            raise UsageError(
                f"data.crop {data.crop} must be at most the training image size {self.train_set.image_shape} "
                f"and a multiple of {size_multiple} (the network's size_multiple); change --crop, or --crop none "
                "for whole images"
            )
        self.test_sets = {
            level: read_pairs(data, "test", level=level) for level in self.config.eval.levels
        }
        # What every result is read against: the bicubic input's scores on the images this run evaluates.
        self.baselines: dict[str, Scores] = {
            level: bicubic_baseline(dataset, self.config.eval.max_test_images) for level, dataset in self.test_sets.items()
        } if self.place.is_main and self.config.train.conditional else {}
        try:
            self.validation_set = read_pairs(data, "validate")
        except DatasetError as error:
            self.validation_set = None
            if self.place.is_main:
                print(f"note: no validation split ({error}); best.pt will not be written")

    def _loader(self) -> DataLoader:
        batches = EpochBatches(
            self.train_size,
            self.config.train.batch_size // self.place.world_size,
            self.config.train.seed,
            self.epoch,
            self.place.rank,
            self.place.world_size,
            start_batch=self.batch_in_epoch,
        )
        self.train_set.set_epoch(self.epoch)
        workers = self.config.data.num_workers
        return DataLoader(
            self.train_set,
            sampler=batches,
            batch_size=None,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    # --------------------------------------------------------------- control
    def request_stop(self, reason: str) -> None:
        """Checkpoint and stop after the current step or sampling step (what SIGINT / SIGTERM do)."""
        self._stop_reason = reason

    def _interrupted(self) -> TrainingInterrupted:
        return TrainingInterrupted(
            f"stopped by {self._stop_reason} at epoch {self.epoch + 1}, step {self.batch_in_epoch}; "
            f"continue with: python -m experiments.train --resume {self.run_dir}"
        )

    def _diverged(self, what: str) -> TrainingDiverged:
        """The error for non-finite numbers, saying truthfully what is on disk and how to go on."""
        last = self.run_dir / LAST
        if self._last_saved is None:
            where = (
                f"no checkpoint was written before it ({last} does not exist), so there is nothing to resume: "
                "start a new run with a lower --train.lr, or check the data for extreme values"
            )
        else:
            epoch, step = self._last_saved
            where = (
                f"{last} holds the last good state (finite weights after {epoch} epoch(s), step {step}). Lower "
                f"train.lr in {self.run_dir / CONFIG_FILE} or check the data for extreme values, then continue "
                f"with: python -m experiments.train --resume {self.run_dir}"
            )
        return TrainingDiverged(f"{what}; {where}")

    def fit(self, on_step: Callable[["Trainer"], None] | None = None) -> list[EpochRecord]:
        """Train until ``train.epochs``; returns the per-epoch history.

        Raises:
            TrainingInterrupted: after writing ``last.pt``, when a stop was requested.
            TrainingDiverged: when the loss is not finite (``last.pt`` stays the last good one).
        """
        if self.place.is_main and self.epoch == 0 and self.batch_in_epoch == 0:
            _, target = self.train_set.get_batch([0])
            self.folder.write_introductory_figures(target.to(self.device, self.diffusion.dtype), self.diffusion)
        try:
            with stop_on_signals(self):
                while self.epoch < self.config.train.epochs:
                    self._train_epoch(on_step)
                    self._end_epoch()
        finally:
            self.folder.close()  # event files complete also when the run stops or fails
        if self.place.is_main:
            self.folder.write_report(self.history, self.baselines, self.device)
        return self.history

    def _train_epoch(self, on_step) -> None:
        loader = self._loader()
        config = self.config.train
        self.network.train()
        bar = tqdm(
            total=len(loader.sampler) + self.batch_in_epoch,
            initial=self.batch_in_epoch,
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            disable=not (self.progress and self.place.is_main),
        )
        started = time.perf_counter()
        pending, pending_steps = None, 0  # loss summed on the device since the last read
        for wf, gt in loader:
            wf, gt = wf.to(self.device, non_blocking=True), gt.to(self.device, non_blocking=True)
            wf, gt, t, noise = self._draw(wf, gt)
            with autocast(self.device, self.precision):
                if config.objective == "regression":
                    loss = self.diffusion.regression_loss(self.network, gt, wf, config.loss)
                elif config.objective == "residual":
                    base = self.model.base_output(wf)
                    loss = self.diffusion.training_loss(
                        self.network, residual_of(gt, base), refiner_condition(wf, base), loss=config.loss, t=t,
                        noise=noise, weighting=config.loss_weighting, snr_gamma=config.min_snr_gamma,
                    )
                else:
                    loss = self.diffusion.training_loss(
                        self.network, gt, wf if config.conditional else None, loss=config.loss, t=t, noise=noise,
                        weighting=config.loss_weighting, snr_gamma=config.min_snr_gamma,
                    )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.batch_in_epoch += 1
            self.global_step += 1
            if self.ema is not None:
                self.ema.update(self.model, self.global_step)
            bar.update()
            pending = loss.detach().double() if pending is None else pending + loss.detach()
            pending_steps += 1
            at_sync = pending_steps == LOSS_READ_EVERY
            if at_sync:
                self._read_loss(pending, pending_steps, bar)
                pending, pending_steps = None, 0
            if on_step is not None:
                on_step(self)
            if self._stop_requested(at_sync):
                self._read_loss(pending, pending_steps, bar)
                self.epoch_seconds += time.perf_counter() - started
                bar.close()
                self._save(LAST)
                raise self._interrupted()
        self._read_loss(pending, pending_steps, bar)
        self.epoch_seconds += time.perf_counter() - started
        bar.close()

    def _read_loss(self, pending: torch.Tensor | None, steps: int, bar: tqdm) -> None:
        """Bring the losses of the last ``steps`` steps to the host, and stop if one was not finite.

        Reading a value waits for the device, so it happens every ``LOSS_READ_EVERY`` steps, not every
        step; no checkpoint is written between a NaN and this check.
        """
        if pending is None:
            return
        value = pending.item()
        if not math.isfinite(value):
            raise self._diverged(
                f"the training loss became {value} within the {steps} steps up to epoch {self.epoch + 1}, "
                f"step {self.batch_in_epoch}"
            )
        self.epoch_loss_sum += value
        bar.set_postfix(loss=f"{value / steps:.4f}")

    def _draw(self, wf: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crop (``data.crop``), time steps and noise of this rank's images, cut from draws for the
        whole global batch.

        Every rank draws the same global batch's worth from the same generator, so a run on N
        processes sees exactly the draws of a single-process run with the same global batch.

        Returns:
            ``(wf, gt, t, noise)`` for this rank's share.
        """
        share, world = gt.shape[0], self.place.world_size
        mine = slice(self.place.rank * share, (self.place.rank + 1) * share)
        crop = self.config.data.crop
        if crop is not None:
            wf, gt = random_crops(wf, gt, crop, self.generator, share * world, mine)
        t = torch.randint(0, self.diffusion.steps, (share * world,), device=self.device, generator=self.generator)
        noise = torch.randn((share * world, *gt.shape[1:]), device=self.device, generator=self.generator, dtype=gt.dtype)
        return wf, gt, t[mine], noise[mine]

    def _stop_requested(self, at_sync: bool) -> bool:
        """Whether a stop was asked for. Under DDP all ranks must stop at the same step, so they
        agree (an all-reduce, which waits for the devices) only when the loss is read anyway."""
        flag = self._stop_reason is not None
        if not self.place.enabled:
            return flag
        if not at_sync:
            return False
        tensor = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(tensor)
        if tensor.item() > 0 and self._stop_reason is None:
            self._stop_reason = "another rank"
        return tensor.item() > 0

    def _end_epoch(self) -> None:
        record = EpochRecord(self.epoch + 1, self.epoch_loss_sum / max(self.batch_in_epoch, 1), self.epoch_seconds)
        if self.place.enabled:
            # Mean over ranks, as each saw its own share of the global batches.
            tensor = torch.tensor([record.loss], dtype=torch.float64, device=self.device)
            dist.all_reduce(tensor)
            record.loss = tensor.item() / self.place.world_size
        if self.place.is_main:
            # Listing 21's per-epoch line.
            print(f"Epoch [{record.epoch}/{self.config.train.epochs}] loss {record.loss:.6f}, time {record.seconds:.1f} s")
        evaluate_now = (self.epoch + 1) % self.config.eval.every == 0 or self.epoch + 1 == self.config.train.epochs
        if evaluate_now:
            try:
                record.scores = self._evaluate_epoch()
            except EvaluationStopped:
                # The epoch's training is complete; a resumed run repeats only this evaluation.
                self._save(LAST)
                raise self._interrupted() from None
        self.history.append(record)
        self.epoch += 1
        self.batch_in_epoch = 0
        self.epoch_loss_sum = 0.0
        self.epoch_seconds = 0.0
        if self.place.is_main:
            self._save(LAST)
            self.folder.write_metrics(self.history, self.baselines)
            if evaluate_now:
                self._maybe_save_best(record)

    # ------------------------------------------------------------ evaluation
    @property
    def sampling_model(self) -> nn.Module:
        """What evaluation samples with: the EMA weights when kept, else the trained ones."""
        return self.ema.model if self.ema is not None else self.model

    def _evaluate(self, dataset, max_images, description) -> Evaluation | None:
        with autocast(self.device, self.precision):
            return evaluate(
                self.sampling_model,
                self.diffusion,
                dataset,
                self.config.sampling,
                self.config.eval,
                max_images=max_images,
                conditional=self.config.train.conditional,
                place=self.place,
                progress=self.progress,
                description=description,
                # Ranks of a DDP run could not abandon an evaluation together; they finish it.
                should_stop=None if self.place.enabled else lambda: self._stop_reason is not None,
            )

    def _evaluate_epoch(self) -> dict[str, Scores]:
        """Test scores for each level (and validation scores when there is a split) for this epoch."""
        scores: dict[str, Scores] = {}
        epoch = self.epoch + 1
        for level, dataset in self.test_sets.items():
            result = self._evaluate(dataset, self.config.eval.max_test_images, f"test {level}")
            if result is None:
                continue
            if self.config.train.conditional:
                scores[level] = result.metrics
            self.folder.write_samples(result, level, epoch)
        if self.validation_set is not None and self.config.train.conditional and self.config.eval.validation_images > 0:
            result = self._evaluate(self.validation_set, self.config.eval.validation_images, VALIDATION)
            if result is not None:
                scores[VALIDATION] = result.metrics
        if self.place.is_main:
            for split, metric in sorted((split, metric) for split in scores for metric in ("psnr", "ssim")):
                print(f"  {split}/{metric} {scores[split][metric]:.4f}")
        return scores

    def _maybe_save_best(self, record: EpochRecord) -> None:
        metric = self.config.eval.best_metric
        if VALIDATION not in record.scores:
            return
        score = record.scores[VALIDATION][metric]
        if not math.isfinite(score):
            print(f"note: validation {self.config.eval.best_metric} is {score}; best.pt is not updated")
            return
        sign = 1.0 if HIGHER_IS_BETTER[self.config.eval.best_metric] else -1.0
        if self.best_score is None or sign * score > sign * self.best_score:
            self.best_score = score
            self._save(BEST)

    # ----------------------------------------------------------- checkpoints
    def _save(self, name: str) -> None:
        """Write checkpoint ``name``; the writer refuses non-finite weights, which ends the run (TrainingDiverged)."""
        if not self.place.is_main:
            return
        try:
            self._write_checkpoint(name)
        except NonFiniteCheckpoint as error:
            raise self._diverged(f"the weights became NaN or inf by training step {self.global_step} ({error})") from error
        if name == LAST:
            self._last_saved = (self.epoch, self.global_step)

    def _write_checkpoint(self, name: str) -> None:
        progress = Progress(self.optimizer.state_dict(), self.epoch, self.batch_in_epoch, self.global_step,
                            self.epoch_loss_sum, self.epoch_seconds, rng_state(self.generator),
                            [record.to_json() for record in self.history], self.best_score)
        weights = {"model": self.model.state_dict(), **({"ema": self.ema.state_dict()} if self.ema is not None else {})}
        # The image side that tiled prediction and export take by default.
        image_size = [int(side) for side in self.train_set.image_shape]
        write_checkpoint(Checkpoint(self.config.to_dict(), weights, image_size, self.grid.to_json(), progress,
                                    base=self.base), self.run_dir / name)

    def _restore(self, checkpoint: Checkpoint) -> None:
        self.model.load_state_dict(checkpoint.weights["model"])
        if self.ema is not None:
            self.ema.load_state_dict(checkpoint.weights["ema"])
        progress = checkpoint.progress
        self.optimizer.load_state_dict(progress.optimizer)
        # The saved state brings back the saved learning rate and weight decay; the config's may be new.
        for group in self.optimizer.param_groups:
            group.update(lr=self.config.train.lr, weight_decay=self.config.train.weight_decay)
        self.epoch, self.batch_in_epoch, self.global_step = progress.epoch, progress.batch_in_epoch, progress.global_step
        self.epoch_loss_sum, self.epoch_seconds, self.best_score = (progress.epoch_loss_sum, progress.epoch_seconds,
                                                                    progress.best_score)
        self.history = [EpochRecord.from_json(entry) for entry in progress.history]
        restore_rng_state(progress.rng, self.generator)
