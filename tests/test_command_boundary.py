"""Every command at its boundary (experiments.command): a bad argument, file, folder, level or output path
gives one line ``error: ...`` naming it, exit status 1, no traceback, and nothing on disk changes.

The table runs each command in-process on one small world (a data root, a run folder with its
checkpoint, a regression checkpoint, user TIFs, OME-Zarr stores the reference library wrote, earlier
outputs and evaluations, an existing file) and compares a snapshot of every file's bytes before and after.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import zarr
from ome_zarr.format import FormatV04
from ome_zarr.io import parse_url
from ome_zarr.writer import write_image

from experiments.build import build_model
from experiments.config.schema import DataConfig, DiffusionConfig, RunConfig, SamplingConfig, TrainConfig
from experiments.microscope.synthetic import SyntheticConfig, generate
from experiments.image_io.tif_io import read_frames, read_metadata
from experiments.checkpoint import IMAGE_SIZE_KEY
from unet import UNetConfig

SIDE = 32


def tiny_config(root: Path) -> RunConfig:
    return RunConfig(
        name="tiny",
        diffusion=DiffusionConfig(steps=10, beta_start=1e-4, beta_end=0.1),
        network=UNetConfig(channels=(4, 8), base_channels=(8,), attention=(False, False), time_encoding_dim=8),
        data=DataConfig(root=str(root)),
        train=TrainConfig(device="cpu", epochs=1, batch_size=4),
        sampling=SamplingConfig(sampler="ddim", sampling_steps=2),
    )


def reference_store(path: Path, data: np.ndarray) -> Path:
    """``data`` (t, y, x) as an NGFF 0.4 image written by the reference library, one chunk per frame."""
    root = zarr.group(store=parse_url(str(path), mode="w", fmt=FormatV04()).store, zarr_format=2)
    space = {"type": "space", "unit": "micrometer"}
    axes = [{"name": "t", "type": "time"}, {"name": "y", **space}, {"name": "x", **space}]
    write_image(data, root, axes=axes, fmt=FormatV04(), scaler=None, storage_options={"chunks": (1, *data.shape[1:])},
                coordinate_transformations=[[{"type": "scale", "scale": [1.0, 0.0626, 0.0626]}]])
    return path


def write_stores(world: Path) -> None:
    """OME-Zarr inputs (whole, holed with NaN, without its level, not OME), an earlier prediction of the
    whole one, and a copy of that prediction with a torn chunk."""
    from experiments.predict import main

    stores = world / "stores"
    frames = np.random.default_rng(3).integers(0, 256, (2, 40, 40)).astype(np.uint8)
    reference_store(stores / "cells.ome.zarr", frames)
    holed = frames / np.float32(255)
    holed[1, 3, 4] = np.nan
    reference_store(stores / "holes.ome.zarr", holed)
    for marker in (reference_store(stores / "cut.ome.zarr", frames) / "0").glob(".z*"):
        marker.unlink()  # level 0's metadata gone, as after an interrupted copy
    zarr.open_group(str(stores / "plain.zarr"), mode="w").create_array("0", shape=(8, 8), dtype="uint8")
    assert main(["--checkpoint", str(world / "run"), "--input", str(stores / "cells.ome.zarr"), "--output",
                 str(world / "zout"), "--quiet", "--device", "cpu"]) == 0
    torn = world / "ztorn" / "cells_sr.ome.zarr"
    shutil.copytree(world / "zout" / "cells_sr.ome.zarr", torn)
    chunk = torn / "0" / "1" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40])


def write_evaluations(world: Path) -> None:
    """Evaluations of the run: at level_09 on 1 image, on 2, and at level_01 on 1 (three test sets)."""
    from experiments.evaluate import main

    for name, level, images in (("eval09", "level_09", "1"), ("eval09x2", "level_09", "2"), ("eval01", "level_01", "1")):
        assert main(["--checkpoint", str(world / "run"), "--device", "cpu", "--no-progress", "--levels", level,
                     "--max-images", images, "--out", str(world / name)]) == 0


def write_pairs(root: Path, side: int) -> None:
    """A BioSR-layout test split of 2 pairs of ``side`` px at level_09."""
    rng = np.random.default_rng(2)
    for folder in (root / "test_wf" / "level_09", root / "test_gt"):
        folder.mkdir(parents=True)
        for i in range(2):
            tifffile.imwrite(folder / f"{i + 1:03d}.tif", rng.random((side, side), dtype=np.float32))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    world = tmp_path_factory.mktemp("world")
    generate(world / "data", train=8, validate=2, test_per_level=2, seed=1, config=SyntheticConfig(size=SIDE))
    write_pairs(world / "odd", SIDE + 1)
    config = tiny_config(world / "data")
    (world / "run").mkdir()
    torch.manual_seed(0)
    torch.save({"model": build_model(config, torch.device("cpu")).state_dict(), "config": config.to_dict(),
                IMAGE_SIZE_KEY: [SIDE, SIDE]}, world / "run" / "last.pt")
    config.save(world / "run" / "config.json")
    regression = replace(config, train=replace(config.train, objective="regression"),
                         sampling=SamplingConfig(sampler="regression"))
    (world / "regression").mkdir()
    torch.save({"model": build_model(regression, torch.device("cpu")).state_dict(), "config": regression.to_dict(),
                IMAGE_SIZE_KEY: [SIDE, SIDE]}, world / "regression" / "last.pt")
    (world / "empty_run").mkdir()
    cells = world / "cells"
    cells.mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(cells / "a.tif", rng.integers(0, 256, (40, 40), dtype=np.uint8))
    tifffile.imwrite(cells / "constant.tif", np.full((40, 40), 7, np.uint8))
    (cells / "empty.tif").write_bytes(b"")
    tifffile.imwrite(cells / "nan.tif", np.full((40, 40), np.nan, np.float32))
    tifffile.imwrite(cells / "rgb.tif", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), photometric="rgb")
    (world / "notes.txt").write_text("a user's file\n")
    (world / "model.zip").write_bytes(b"an earlier package")
    (world / "bench.json").write_text("{}\n")
    write_stores(world)
    write_evaluations(world)
    return world


def snapshot(folder: Path) -> dict[str, str]:
    """Every file's SHA-256 and every folder, except the data cache: a derived copy of the TIFs that reading
    (and so checking) a split writes, and rebuilds whenever they change."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            for path in sorted(folder.rglob("*")) if ".cache" not in path.parts}


