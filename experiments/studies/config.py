"""What a study runs: arms (a preset and flags of ``experiments.train``) x seeds, and how each run is evaluated.

Two presets:

* ``cpu``: the tutorial's question at the scale of a 2-core CPU, on the real-structure set (``make
  real-data``: windows of real BioSR SIM cells, test cells 003 and 052 held out): the demo network
  trained with MSE, with L1, with L1 and min-SNR-5 weighting, and the regression baseline (L1, one
  network evaluation), 3 seeds each, on 2,048 training pairs for 12 epochs; scored on the first 16
  test images of all nine levels (one sample; 10-step DDIM for the diffusion arms) and on the first 8
  as the mean of 4 samples. About 50 minutes on this project's 2-core machine (``timings.json``).
* ``full``: the tutorial's experiment itself for a GPU: presets ``mse`` and ``l1`` unchanged, 3 seeds,
  on the real BioSR data (``make data``), every test image of all nine levels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ddpm.settings import UsageError, bounded, check_ranges
from experiments.config.presets import preset


@dataclass(frozen=True)
class Arm:
    """One configuration of the study: ``experiments.train --preset <preset> <flags>``; a residual arm also names
    the arm whose run of the same seed it refines (``base``: ``--train.base`` that run's checkpoint)."""

    name: str
    preset: str
    flags: tuple[str, ...] = ()
    base: str | None = None

    @property
    def regression(self) -> bool:
        """Whether the arm's preset is the regression baseline (deterministic: no mean of samples)."""
        return preset(self.preset).train.objective == "regression"


@dataclass(frozen=True)
class StudyConfig:
    """The grid and its evaluation; ``train_flags`` apply to every arm (data, epochs, evaluation)."""

    name: str
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    train_flags: tuple[str, ...]
    images: int | None = bounded(16, 1)  # test images per level scored with one sample (None: all)
    mean_samples: int = bounded(4, 0)  # N of the "mean of N samples" evaluation (0: none)
    mean_images: int | None = bounded(8, 1)  # test images per level for it
    paired: tuple[str, str] = ("l1", "mse")  # the arms whose per-seed difference (first - second) is reported

    def __post_init__(self) -> None:
        check_ranges(self, "study ")
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names) or not names:
            raise UsageError(f"study arms need distinct names, got {names}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UsageError(f"study seeds must be distinct, got {self.seeds}")
        for index, arm in enumerate(self.arms):
            preset(arm.preset)  # an unknown preset fails here, before any run
            if (arm.base is not None) != (preset(arm.preset).train.objective == "residual"):
                raise UsageError(f"study arm {arm.name}: a residual preset refines the run of a base arm, and only it "
                                 "takes one (Arm(..., base=NAME))")
            if arm.base is not None and arm.base not in names[:index]:
                raise UsageError(f"study arm {arm.name} refines {arm.base!r}, which is not an arm before it ({names[:index]})")
        missing = [name for name in self.paired if name not in names]
        if missing:
            raise UsageError(f"the paired arms {missing} are not arms of the study ({names})")

    def to_dict(self) -> dict:
        return asdict(self)


CPU = StudyConfig(
    name="cpu",
    arms=(
        Arm("mse", "demo", ("--train.loss", "mse")),
        Arm("l1", "demo"),
        Arm("l1-min-snr", "demo", ("--train.loss_weighting", "min_snr")),
        Arm("regression", "regression"),
    ),
    seeds=(0, 1, 2),
    train_flags=("--data.root", "data/biosr-sim", "--data.max_train_pairs", "2048", "--train.epochs", "12",
                 # the run's own evaluation: one small look at level_09 at the end; the study scores the rest
                 "--eval.levels", "level_09", "--eval.max_test_images", "4", "--eval.validation_images", "0",
                 "--eval.every", "12"),
)

FULL = StudyConfig(
    name="full",
    arms=(Arm("mse", "mse"), Arm("l1", "l1")),
    seeds=(0, 1, 2),
    train_flags=("--data.root", "biosr_dataset"),
    images=None,
    mean_samples=0,
    mean_images=None,
)

# Issue 36's question at CPU scale: does diffusion on the regression's residual give the regression's accuracy
# and samples that are draws from the posterior? Five arms on the cpu study's data and windows, at equal training
# budgets of 12 network epochs: the regression, the probabilistic regression and L1 diffusion train 12 epochs; the
# residual arm refines a regression trained 6 (reported too) for 6 more (its minutes: timings.json). Scored like
# the cpu study, with the mean of 8 samples on the same 16 windows per level as one sample, so that a
# deterministic arm's one output is its mean and residual - regression is paired on the same images.
RESIDUAL = StudyConfig(
    name="residual",
    arms=(
        Arm("regression", "regression"),
        Arm("probabilistic", "probabilistic"),
        Arm("l1", "demo"),
        Arm("regression-6", "regression", ("--train.epochs", "6", "--eval.every", "6")),
        Arm("residual", "residual", ("--train.epochs", "6", "--eval.every", "6"), base="regression-6"),
    ),
    seeds=(0, 1, 2),
    train_flags=CPU.train_flags,
    images=16,
    mean_samples=8,
    mean_images=16,
    paired=("residual", "regression"),
)

STUDIES: dict[str, StudyConfig] = {"cpu": CPU, "full": FULL, "residual": RESIDUAL}
