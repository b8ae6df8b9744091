"""OME-Zarr in and out of prediction, checked with the reference library (ome-zarr): inputs it writes (NGFF
0.4 and 0.5, 2-D, t and z stacks, channels) are read frame for frame; the stores prediction writes are read
back by it with their axes and physical pixel sizes; an interrupted prediction keeps its finished frames and
``--resume`` completes it to what one run writes; non-OME and truncated stores get one line naming them."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr.writer import write_image

from experiments.image_io.ome_zarr import METADATA_KEY, open_image
from experiments.image_io.tif_io import InputError, find_inputs
from experiments.inference.predictor import Predictor
from tests.test_predict import FAST, run_cli, save_checkpoint

PIXEL_UM = 0.0626
FORMATS = {"0.4": FormatV04(), "0.5": FormatV05()}
RNG = np.random.default_rng(4)
SAMPLE_FRAMES = Predictor.sample_frames  # the sampler itself, around which interrupt_after stops


def space(name: str) -> dict:
    return {"name": name, "type": "space", "unit": "micrometer"}


def reference_store(path: Path, data: np.ndarray, axes: list[dict], scale: list[float], version: str = "0.4",
                    chunks: tuple[int, ...] | None = None) -> Path:
    """``data`` written as an OME-Zarr image by the ome-zarr library (one level, its chunking or ``chunks``)."""
    fmt = FORMATS[version]
    root = zarr.group(store=parse_url(str(path), mode="w", fmt=fmt).store, zarr_format=fmt.zarr_format)
    write_image(data, root, axes=axes, fmt=fmt, scaler=None,
                coordinate_transformations=[[{"type": "scale", "scale": scale}]],
                **({"storage_options": {"chunks": chunks}} if chunks else {}))
    return path


def read_back(path: Path) -> tuple[np.ndarray, dict]:
    """The first level and the metadata of the image at ``path``, as the reference library reads them."""
    node = next(iter(Reader(parse_url(str(path)))()))
    return np.asarray(node.data[0]), node.metadata


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("run") / "last.pt")


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return RNG.integers(0, 65536, (3, 41, 37), dtype=np.uint16)


@pytest.fixture
def time_store(tmp_path, stack) -> Path:
    axes = [{"name": "t", "type": "time", "unit": "second"}, space("y"), space("x")]
    return reference_store(tmp_path / "cells.ome.zarr", stack, axes, [2.5, PIXEL_UM, PIXEL_UM])


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_images_the_reference_library_writes_are_read_frame_for_frame(tmp_path, version):
    """2-D and t, z stacks, with a channel axis collapsed as a TIF's is (--reduce)."""
    planes = RNG.random((2, 3, 4, 20, 30)).astype(np.float32)  # t c z y x
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}, space("z"), space("y"), space("x")]
    path = reference_store(tmp_path / "tczyx.zarr", planes, axes, [1.0, 1.0, 0.3, 0.08, 0.08], version)
    with pytest.raises(InputError, match="3 channels"):
        open_image(path)
    image = open_image(path, reduce="max")
    assert len(image) == 8 and image.plane == (20, 30) and image.info.pixel_size_um == pytest.approx(0.08)
    assert [(axis.name, axis.size, axis.scale) for axis in image.stack] == [("t", 2, 1.0), ("z", 4, 0.3)]
    np.testing.assert_array_equal(image[5], planes[1, :, 1].max(axis=0))  # frame 5 = t 1, z 1
    flat = reference_store(tmp_path / "yx.zarr", planes[0, 0, 0], [space("y"), space("x")], [0.05, 0.05], version)
    single = open_image(flat)
    assert len(single) == 1 and single.stack == () and np.array_equal(single[0], planes[0, 0, 0])


