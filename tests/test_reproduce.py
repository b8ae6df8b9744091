"""``make reproduce-mse`` and ``make reproduce-l1`` end to end, on a small synthetic BioSR-layout folder.

The presets run unchanged; only ``ARGS`` shortens the run (one epoch, T = 10 diffusion steps, two test
and two validation images, batch 4), so each case takes some seconds on a CPU. The checks: the command
exits 0, the final table printed to stdout holds this run's row and the paper's row of the preset (with
the numbers of ``PAPER_RESULTS``, 3 decimals as the table writes them), and the run folder holds
``last.pt``, ``config.json`` (the preset, with only the overridden fields changed) and ``report.md``
with the paper's row.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from experiments.config.presets import preset

from experiments.config.schema import RunConfig
from experiments.microscope.synthetic import SyntheticConfig, generate
from experiments.evaluation.report import PAPER_RESULTS, ROW_RUN, paper_row_label
from experiments.records import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
STAMP = ".venv/.installed"  # the Makefile's $(STAMP)
LEVEL = "level_09"  # the presets' only test level
TIMEOUT_S = 600  # a case takes about 10-20 s on 2 CPU cores; generous for a loaded machine
TAIL = 4000

EPOCHS, STEPS, TEST_IMAGES, VALIDATION_IMAGES, BATCH = 1, 10, 2, 2, 4

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small BioSR-layout folder, 32 x 32 targets (MS-SSIM needs at least 28 px)."""
    root = tmp_path_factory.mktemp("reproduce") / "biosr"
    generate(root, train=8, validate=2, test_per_level=2, seed=3, config=SyntheticConfig(size=32))
    return root


def _environment() -> dict[str, str]:
    """The caller's environment, less what an outer ``make`` (``make test``) passes to its children: its
    flags and command-line variables (``MAKEFLAGS``, e.g. ``GPUS=2``) would otherwise reach this make."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS")}
    env.update(COLUMNS="250", NO_COLOR="1", PYTHON_COLORS="0", PYTHONUNBUFFERED="1")
    return env


def _tail(text: str) -> str:
    return text if len(text) <= TAIL else "...\n" + text[-TAIL:]


def _paper_line(preset_name: str, prefix: str = "") -> str:
    """The paper's row as :func:`~experiments.evaluation.report.format_table` writes it."""
    values = PAPER_RESULTS[preset_name]
    cells = [f"{prefix}{paper_row_label(preset_name)}"] + [f"{values[name]:.3f}" for name in METRIC_NAMES]
    return "| " + " | ".join(cells) + " |"


def _final_table(stdout: str) -> list[str]:
    """The lines of the last table printed under the ``level_09`` heading."""
    lines = stdout.splitlines()
    headings = [i for i, line in enumerate(lines) if line.strip() == LEVEL]
    assert headings, f"no '{LEVEL}' table heading in the output:\n{_tail(stdout)}"
    table = []
    for line in lines[headings[-1] + 1:]:
        if not line.startswith("|"):
            break
        table.append(line)
    assert len(table) >= 4, f"the '{LEVEL}' table is too short:\n{_tail(stdout)}"
    return table


def _row(table: list[str], label: str) -> list[str]:
    rows = [line for line in table if line.split("|")[1].strip() == label]
    assert len(rows) == 1, f"expected one '{label}' row in the final table, found {len(rows)}:\n" + "\n".join(table)
    return [cell.strip() for cell in rows[0].strip().strip("|").split("|")][1:]


def _expected_config(preset_name: str, data_root: Path, out_dir: Path) -> RunConfig:
    """The preset with exactly the fields that ARGS and DATA_DIR override."""
    base = preset(preset_name)
    return dataclasses.replace(
        base,
        out_dir=str(out_dir),
        diffusion=dataclasses.replace(base.diffusion, steps=STEPS),
        data=dataclasses.replace(base.data, root=str(data_root)),
        train=dataclasses.replace(base.train, epochs=EPOCHS, batch_size=BATCH),
        eval=dataclasses.replace(base.eval, max_test_images=TEST_IMAGES, validation_images=VALIDATION_IMAGES),
    )


@pytest.mark.parametrize("preset_name", ["mse", "l1"])
def test_make_reproduce(preset_name: str, data_root: Path, tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    if not VENV_PYTHON.exists():
        pytest.skip(f"{VENV_PYTHON} is missing: run `make install` first")
    out_dir = tmp_path / "runs"
    args = (f"--epochs {EPOCHS} --diffusion.steps {STEPS} --eval.max_test_images {TEST_IMAGES} "
            f"--eval.validation_images {VALIDATION_IMAGES} --train.batch_size {BATCH} --out-dir {out_dir} --no-progress")
    # `-o .venv/.installed`: run the recipe in the installed environment as it is, never `pip install`
    # in the middle of the suite (make test installs first; a pyproject.toml edited since would
    # otherwise trigger it). GPUS=1: one process, whatever the environment says.
    command = ["make", "-s", "-o", STAMP, f"reproduce-{preset_name}", f"DATA_DIR={data_root}", "GPUS=1", f"ARGS={args}"]
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, env=_environment(), capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or b"") + (error.stderr or b"")
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
        pytest.fail(f"{' '.join(command)} did not finish in {TIMEOUT_S} s:\n{_tail(output)}")
    seconds = time.monotonic() - start
    print(f"make reproduce-{preset_name}: {seconds:.1f} s")
    output = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, (
        f"{' '.join(command)} exited with status {done.returncode} after {seconds:.1f} s:\n{_tail(output)}"
    )

    # The final table, printed to stdout: this run's row (finite numbers) and the paper's, as published.
    table = _final_table(done.stdout)
    run_cells = _row(table, ROW_RUN)
    assert len(run_cells) == len(METRIC_NAMES), f"'{ROW_RUN}' row has {len(run_cells)} cells:\n" + "\n".join(table)
    assert all(math.isfinite(float(cell)) for cell in run_cells), "\n".join(table)
    paper = _paper_line(preset_name)
    assert paper in table, f"the paper's row {paper!r} is not in the final table:\n" + "\n".join(table)
    paper_cells = dict(zip(METRIC_NAMES, _row(table, paper_row_label(preset_name))))
    for metric in ("psnr", "ssim"):
        assert paper_cells[metric] == f"{PAPER_RESULTS[preset_name][metric]:.3f}", paper_cells

    # The run folder.
    assert out_dir.is_dir(), f"no {out_dir}:\n{_tail(output)}"
    runs = sorted(path for path in out_dir.iterdir() if path.is_dir())
    assert len(runs) == 1 and runs[0].name.startswith(f"{preset_name}-"), f"run folders under {out_dir}: {runs}"
    run = runs[0]
    for name in ("last.pt", "config.json", "report.md"):
        assert (run / name).is_file(), f"{run} lacks {name}: {sorted(p.name for p in run.iterdir())}"

    config = RunConfig.load(run / "config.json")
    assert config.train.loss == preset_name
    assert config.eval.paper_comparison == preset_name
    expected = _expected_config(preset_name, data_root, out_dir)
    assert config == expected, (
        f"config.json is not the {preset_name!r} preset with only the ARGS overrides:\n"
        f"written:  {config.to_dict()}\nexpected: {expected.to_dict()}"
    )

    report = (run / "report.md").read_text()
    paper_in_report = _paper_line(preset_name, prefix=f"{LEVEL}: ")
    assert paper_in_report in report, f"report.md lacks {paper_in_report!r}:\n{_tail(report)}"