RUN, CKPT, DATA, NOTES, A_TIF = "{w}/run", "{w}/run/last.pt", "{w}/data", "{w}/notes.txt", "{w}/cells/a.tif"
PREDICT = ["--checkpoint", RUN, "--input", A_TIF, "--output", "{w}/out", "--quiet", "--device", "cpu"]
EVALUATE = ["--checkpoint", RUN, "--device", "cpu", "--no-progress"]
EXPORT = ["--checkpoint", CKPT, "--out", "{w}/new.zip", "--test-image", A_TIF, "--no-test"]
SYNTHETIC = ["--out", "{w}/generated", "--train", "4", "--validate", "0", "--test-per-level", "1", "--size", "16"]
STORES = "{w}/stores"
PUBLISH = ["--checkpoint", CKPT, "--out", "{w}/published", "--title", "t", "--summary", "s"]
TRAIN = ["--preset", "demo", "--crop", "none", "--data.root", DATA, "--out-dir", "{w}/runs", "--device", "cpu", "--no-progress"]

# (command module, arguments, a phrase of the one line that names the culprit)
CASES = [
    ("train", TRAIN + ["--levels", ""], "names no test level"),
    ("train", TRAIN + ["--levels", "level_77"], "level_77"),
    ("train", TRAIN + ["--epochs", "0"], "--train.epochs must be >= 1"),
    ("train", TRAIN + ["--train.lr", "abc"], "cannot read 'abc'"),
    ("train", TRAIN + ["--preset", "nope"], "unknown preset"),
    ("train", TRAIN + ["--data.root", "{w}/cells"], "not a BioSR-style data set"),
    ("train", TRAIN + ["--run-dir", NOTES], "is a file"),
    ("train", TRAIN + ["--run-dir", "{w}/data/runs"], "inside, the input"),
    ("train", TRAIN + ["--device", "cuda"] if not torch.cuda.is_available() else TRAIN + ["--epochs", "-1"], "--device"
     if not torch.cuda.is_available() else "epochs"),
    ("train", TRAIN + ["--no-such-flag"], "unrecognized arguments"),
    ("train", ["--resume", RUN, "--epochs", "3"], "drop"),
    ("train", ["--resume", "{w}/empty_run"], "last.pt"),
    ("train", ["--resume", "{w}/nowhere"], "last.pt"),
    ("train", TRAIN + ["--network.kind", "resnet", "--network.width", "0"], "width must be"),
    ("train", TRAIN + ["--network.kind", "resnet", "--network.channels", "4"], "has no field channels"),
    ("train", TRAIN + ["--crop", "7"], "data.crop 7"),
    ("train", TRAIN + ["--data.root", NOTES], "not a BioSR-style data set"),
    ("train", TRAIN + ["--out-dir", DATA], "inside, the input"),
    ("train", TRAIN + ["--sampling-steps", "500"], "sampling"),
    ("evaluate", EVALUATE + ["--levels", "level_77"], "has no test level level_77"),
    ("evaluate", EVALUATE + ["--levels", ","], "names no test level"),
    ("evaluate", EVALUATE + ["--data", "{w}/cells"], "not a BioSR-style data set"),
    ("evaluate", EVALUATE + ["--data", "{w}/odd"], "not a multiple of 2"),
    ("evaluate", EVALUATE + ["--max-images", "0"], "--max-images: must be >= 1"),
    ("evaluate", EVALUATE + ["--samples", "0"], "samples must be >= 1"),
    ("evaluate", EVALUATE + ["--out", NOTES], "is a file"),
    ("evaluate", EVALUATE + ["--out", "{w}/data/evaluation"], "inside, the input"),
    ("evaluate", ["--checkpoint", "{w}/nope.pt"], "no checkpoint"),
    ("evaluate", ["--checkpoint", NOTES], "not a readable checkpoint"),
    ("evaluate", EVALUATE + ["--batch-size", "0"], "--batch-size: must be >= 1"),
    ("evaluate", EVALUATE + ["--sampling-steps", "0"], "--sampling-steps must be >= 1"),
    ("evaluate", EVALUATE + ["--data", NOTES], "not a BioSR-style data set"),
    ("evaluate", EVALUATE + ["--device", "mps"], "--device mps"),
    ("predict", PREDICT + ["--pixel-size", "inf"], "--pixel-size: must be > 0"),
    ("predict", PREDICT + ["--pixel-size", "0"], "--pixel-size: must be > 0"),
    ("predict", PREDICT + ["--seed", "-1"], "--seed: must be >= 0"),
    ("predict", PREDICT + ["--std"], "--std needs several samples"),
    ("predict", PREDICT + ["--tile", "3"], "--tile must be a positive multiple of 2"),
    ("predict", PREDICT + ["--input", "{w}/cells/rgb.tif"], "rgb.tif"),
    ("predict", PREDICT + ["--input", "{w}/nope.tif"], "no such file"),
    ("predict", PREDICT + ["--output", NOTES], "is a file"),
    ("predict", PREDICT + ["--output", "{w}/cells", "--suffix", ""], "would overwrite the input"),
    ("predict", PREDICT + ["--checkpoint", NOTES], "not a readable checkpoint"),
    ("predict", PREDICT + ["--samples", "0"], "samples must be >= 1"),
    ("predict", PREDICT + ["--sampling-steps", "0"], "--sampling-steps must be >= 1"),
    ("predict", PREDICT + ["--eta", "5"], "eta must be >= 0 and <= 1"),
    ("predict", PREDICT + ["--overlap", "-1"], "--overlap must be within"),
    ("predict", PREDICT + ["--batch-size", "0"], "--batch-size must be at least 1"),
    ("predict", PREDICT + ["--tile", "0"], "--tile must be a positive multiple"),
    ("predict", PREDICT + ["--reduce", "sum"], "invalid choice"),
    ("predict", PREDICT + ["--input", "{w}/empty_run"], "holds no .tif"),
    ("predict", PREDICT + ["--input", NOTES], "not a TIF file"),
    ("predict", PREDICT + ["--input", "{w}/cells/empty.tif"], "cannot be read as a TIF"),
    ("predict", PREDICT + ["--input", "{w}/cells/nan.tif"], "NaN or infinite"),
    ("predict", PREDICT + ["--suffix", "/../x"], "--suffix is added to a file name"),
    ("predict", PREDICT + ["--input", A_TIF, "{w}/cells/rgb.tif"], "rgb.tif"),
    ("export", EXPORT + ["--out", CKPT], "a .zip file"),
    ("export", EXPORT + ["--checkpoint", "{w}/empty_run"], "no checkpoint"),
    ("export", EXPORT + ["--test-side", "0"], "--test-side: must be >= 1"),
    ("export", EXPORT + ["--test-image", "{w}/nope.tif"], "nope.tif"),
    ("export", EXPORT + ["--test-image", NOTES], "notes.txt"),
    ("export", EXPORT + ["--seed", "-3"], "--seed: must be >= 0"),
    ("export", EXPORT + ["--out", A_TIF], "a .zip file"),
    ("export", EXPORT + ["--out", "{w}/model.zip"], "exists; pass --overwrite"),
    ("export", EXPORT + ["--pixel-size", "-1"], "--pixel-size: must be > 0"),
    ("export", EXPORT + ["--sampling-steps", "999"], "DPM-Solver++ steps must be within 1..9"),
    ("export", EXPORT + ["--sampler", "ddim", "--sampling-steps", "999"], "DDIM steps must be within 1..10"),
    ("export", EXPORT + ["--sampler", "ddpm"], "--sampler"),
    ("export", EXPORT + ["--test-image", "{w}/cells/constant.tif"], "constant"),
    ("export", EXPORT + ["--test-image", "{w}/cells/rgb.tif"], "rgb.tif"),
    ("make_data", SYNTHETIC + ["--size", "0"], "--size: must be >= 4"),
    ("make_data", SYNTHETIC + ["--size", "15"], "--size must be even"),
    ("make_data", SYNTHETIC + ["--seed", "-1"], "--seed: must be >= 0"),
    ("make_data", SYNTHETIC + ["--train", "-1"], "--train: must be >= 1"),
    ("make_data", SYNTHETIC + ["--test-per-level", "0"], "--test-per-level: must be >= 1"),
    ("make_data", SYNTHETIC + ["--out", NOTES], "is a file"),
    ("make_data", SYNTHETIC + ["--out", DATA], "pass --overwrite"),
    ("get_data", ["--dest", NOTES], "is a file"),
    ("bench.predict", ["--checkpoint", NOTES, "--size", "64", "--rounds", "1"], "not a readable checkpoint"),
    ("bench.sampling", ["--checkpoint", NOTES, "--device", "cpu"], "not a readable checkpoint"),
    ("bench.sampling", ["--checkpoint", RUN, "--device", "cpu", "--out", "{w}/bench.json"], "exists; pass --overwrite"),
    ("bench.unet", ["--rounds", "0"], "--rounds: must be >= 1"),
    ("bench.data", ["--root", "{w}/cells", "--rounds", "1"], "not a BioSR-style data set"),
    # the surfaces added since: OME-Zarr stores, resume, model kinds, publish, compare, study
    ("predict", PREDICT + ["--input", STORES + "/plain.zarr"], "not an OME-Zarr image (no 'multiscales'"),
    ("predict", PREDICT + ["--input", STORES + "/holes.ome.zarr"], "1 NaN or infinite pixel values in frame 1"),
    ("predict", PREDICT + ["--input", STORES + "/cells.ome.zarr", STORES + "/holes.ome.zarr"], "holes.ome.zarr"),
    ("predict", PREDICT + ["--input", A_TIF, "{w}/cells/nan.tif"], "NaN or infinite"),
    ("predict", PREDICT + ["--input", STORES + "/cut.ome.zarr"], "level '0' named in its multiscales is missing"),
    ("predict", PREDICT + ["--input", STORES + "/cells.ome.zarr", "--output", "{w}/zout"], "--resume"),
    ("predict", PREDICT + ["--input", STORES + "/cells.ome.zarr", "--output", "{w}/zout", "--resume", "--seed", "3"],
     "seed 0, not 3"),
    ("predict", PREDICT + ["--input", STORES + "/cells.ome.zarr", "--output", "{w}/ztorn", "--resume"],
     "frame 1 of this output cannot be read"),
    ("predict", PREDICT + ["--input", STORES + "/cells.ome.zarr", "--output", "{w}/zout", "--resume", "--overwrite"],
     "--resume"),
    ("predict", PREDICT + ["--checkpoint", "{w}/regression", "--samples", "2", "--std"], "regression"),
    ("predict", PREDICT + ["--checkpoint", "{w}/regression", "--sampler", "ddim"], "regression"),
    ("train", ["--resume", RUN, "--preset", "regression"], "--preset"),
    ("train", ["--resume", RUN, "--name", "other"], "--name"),
    ("train", ["--resume", RUN, "--out-dir", "{w}/elsewhere"], "--out-dir"),
    ("train", ["--resume", RUN, "--run-dir", "{w}/elsewhere"], "--run-dir"),
    ("publish", PUBLISH + ["--evaluation", "a={w}/eval09", "--evaluation", "a={w}/eval01"], "names 'a' twice"),
    ("publish", PUBLISH + ["--evaluation", "a={w}/nowhere"], "nowhere"),
    ("publish", PUBLISH + ["--checkpoint", NOTES, "--evaluation", "a={w}/eval09"], "not a readable checkpoint"),
    ("publish", PUBLISH, "pass --evaluation NAME=FOLDER"),
    ("compare", ["--out", "{w}/cmp", "--evaluation", "a={w}/eval09", "--evaluation", "a={w}/eval01"],
     "names 'a' twice"),
    ("compare", ["--out", "{w}/cmp", "--evaluation", "a={w}/eval09", "--evaluation", "b={w}/eval01"],
     "different levels (a: ['level_09'], b: ['level_01'])"),
    ("compare", ["--out", "{w}/cmp", "--evaluation", "a={w}/eval09", "--evaluation", "b={w}/eval09x2"],
     "'a' and 'b' were scored on different test sets (images [1] against [2])"),
    ("compare", ["--out", "{w}/cmp", "--evaluation", "a={w}/eval09", "--evaluation", "b={w}/cells"], "cells"),
    ("study", ["--summary-only", "--out", "{w}/empty_run"], "holds no finished run"),
]