def test_a_stack_in_gives_stores_out_with_the_physical_pixel_size_read_by_ome_zarr(capsys, checkpoint, time_store,
                                                                                   stack, tmp_path):
    """The same frames as a TIF give the same numbers: a store is another container, not another result."""
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", time_store, "--output", tmp_path / "zarr",
                        "--samples", 2, "--std", "--check", *FAST)
    assert code == 0, err
    data, metadata = read_back(tmp_path / "zarr" / "cells_sr.ome.zarr")
    assert data.shape == (3, 41, 37) and data.dtype == np.float32 and np.isfinite(data).all()
    assert [axis["name"] for axis in metadata["axes"]] == ["t", "y", "x"]
    assert metadata["axes"][1]["unit"] == "micrometer"
    assert metadata["coordinateTransformations"][0][0]["scale"] == pytest.approx([2.5, PIXEL_UM, PIXEL_UM])
    std, _ = read_back(tmp_path / "zarr" / "cells_sr_std.ome.zarr")
    consistency, _ = read_back(tmp_path / "zarr" / "cells_sr_consistency.ome.zarr")
    assert std.shape == consistency.shape == (3, 41, 37) and (std >= 0).all() and std.max() > 0
    stored = zarr.open_group(str(tmp_path / "zarr" / "cells_sr.ome.zarr"), mode="r").attrs[METADATA_KEY]
    assert stored["frames"] == 3 and len(stored["check"]) == 3 and stored["source"].endswith("cells.ome.zarr")

    tif = tmp_path / "cells.tif"
    tifffile.imwrite(tif, stack, photometric="minisblack")
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", tif, "--output", tmp_path / "tif",
                        "--samples", 2, "--std", "--check", "--pixel-size", PIXEL_UM, *FAST)
    assert code == 0, err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tif" / "cells_sr.tif"), data)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tif" / "cells_sr_std.tif"), std)


def interrupt_after(monkeypatch, frames: int) -> list[int]:
    """Make the next prediction stop (as Ctrl-C would) once ``frames`` frames came out of the sampler;
    returns the list of frame indices sampled (filled as the prediction goes)."""
    sampled: list[int] = []

    def stopping(self, *args, **kwargs):
        for index, part in SAMPLE_FRAMES(self, *args, **kwargs):
            if len(sampled) == frames:
                raise KeyboardInterrupt
            sampled.append(index)
            yield index, part

    monkeypatch.setattr(Predictor, "sample_frames", stopping)
    return sampled


def test_an_interrupted_prediction_keeps_its_frames_and_resume_completes_it(capsys, checkpoint, time_store,
                                                                           tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    assert run_cli(capsys, "--checkpoint", checkpoint, "--input", time_store, "--output", whole, "--check", *FAST)[0] == 0
    expected, _ = read_back(whole / "cells_sr.ome.zarr")
    expected_check = (whole / "check.json").read_text()

    out = tmp_path / "out"
    sampled = interrupt_after(monkeypatch, 2)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", time_store, "--output", out, "--check", *FAST)
    assert code == 130 and "interrupted" in err and "--resume" in err and sampled == [0, 1]
    kept, _ = read_back(out / "cells_sr.ome.zarr")  # the reference library reads the interrupted store
    np.testing.assert_array_equal(kept[:2], expected[:2])
    assert np.isnan(kept[2]).all()

    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", time_store, "--output", out, "--check", *FAST)
    assert code == 1 and err.count("\n") == 1 and "--resume" in err and "cells_sr" in err
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", time_store, "--output", out, "--check",
                        "--seed", 3, "--resume", *FAST)
    assert code == 1 and err.count("\n") == 1 and "seed 0, not 3" in err and "cells_sr" in err

    sampled = interrupt_after(monkeypatch, 3)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", time_store, "--output", out, "--check",
                        "--resume", *FAST)
    assert code == 0, err
    assert sampled == [2]  # only the frame the interruption left
    np.testing.assert_array_equal(read_back(out / "cells_sr.ome.zarr")[0], expected)
    assert (out / "check.json").read_text().replace(str(out), str(whole)) == expected_check


def test_a_finished_tif_is_skipped_on_resume_and_the_format_is_chosen(capsys, checkpoint, stack, tmp_path,
                                                                     monkeypatch):
    source = tmp_path / "cells.tif"
    tifffile.imwrite(source, stack, photometric="minisblack")
    out = tmp_path / "out"
    assert run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", out, *FAST)[0] == 0
    before = (out / "cells_sr.tif").read_bytes()
    sampled = interrupt_after(monkeypatch, 3)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", out, "--resume", *FAST)
    assert code == 0, err
    assert sampled == [] and (out / "cells_sr.tif").read_bytes() == before
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", out, "--format", "ome-zarr",
                        "--no-preview", *FAST)
    assert code == 0, err
    np.testing.assert_array_equal(read_back(out / "cells_sr.ome.zarr")[0], tifffile.imread(out / "cells_sr.tif"))


