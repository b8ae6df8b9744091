# Everything runs inside ./.venv, which `make install` creates and keeps up to date.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DATA_DIR ?= ./biosr_dataset
SYNTHETIC_DIR ?= ./data/synthetic
REAL_DIR ?= ./data/biosr-sim
REAL_NATIVE_DIR ?= ./data/biosr-sim-native
REAL_RANDOMIZED_DIR ?= ./data/biosr-sim-randomized
REAL_RANDOMIZED_TUTORIAL_DIR ?= ./data/biosr-sim-tutorial-randomized
GPUS ?= 1
# Extra flags for the command, e.g. ARGS="--epochs 5".
ARGS ?=
# make predict INPUT=my_cells/ [CHECKPOINT=runs/<run>/best.pt] [OUTPUT=results]; the default checkpoint is
# the shipped native-task model (camera grid in, SIM grid out: pretrained/native/MODEL_CARD.md).
CHECKPOINT ?= pretrained/native/model.pt
INPUT ?=
OUTPUT ?= predictions

.PHONY: install test test-fast demo data synthetic-data real-data reproduce-mse reproduce-l1 study study-full bench bench-robustness bench-gpu predict export

install: $(STAMP)

# Re-installs only when the project's metadata changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev,export,tensorboard,zarr,napari]"
	@# napari's canvas needs an X display for OpenGL: the widget's tests start Debian's Xvfb where none is set.
	@command -v Xvfb >/dev/null || ! command -v apt-get >/dev/null || \
		apt-get install -y -qq --no-install-recommends xvfb >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends xvfb >/dev/null) || \
		echo "note: could not install xvfb; the napari widget's tests are skipped without an X display"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# The real BioSR microtubules (about 12 GB), cloned when missing.
data:
	@$(PYTHON) -m experiments.get_data --dest $(DATA_DIR)

# The synthetic look-alike in the same layout (about half a minute).
synthetic-data: install
	@test -d $(SYNTHETIC_DIR)/test_gt || $(PY) -m experiments.make_data --out $(SYNTHETIC_DIR)

# Windows of the nine real BioSR SIM cells shipped in experiments/data/real, degraded to widefield by
# a physical model (about a minute); validation and test cells are held out whole. Four sets: the
# tutorial's task (REAL_DIR), the native task, camera grid in, SIM grid out (REAL_NATIVE_DIR), and each
# task under a degradation drawn per window around BioSR's measured optics (REAL_RANDOMIZED_DIR,
# REAL_RANDOMIZED_TUTORIAL_DIR).
real-data: install
	@test -d $(REAL_DIR)/test_gt || $(PY) -m experiments.make_data --structures biosr-sim --out $(REAL_DIR)
	@test -d $(REAL_NATIVE_DIR)/test_gt || $(PY) -m experiments.make_data --structures biosr-sim --task native --out $(REAL_NATIVE_DIR)
	@test -d $(REAL_RANDOMIZED_DIR)/test_gt || $(PY) -m experiments.make_data --structures biosr-sim --task native --degradation randomized --out $(REAL_RANDOMIZED_DIR)
	@test -d $(REAL_RANDOMIZED_TUTORIAL_DIR)/test_gt || $(PY) -m experiments.make_data --structures biosr-sim --degradation randomized --out $(REAL_RANDOMIZED_TUTORIAL_DIR)

# Launcher: one process, or torchrun with DDP over $(GPUS) GPUs.
ifeq ($(GPUS),1)
TRAIN := $(PY) -m experiments.train
else
TRAIN := $(VENV)/bin/torchrun --standalone --nproc_per_node=$(GPUS) -m experiments.train
endif

reproduce-mse reproduce-l1: reproduce-%: install
	@test -d $(DATA_DIR) || $(MAKE) data DATA_DIR=$(DATA_DIR)
	$(TRAIN) --preset $* --data.root $(DATA_DIR) $(ARGS)

# MSE against L1 (and L1 with min-SNR weighting, and the regression baseline) x 3 seeds on the
# real-structure set, scored on all nine levels in both protocols: studies/cpu/study.md (about 50 min here).
study: install real-data
	$(PY) -m experiments.study --preset cpu $(ARGS)

# The tutorial's experiment itself (presets mse and l1 x 3 seeds, 60 epochs) on the real BioSR data: a GPU's job.
study-full: install
	@test -d biosr_dataset || $(MAKE) data
	$(PY) -m experiments.study --preset full $(ARGS)

demo: install real-data
	$(PY) -m experiments.train --preset demo --data.root $(REAL_DIR) $(ARGS)

predict: install
	@test -n "$(INPUT)" || { echo "usage: make predict INPUT=<tif or folder> [CHECKPOINT=pretrained/native/model.pt] [OUTPUT=predictions] [ARGS=...]; try INPUT=pretrained/example_widefield.ome.tif"; exit 2; }
	$(PY) -m experiments.predict --checkpoint $(CHECKPOINT) --input $(INPUT) --output $(OUTPUT) $(ARGS)

# A BioImage Model Zoo package of CHECKPOINT (default: the shipped native-task model), validated offline:
# make export [CHECKPOINT=runs/<run>/best.pt] [MODEL_ZIP=model.zip] [ARGS="--sampling-steps 20"]
MODEL_ZIP ?= model.zip
export: install
	$(PY) -m experiments.export --checkpoint $(CHECKPOINT) --out $(MODEL_ZIP) $(ARGS)

# Speed of the network over 5 interleaved rounds, median with spread and fraction of the machine's
# peak (against deeplay when BENCH_DEEPLAY names a Python that has it); a 2048 x 2048 prediction end
# to end against the bare network (CHECKPOINT, else a random-weight demo network); sampling quality
# versus steps on the newest demo run (run `make demo` first).
BENCH_DEEPLAY ?=
# BASELINE_CHECKOUT=<worktree of an earlier release>: --compare times its predict as the previous default
# (docs/sampling.md); without it, this code's 10-step DDIM stands in.
bench: install
	$(PY) -m experiments.bench.unet --channels-last --rounds 5 $(if $(BENCH_DEEPLAY),--deeplay-python $(BENCH_DEEPLAY))
	$(PY) -m experiments.bench.predict --rounds 5 $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT))
	$(PY) -m experiments.bench.predict --compare --checkpoint pretrained/tutorial-l1/model.pt --rounds 3 --trust-rounds 2 $(if $(BASELINE_CHECKOUT),--baseline-checkout $(BASELINE_CHECKOUT))
	$(PY) -m experiments.bench.sampling --overwrite $(ARGS)

# The fitted gain of the shipped native models across microscopes (docs/benchmarks.md): about 10 min per
# model on 2 CPU cores.
bench-robustness: install
	$(PY) -m experiments.bench.robustness --checkpoint pretrained/native/model.pt --overwrite $(ARGS)

# On a CUDA machine: the tutorial network's training step in fp32, bf16 + channels_last and compiled, the
# epoch time of the 41,040-pair reproduction, and a two-process DDP step when two GPUs exist.
bench-gpu: install
	$(PY) -m experiments.bench.gpu --overwrite $(ARGS)
