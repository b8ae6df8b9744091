"""Prediction on many files with torchrun (issue 24): two CPU processes over gloo share the inputs, and
every output file and check.json is the one a single process writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from test_predict import FAST, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cells")
    rng = np.random.default_rng(4)
    for index, shape in enumerate([(40, 36), (2, 33, 45), (50, 50), (20, 70), (36, 36)]):  # 5 files over 2 ranks
        tifffile.imwrite(folder / f"cell_{index}.tif", rng.random(shape, dtype=np.float32))
    return folder


def test_two_processes_write_what_one_process_writes(inputs, tmp_path):
    """Both runs in fresh processes of one thread each (torchrun's default per rank): torch's thread count
    changes the rounding of a convolution, so the comparison is bitwise only at equal threads."""
    (tmp_path / "run").mkdir()
    checkpoint = save_checkpoint(tmp_path / "run" / "last.pt")
    flags = ["-m", "experiments.predict", "--checkpoint", str(checkpoint), "--input", str(inputs), "--samples", "2",
             "--std", "--check", "--no-preview", "--seed", "3", *FAST]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2"]
    for launcher, folder in (([sys.executable], "one"), (torchrun, "two")):
        done = subprocess.run([*launcher, *flags, "--output", str(tmp_path / folder)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    written = sorted(path.name for path in (tmp_path / "one").iterdir())
    assert written == sorted(path.name for path in (tmp_path / "two").iterdir())
    assert sum(name.endswith("_sr.tif") for name in written) == 5
    for name in written:
        if name.endswith(".tif"):
            np.testing.assert_array_equal(tifffile.imread(tmp_path / "two" / name), tifffile.imread(tmp_path / "one" / name),
                                          err_msg=name)
    one, two = (json.loads((tmp_path / folder / "check.json").read_text())["frames"] for folder in ("one", "two"))
    assert len(one) == 6  # one entry per frame, the stack's two included, in input order
    assert json.dumps(two).replace("/two/", "/one/") == json.dumps(one)


def test_rank_r_of_w_writes_files_r_r_plus_w_and_no_others(inputs, tmp_path, monkeypatch):
    """The share itself, in one process: rank 1 of 2 (its gather of the checks stubbed) writes files 1 and 3."""
    from experiments.inference import prediction as predict
    from experiments.inference.loading import load_for_inference
    from experiments.runtime import Distributed

    (tmp_path / "run").mkdir()
    predictor = load_for_inference(save_checkpoint(tmp_path / "run" / "last.pt"), "cpu")
    monkeypatch.setattr(predict, "gather_objects", lambda value, place: [value] * place.world_size)
    options = predict.PredictOptions(sampling=predictor.config.sampling, tile=32, overlap=8, preview=False,
                                     progress=False)
    files = sorted(inputs.iterdir())
    predict.predict(predictor, files, tmp_path / "out", options, warn=print, place=Distributed(rank=1, world_size=2))
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["cell_1_sr.tif", "cell_3_sr.tif"]
