"""The named starting configurations of a run (``--preset``): the tutorial's two runs, its L1 run with the
speed options, and the CPU-sized demo, regression baselines and native-task model on the real-structure set."""

from __future__ import annotations

from dataclasses import replace

from ddpm.settings import UsageError
from experiments.config.schema import DataConfig, DiffusionConfig, EvalConfig, RunConfig, SamplingConfig, TrainConfig
from unet import UNetConfig

TUTORIAL_MSE = RunConfig(name="mse", eval=EvalConfig(paper_comparison="mse"))
TUTORIAL_L1 = RunConfig(name="l1", train=TrainConfig(loss="l1"), eval=EvalConfig(paper_comparison="l1"))

# Laptop scale, on the real-structure set (`make real-data`; `--data.root data/synthetic` trains on the
# look-alike of `make synthetic-data`): a narrower network, 200 diffusion steps, L1 (the tutorial's
# better run) at a higher learning rate, training on 64 x 64 windows with EMA weights, and evaluation
# by 10-step DDIM (the step count that scored best on the held-out cells, docs/benchmarks.md), 8 epochs.
DEMO = RunConfig(
    name="demo",
    diffusion=DiffusionConfig(steps=200, beta_start=1e-4, beta_end=0.1),
    network=UNetConfig(channels=(16, 32, 64), base_channels=(64, 64), time_encoding_dim=64),
    data=DataConfig(root="data/biosr-sim", crop=64),
    train=TrainConfig(epochs=8, batch_size=16, lr=1e-3, loss="l1", ema_decay=0.995),
    # Both ends of the noise range: level_01 (barely visible) and level_09 (clean).
    eval=EvalConfig(levels=("level_01", "level_09"), batch_size=32, max_test_images=32, validation_images=16, every=4),
    sampling=SamplingConfig(sampler="ddim", sampling_steps=10),
)

# The tutorial's L1 run with what issue-tested speed-ups offer: EMA weights, bf16 and TF32 on a GPU,
# and evaluation by deterministic DDIM with 50 steps instead of 2,000 ancestral ones.
L1_FAST = replace(
    TUTORIAL_L1,
    name="l1-fast",
    train=replace(TUTORIAL_L1.train, ema_decay=0.999, precision="auto", tf32=True),
    # No paper row: the paper sampled with all 2,000 steps.
    eval=replace(TUTORIAL_L1.eval, paper_comparison=None),
    sampling=SamplingConfig(sampler="ddim", sampling_steps=50),
)

# The regression baseline beside the demo (CARE-style): the demo's network and data, trained by L1 to map
# the input straight to the target, sampled by one network evaluation.
REGRESSION = replace(
    DEMO, name="regression", train=replace(DEMO.train, objective="regression"), sampling=SamplingConfig(sampler="regression")
)

# The probabilistic regression baseline (probabilistic CARE, Weigert et al. 2018): the regression baseline's
# network with a second output channel, the log of a per-pixel Laplace scale, trained by the Laplace
# negative log-likelihood; its std map is the model's own prediction of its error, from one evaluation.
PROBABILISTIC = replace(
    REGRESSION, name="probabilistic", network=replace(REGRESSION.network, out_channels=2),
    train=replace(REGRESSION.train, loss="laplace"),
)

# Predict and refine (ddpm.residual): the demo's network, given the input and the shipped regression's output,
# learns the diffusion of what that regression leaves (the target minus its output) on the data the regression
# was trained on; sampling adds the residual back.
RESIDUAL = replace(
    DEMO, name="residual", network=replace(DEMO.network, in_channels=3),
    data=replace(DEMO.data, root="data/biosr-sim-tutorial-randomized"),
    train=replace(DEMO.train, objective="residual", base="pretrained/regression/model.pt"),
)

# BioSR's own task on the real-structure set (`make real-data` writes data/biosr-sim-native): the demo's
# recipe on 128 x 128 SIM-grid targets of 64 x 64 camera-grid inputs, with a network 4x as wide in its
# bottleneck and twice as wide elsewhere (952,705 parameters), trained for 60 epochs: the model of
# pretrained/native (its training time: pretrained/native/MODEL_CARD.md).
NATIVE = replace(
    DEMO, name="native", data=replace(DEMO.data, root="data/biosr-sim-native", task="native"),
    network=replace(DEMO.network, channels=(32, 64, 128), base_channels=(128, 128)),
    train=replace(DEMO.train, epochs=60),
    eval=replace(DEMO.eval, every=10),
)

PRESETS: dict[str, RunConfig] = {
    "mse": TUTORIAL_MSE, "l1": TUTORIAL_L1, "l1-fast": L1_FAST, "demo": DEMO, "regression": REGRESSION,
    "probabilistic": PROBABILISTIC, "residual": RESIDUAL, "native": NATIVE,
}  # fmt: skip


def preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
