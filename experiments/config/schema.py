"""The run configuration's schema: one frozen dataclass per section, each value checked once where it is
built, and the whole run (:class:`RunConfig`) to and from ``config.json``.

Presets are in :mod:`experiments.config.presets`, the command-line flags in
:mod:`experiments.config.command_line`, and what older files hold is read by
:mod:`experiments.config.migration`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from ddpm.diffusion import LossKind, LossWeighting, Variance
from ddpm.samplers import SAMPLERS, Sampler, SamplerName, make_sampler, sampler_options
from ddpm.schedule import ScheduleKind
from ddpm.settings import SEEDS, UsageError, UserError, bounded, check_choice, check_ranges, within
from experiments.config.migration import upgrade
from experiments.data.layout import DatasetError, check_level_name
from experiments.data.normalization import Normalization
from experiments.data.task import TASKS, Task, task_enlargement
from experiments.integrity.json_files import write_json
from experiments.records import MetricName, PaperKey
from experiments.runtime import Device, Precision
from unet import NetworkConfig, UNetConfig, network_config_type, network_kind


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule (tutorial Listing 18: T = 2,000, beta 1e-6 to 0.01, linear)."""

    steps: int = bounded(2000, 1)
    beta_start: float = bounded(1e-6, 0.0, 1.0, low_open=True, high_open=True)
    beta_end: float = bounded(0.01, 0.0, 1.0, low_open=True, high_open=True)
    schedule: ScheduleKind = "linear"

    def __post_init__(self) -> None:
        check_ranges(self, "--diffusion.")
        if self.schedule == "linear" and self.beta_start > self.beta_end:
            raise UsageError(
                f"--diffusion.beta_start ({self.beta_start:g}) must not exceed --diffusion.beta_end ({self.beta_end:g})"
            )


@dataclass(frozen=True)
class DataConfig:
    """Where the BioSR-layout data lives and how it is read (tutorial Section 3)."""

    root: str = "biosr_dataset"
    # "tutorial": input and target on the camera grid; "native": camera grid in, SIM grid (2x) out
    # (experiments.data.task). Recorded in every checkpoint: prediction and export follow it.
    task: Task = "tutorial"
    normalization: Normalization = "tutorial"
    # The BioSR training set already holds flipped and rotated copies: the tutorial adds none.
    augment: bool = False
    # Loader worker processes: 0 reads the memory-mapped cache in the main process, which is faster
    # than workers that copy every batch (python -m experiments.bench.data; docs/benchmarks.md).
    num_workers: int = bounded(0, 0)
    # Use only the first N training pairs (None: all); for quick experiments.
    max_train_pairs: int | None = bounded(None, 1)
    # Train on random square windows of this size (None: whole images, as the tutorial); the
    # network is fully convolutional, so evaluation still runs on whole images.
    crop: int | None = bounded(None, 1)

    def __post_init__(self) -> None:
        check_ranges(self, "--data.")
        check_choice("--data.task", self.task, TASKS)

    @property
    def enlargement(self) -> int:
        """The output's side over the input's (:func:`experiments.data.task.task_enlargement`)."""
        return task_enlargement(self.task)