@pytest.mark.parametrize("command, arguments, phrase", CASES, ids=[f"{c}:{' '.join(a[-2:])}" for c, a, _ in CASES])
def test_a_bad_argument_gives_one_line_exit_1_and_changes_nothing(world, command, arguments, phrase, capsys,
                                                                  monkeypatch):
    monkeypatch.chdir(world)  # defaults relative to the working folder (runs/, ...) land in the snapshot
    argv = [argument.replace("{w}", str(world)) for argument in arguments]
    before = snapshot(world)
    main = importlib.import_module(f"experiments.{command}").main
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 1, captured
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert phrase in lines[0], lines[0]
    assert snapshot(world) == before


def test_debug_shows_the_traceback_instead(world, capsys):
    from ddpm.settings import UserError
    from experiments.predict import main

    with pytest.raises(UserError, match="--std needs"):
        main([argument.replace("{w}", str(world)) for argument in PREDICT] + ["--std", "--debug"])


def test_a_bug_keeps_its_traceback(monkeypatch):
    from experiments import make_data

    def broken(args):
        raise KeyError("a bug, not a user's mistake")

    monkeypatch.setattr(make_data, "run", broken)
    with pytest.raises(KeyError):
        make_data.main(["--out", "unused"])


def ome_with_pixel_size(path: Path, value: str) -> Path:
    """An OME-TIFF whose PhysicalSizeX is ``value`` verbatim (a microscope's or a script's mistake)."""
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8), ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1})
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    tifffile.tiffcomment(path, xml.replace('PhysicalSizeX="0.1"', f'PhysicalSizeX="{value}"'))
    return path