def test_a_region_equal_to_the_fill_value_is_read_as_the_reference_readers_read_it(capsys, checkpoint, stack, tmp_path):
    """zarr writes no chunk for a region equal to the fill value (an all-zero frame here): that store is whole,
    the reference reader reads zeros there, and so does prediction, with a note; the output is the TIF's."""
    blank = stack.copy()
    blank[1] = 0
    axes = [{"name": "t", "type": "time", "unit": "second"}, space("y"), space("x")]
    store = reference_store(tmp_path / "blank.ome.zarr", blank, axes, [2.5, PIXEL_UM, PIXEL_UM], chunks=(1, 41, 37))
    np.testing.assert_array_equal(read_back(store)[0], blank)  # what the reference library reads
    assert zarr.open_array(str(store / "0")).nchunks_initialized < zarr.open_array(str(store / "0")).nchunks
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", store, "--output", tmp_path / "out",
                        "--format", "tif", "--no-preview", *FAST)
    assert code == 0, err
    assert "are not stored and read as the store's fill value (0)" in err and str(store) in err
    tifffile.imwrite(tmp_path / "blank.tif", blank, metadata={"axes": "TYX"})
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", tmp_path / "blank.tif", "--output",
                        tmp_path / "tif", "--pixel-size", PIXEL_UM, "--no-preview", *FAST)
    assert code == 0, err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "blank_sr.tif"), tifffile.imread(tmp_path / "tif" / "blank_sr.tif"))


def test_a_store_that_is_not_ome_or_holed_gets_one_line_naming_it(capsys, checkpoint, tmp_path):
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w").create_array("0", shape=(8, 8), dtype="uint8")
    holed = RNG.random((20, 20)).astype(np.float32)
    holed[3, 4] = np.nan
    holes = reference_store(tmp_path / "holes.zarr", holed, [space("y"), space("x")], [PIXEL_UM, PIXEL_UM])
    for store, words in ((plain, "not an OME-Zarr image"), (holes, "1 NaN or infinite pixel values in frame 0")):
        code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", store, "--output", tmp_path / "out", *FAST)
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
        assert str(store) in err and words in err
    assert not (tmp_path / "out").exists()  # refused before anything was written: no empty store either


def test_folders_list_their_stores_beside_their_tifs(tmp_path, time_store):
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((8, 8), np.uint8))
    (tmp_path / ".hidden.zarr").mkdir()
    assert find_inputs([tmp_path]) == [tmp_path / "b.tif", time_store]


def test_a_2d_image_gives_a_2d_store_with_its_pixel_size(capsys, checkpoint, stack, tmp_path):
    source = tmp_path / "one.tif"
    tifffile.imwrite(source, stack[0])
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", tmp_path / "out",
                        "--format", "ome-zarr", "--pixel-size", PIXEL_UM, "--no-preview", *FAST)
    assert code == 0, err
    data, metadata = read_back(tmp_path / "out" / "one_sr.ome.zarr")
    assert data.shape == stack[0].shape and np.isfinite(data).all()
    assert [axis["name"] for axis in metadata["axes"]] == ["y", "x"]
    assert metadata["coordinateTransformations"][0][0]["scale"] == pytest.approx([PIXEL_UM, PIXEL_UM])