Objective = Literal["diffusion", "regression", "residual"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
# "files": the run folder's CSV / JSON records and PNG figures; "tensorboard": those and TensorBoard event
# files beside them (experiments.training.tensorboard_log, the [tensorboard] extra).
TrainingLog = Literal["files", "tensorboard"]
TRAINING_LOGS: tuple[str, ...] = get_args(TrainingLog)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (tutorial Sections 4.8-4.9: batch 64, AdamW lr 1e-4, 60 epochs)."""

    epochs: int = bounded(60, 1)
    # The global batch: with DDP each of N processes takes batch_size / N of it.
    batch_size: int = bounded(64, 1)
    lr: float = bounded(1e-4, 0.0, low_open=True)
    # torch.optim.AdamW's default, which the tutorial leaves untouched.
    weight_decay: float = bounded(0.01, 0.0)
    loss: LossKind = "mse"
    # "diffusion": the DDPM (Eq. 12-13); "regression": the baseline, the same network mapping the input
    # straight to the target in one evaluation (ddpm.Diffusion.regression_loss; sampled by "regression");
    # "residual": predict and refine (ddpm.residual), a diffusion of the target minus the output of the frozen
    # regression checkpoint ``base``, whose network and weights the run's checkpoints then hold.
    objective: Objective = "diffusion"
    base: str | None = None
    # "min_snr": Hang et al. (2023) weights of the diffusion loss, capped at min_snr_gamma (their 5).
    loss_weighting: LossWeighting = "none"
    min_snr_gamma: float = bounded(5.0, 0.0, low_open=True)
    # False trains the tutorial's Section 5 generator: no low-resolution condition, one input channel.
    conditional: bool = True
    seed: int = within(0, SEEDS)
    device: Device = "auto"
    # Beyond the tutorial (all off in its presets except the memory format, which changes no result):
    # an exponential moving average of the weights, used for evaluation (e.g. 0.999; None: off);
    ema_decay: float | None = bounded(None, 0.0, 1.0, low_open=True, high_open=True)
    # bf16 autocast for the network ("auto": bf16 on CUDA, fp32 elsewhere); TF32 on recent GPUs;
    precision: Precision = "fp32"
    tf32: bool = False
    # NHWC convolutions and torch.compile (their measured speed: docs/benchmarks.md).
    channels_last: bool = True
    compile: bool = False
    log: TrainingLog = "files"
    # Fine-tuning: start from this checkpoint's weights (experiments.training.initial_weights); None: random.
    init: str | None = None

    @property
    def predicts_std(self) -> bool:
        """Whether the network also predicts its error (loss ``laplace``: a probabilistic regression)."""
        return self.loss == "laplace"

    def __post_init__(self) -> None:
        check_ranges(self, "--train.")


@dataclass(frozen=True)
class SamplingConfig:
    """How samples are drawn, in evaluation and prediction (tutorial Listing 24: Eq. 11 on all T steps).

    ``sampling_steps`` is the number of network evaluations of one sample (DDIM only; None: 50, or every
    trained step when T is smaller); ``diffusion.steps`` is T, the trained steps. :meth:`resolved` makes
    the count explicit against T.
    """

    # A key of ddpm.SAMPLERS. "simple": Eq. 11 (the tutorial's); "x0": Appendix B; "ddim": Song et al. (2021)
    # on a subset of steps; "dpmpp2m": DPM-Solver++(2M) (Lu et al. 2022), second order on fewer steps.
    sampler: SamplerName = "simple"
    # None: each sampler's own (beta for Eq. 11, beta_tilde for Appendix B).
    variance: Variance | None = None
    sampling_steps: int | None = bounded(None, 1)
    # DDIM only: 0 deterministic, up to 1 for DDPM-like noise.
    eta: float = bounded(0.0, 0.0, 1.0)
    # Samples drawn per input; their mean is scored and their standard deviation is the uncertainty.
    samples: int = bounded(1, 1)

    def __post_init__(self) -> None:
        check_ranges(self, "--sampling.")
        check_choice("--sampling.sampler", self.sampler, tuple(SAMPLERS))

    def build(self) -> Sampler:
        """The sampler ``self.sampler`` names, with those of these options it takes."""
        return make_sampler(self.sampler, variance=self.variance, sampling_steps=self.sampling_steps, eta=self.eta)

    def resolved(self, diffusion_steps: int) -> "SamplingConfig":
        """What runs on a model of T = ``diffusion_steps``: the options the sampler does not take reset (so
        that what is recorded is what runs) and the number of network evaluations made explicit.

        Raises :class:`~ddpm.settings.UsageError` naming the flags to change when the sampler cannot run
        on T steps.
        """
        taken = self.sampler_options()
        try:
            chain = self.build().chain(diffusion_steps)
        except ValueError as error:
            flags = " or ".join(SAMPLER_FLAGS[name] for name in taken)
            raise UsageError(f"{error}; change {flags} (the model has {diffusion_steps} trained steps)") from None
        return replace(
            self,
            variance=self.variance if "variance" in taken else None,
            sampling_steps=len(chain) if "sampling_steps" in taken else None,
            eta=self.eta if "eta" in taken else 0.0,
        )

    def sampler_options(self) -> tuple[str, ...]:
        """The fields of this config that the chosen sampler takes."""
        return tuple(name for name in sampler_options(self.sampler) if name in SAMPLER_FLAGS)

    def network_evaluations(self, diffusion_steps: int) -> int:
        """Network evaluations of one sample on a model of T = ``diffusion_steps``."""
        return len(self.build().chain(diffusion_steps))


# The sampler options a SamplingConfig sets, and the command-line flag of each (the same in every command).
SAMPLER_FLAGS = {"variance": "--variance", "sampling_steps": "--sampling-steps", "eta": "--eta"}


@dataclass(frozen=True)
class EvalConfig:
    """When and on what a run is evaluated (tutorial Listing 24: level_09 after every epoch); how its
    samples are drawn is :class:`SamplingConfig`."""

    levels: tuple[str, ...] = ("level_09",)
    batch_size: int = bounded(64, 1)
    every: int = bounded(1, 1)
    # Test images per level (None: all 150), and validation images for choosing the best checkpoint
    # (0: no validation, no best.pt; sampling them costs as much per image as the test set).
    max_test_images: int | None = bounded(None, 1)
    validation_images: int = bounded(64, 0)
    best_metric: MetricName = "psnr"
    # The paper's row (Table 1, MSE or L1 loss) beside this run's in the final table; None: no such row.
    paper_comparison: PaperKey | None = None
    figure_images: int = bounded(4, 1)
    seed: int = within(1234, SEEDS)

    def __post_init__(self) -> None:
        check_ranges(self, "--eval.")
        if not self.levels:
            raise UsageError("--eval.levels names no test level; give at least one, e.g. --eval.levels level_09")
        for level in self.levels:
            try:
                check_level_name(level)
            except DatasetError as error:
                raise UsageError(f"--eval.levels: {error}") from None


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; written to ``config.json`` in its run folder."""

    name: str = "mse"
    out_dir: str = "runs"
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    network: NetworkConfig = field(default_factory=UNetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def to_dict(self) -> dict[str, Any]:
        # "kind" names the registered network whose fields follow.
        return {**asdict(self), "network": {"kind": network_kind(self.network), **asdict(self.network)}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        if not isinstance(data, dict):
            raise UsageError(f"expected a JSON object of config sections, got {type(data).__name__}")
        known, sections = {f.name for f in fields(cls)}, section_types()
        data = upgrade(data)
        unknown = set(data) - known
        if unknown:
            raise UsageError(f"unknown config entries {sorted(unknown)}; expected some of {sorted(known)}")
        built = {k: _build_section(sections[k], v) if k in sections else v for k, v in data.items() if k != "network"}
        return cls(**built, **({"network": _build_network(data["network"])} if "network" in data else {}))

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """Read a ``config.json``; raises :class:`ConfigFileError` naming the file when it cannot be used."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise ConfigFileError(f"{path}: cannot be read ({error.strerror or error}); is this a run folder?") from error
        try:
            return cls.from_dict(json.loads(text))
        except (ValueError, TypeError) as error:  # json.JSONDecodeError is a ValueError
            raise ConfigFileError(
                f"{path} is not a valid run configuration ({error}); repair or restore it (every checkpoint "
                "holds a copy under its 'config' key), or start a new run"
            ) from error


class ConfigFileError(UserError):
    """A ``config.json`` cannot be read or does not describe a valid run; the message names the file."""


def section_types() -> dict[str, type]:
    return {
        "diffusion": DiffusionConfig,
        "data": DataConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
        "sampling": SamplingConfig,
    }


def _build_network(values: dict[str, Any]) -> NetworkConfig:
    values = dict(values)
    return _build_section(network_config_type(values.pop("kind")), values)


def _build_section(section_type: type, values: dict[str, Any]):
    if not isinstance(values, dict):
        raise UsageError(f"the {section_type.__name__} section must be a JSON object, got {type(values).__name__}")
    known = {f.name for f in fields(section_type)}
    unknown = set(values) - known
    if unknown:
        raise UsageError(f"unknown {section_type.__name__} fields {sorted(unknown)}; expected some of {sorted(known)}")
    return section_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def output_channels(config: RunConfig) -> int:
    """The channels the network gives: the image, and a probabilistic regression's log-scale after it (a registered
    network without an ``out_channels`` field gives the image alone)."""
    return getattr(config.network, "out_channels", 1)


def check_consistency(config: RunConfig) -> None:
    """Refuse combinations of fields that would only fail later, mid-run, naming the flags to change."""
    regression = config.train.objective == "regression"
    if regression != (config.sampling.sampler == "regression"):
        raise UsageError(
            f"--train.objective {config.train.objective} is sampled by "
            f"{'the regression sampler' if regression else 'a diffusion sampler'}, not --sampler "
            f"{config.sampling.sampler}; use --preset regression, or set both"
        )
    if regression and (not config.train.conditional or config.train.loss_weighting != "none"):
        raise UsageError("--train.objective regression maps an input to its target: it needs --train.conditional "
                         "true and --train.loss_weighting none")
    residual = config.train.objective == "residual"
    if residual != (config.train.base is not None):
        raise UsageError("--train.objective residual refines a regression checkpoint, given by --train.base FILE"
                         if residual else f"--train.base is the regression that --train.objective residual refines; "
                         f"this run's objective is {config.train.objective} (drop --train.base, or use --preset residual)")
    if residual and (not config.train.conditional or config.train.init is not None):
        raise UsageError("--train.objective residual refines the regression's output of an input: it needs "
                         "--train.conditional true, and starts from --train.base, not --train.init")
    probabilistic = config.train.predicts_std
    if probabilistic and not regression:
        raise UsageError("--train.loss laplace is the regression baseline's probabilistic form: it needs "
                         "--train.objective regression (--preset probabilistic sets both)")
    outputs = output_channels(config)
    if outputs != (2 if probabilistic else 1):
        raise UsageError(f"--network.out_channels {outputs}: " + (
            "--train.loss laplace predicts an image and its scale, 2 channels; set --network.out_channels 2"
            if probabilistic else "the network predicts one image channel; set --network.out_channels 1"))
    try:
        config.sampling.resolved(config.diffusion.steps)
    except UsageError as error:
        raise UsageError(f"{error}, or --diffusion.steps") from None