@pytest.mark.parametrize("value", ["0", "nan", "-0.1", "inf", "abc"])
def test_a_pixel_size_read_from_a_file_meets_the_range_a_typed_one_meets(world, tmp_path, value, capsys):
    from experiments.predict import main

    source = ome_with_pixel_size(tmp_path / "cell.tif", value)
    assert read_frames(source)[1].pixel_size_um is None
    code = main(["--checkpoint", str(world / "run"), "--input", str(source), "--output", str(tmp_path / "out"),
                 "--quiet", "--device", "cpu", "--no-preview"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning:" in err and "not > 0 µm" in err and "--pixel-size" in err
    output = tmp_path / "out" / "cell_sr.tif"
    with tifffile.TiffFile(output) as tif:
        assert "PhysicalSizeX" not in tif.ome_metadata
    assert read_metadata(output)["source"] == str(source.resolve())


def test_what_the_project_writes_is_strict_json(tmp_path):
    from experiments.integrity.json_files import json_text, write_json

    path = write_json(tmp_path / "m.json", {"psnr": float("nan"), "rows": [{"ssim": float("inf")}], "n": 3})

    def refuse(constant):
        raise AssertionError(f"invalid JSON constant {constant}")

    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data["psnr"] is None and "nan" in data["psnr_note"] and data["rows"][0]["ssim"] is None
    assert data["n"] == 3
    assert json.loads(json_text([float("-inf")], None), parse_constant=refuse) == [None]