@pytest.mark.parametrize("unit, factor", [("nanometer", 1000.0), ("angstrom", 10_000.0), ("millimeter", 1e-3)])
def test_a_store_in_other_length_units_is_read_in_micrometres_and_judged_against_the_upsampled_pixel(
    capsys, checkpoint, stack, tmp_path, unit, factor
):
    """A tutorial-task model (62.6 nm training inputs) under --upsample expects inputs of twice that pixel,
    125.2 nm: a store stating it in ``unit`` is read as 0.1252 µm, passes without a warning and gives outputs of
    62.6 nm, stated in micrometres; the same store stating 62.6 nm gets the warning naming both sizes."""
    axes = [{"name": name, "type": "space", "unit": unit} for name in ("y", "x")]
    expected_um = 2 * PIXEL_UM
    fitting = reference_store(tmp_path / "fits.ome.zarr", stack[0], axes, [expected_um * factor] * 2)
    assert open_image(fitting).info.pixel_size_um == pytest.approx(expected_um)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", fitting, "--output", tmp_path / "out",
                        "--upsample", "--no-preview", *FAST)
    assert code == 0, err
    assert "warning" not in err and "note" not in err
    data, metadata = read_back(tmp_path / "out" / "fits_sr.ome.zarr")
    assert data.shape == (82, 74) and [axis["unit"] for axis in metadata["axes"]] == ["micrometer"] * 2
    assert metadata["coordinateTransformations"][0][0]["scale"] == pytest.approx([PIXEL_UM, PIXEL_UM])

    too_fine = reference_store(tmp_path / "fine.ome.zarr", stack[0], axes, [PIXEL_UM * factor] * 2)
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", too_fine, "--output", tmp_path / "out2",
                        "--upsample", "--no-preview", *FAST)
    assert code == 0, err
    assert "has 62.6 nm pixels" in err and "trained on inputs of 125.2 nm pixels (with --upsample)" in err


def test_resume_onto_an_output_with_a_damaged_chunk_gets_one_line_naming_it(capsys, checkpoint, time_store, tmp_path):
    out = tmp_path / "out"
    assert run_cli(capsys, "--checkpoint", checkpoint, "--input", time_store, "--output", out, *FAST)[0] == 0
    chunk = out / "cells_sr.ome.zarr" / "0" / "1" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40])  # a torn copy
    code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", time_store, "--output", out, "--resume", *FAST)
    assert code == 1 and err.count("\n") == 1, err
    assert "cells_sr.ome.zarr: frame 1 of this output cannot be read" in err and "--overwrite" in err
    assert run_cli(capsys, "--checkpoint", checkpoint, "--input", time_store, "--output", out, "--overwrite",
                   *FAST)[0] == 0


def test_resume_onto_a_damaged_tif_output_gets_one_line_naming_it(capsys, checkpoint, stack, tmp_path):
    source = tmp_path / "cells.tif"
    tifffile.imwrite(source, stack, photometric="minisblack")
    out = tmp_path / "out"
    assert run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", out, "--pixel-size", PIXEL_UM,
                   *FAST)[0] == 0
    output = out / "cells_sr.tif"
    whole = output.read_bytes()
    for cut in (len(whole) // 2, 100):
        output.write_bytes(whole[:cut])
        code, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", source, "--output", out, "--resume",
                            "--pixel-size", PIXEL_UM, *FAST)
        assert code == 1 and err.count("\n") == 1, err
        assert str(output) in err and "pass --overwrite to predict it again" in err


def test_ctrl_c_inside_a_store_write_lands_after_it(tmp_path, monkeypatch, recwarn):
    """Zarr schedules each write on its own event loop: an interrupt inside used to leave the write unscheduled
    ("coroutine ... was never awaited" on the terminal) or running after the command's last line."""
    import gc
    import os
    import signal

    import zarr.core.array
    import zarr.core.group
    import zarr.core.sync

    from experiments.image_io.ome_zarr import FrameStore

    store = FrameStore.create(tmp_path / "out.ome.zarr", (), (8, 8), 0.1, {"run": 1})
    schedule = zarr.core.sync.sync

    def interrupted(coroutine, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between making the write's coroutine and running it
        return schedule(coroutine, *args, **kwargs)

    for module in (zarr.core.sync, zarr.core.array, zarr.core.group):  # each holds its own name for it
        monkeypatch.setattr(module, "sync", interrupted)
    for call in (lambda: store.write(0, np.full((8, 8), 3, np.float32)), lambda: store.update_metadata(done=True)):
        with pytest.raises(KeyboardInterrupt):
            call()
    monkeypatch.undo()
    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]
    assert (store.read(0) == 3).all() and FrameStore.open(store.path).metadata == {"run": 1, "done": True}
