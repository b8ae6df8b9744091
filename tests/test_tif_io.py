"""Users' TIFs: finding inputs, strict reading of images and stacks, float32 writing with metadata, no overwrites."""

import json
import xml.etree.ElementTree as ElementTree
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import tifffile

from experiments.image_io.images import read_image
from experiments.image_io.tif_io import (
    InputError,
    find_inputs,
    output_path_for,
    read_frames,
    read_metadata,
    to_model_frames,
    write_frames,
)

RNG = np.random.default_rng(0)


def random_image(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    return RNG.normal(0.3, 2.0, shape).astype(dtype)


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, photometric="minisblack" if array.ndim < 3 or array.shape[-1] > 4 else None)
    return path


# --- finding inputs -------------------------------------------------------------------------------------------


def test_folders_give_their_tifs_sorted_and_files_stay_in_order(tmp_path):
    folder = tmp_path / "cells"
    for name in ("b.tif", "A.TIFF", "c.Tif", ".hidden.tif", "notes.txt", "view.png"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"")
    (folder / "sub").mkdir()
    (folder / "sub" / "deeper.tif").write_bytes(b"")
    single = tmp_path / "z.tiff"
    single.write_bytes(b"")
    found = find_inputs([single, str(folder), folder / "b.tif"])  # b.tif twice: kept once
    assert found == [single, folder / "A.TIFF", folder / "b.tif", folder / "c.Tif"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp / "missing.tif", "no such file or folder"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "holds no .tif"),
        (lambda tmp: (tmp / "image.png").write_bytes(b"png") and tmp / "image.png", "not a TIF file"),
    ],
)
def test_bad_input_paths_are_named(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(InputError, match=message) as error:
        find_inputs([path])
    assert str(path) in str(error.value)


def test_no_inputs_at_all_is_an_error():
    with pytest.raises(InputError, match="no input"):
        find_inputs([])


# --- reading --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "float64"])
def test_single_images_read_as_one_frame_in_source_units(tmp_path, dtype):
    image = random_image((37, 53), dtype)
    frames, info = read_frames(save(tmp_path / "one.tif", image))
    assert frames.shape == (1, 37, 53) and frames.dtype == np.float32
    np.testing.assert_array_equal(frames[0], image.astype(np.float32))
    assert info.dtype == dtype and info.stored_shape == (37, 53) and info.colour_reduced is None
    assert info.unit_divisor == {"uint8": 255.0, "uint16": 65535.0}.get(dtype, 1.0)


@pytest.mark.parametrize("shape", [(5, 40, 30), (3, 40, 30), (2, 3, 40, 30)])
def test_stacks_keep_their_frame_count(tmp_path, shape):
    stack = random_image(shape, "uint16")
    frames, info = read_frames(save(tmp_path / "stack.tif", stack))
    assert frames.shape == (int(np.prod(shape[:-2])), 40, 30)
    np.testing.assert_array_equal(frames, stack.reshape(-1, 40, 30).astype(np.float32))
    assert info.stored_shape == shape


def test_rgb_is_an_error_unless_a_reduction_is_given(tmp_path):
    rgb = random_image((20, 30, 3), "uint8")
    path = save(tmp_path / "colour.tif", rgb)
    with pytest.raises(InputError, match="RGB") as error:
        read_frames(path)
    assert str(path) in str(error.value)
    frames, info = read_frames(path, reduce="mean")
    np.testing.assert_allclose(frames[0], rgb.mean(axis=-1), rtol=1e-6)
    assert info.colour_reduced == "mean" and info.unit_divisor == 255.0
    first, _ = read_frames(path, reduce="first")
    np.testing.assert_array_equal(first[0], rgb[..., 0])


def test_rgb_stacks_reduce_each_frame(tmp_path):
    rgba = random_image((4, 20, 30, 4), "uint8")
    frames, _ = read_frames(save(tmp_path / "rgba.tif", rgba), reduce="max")
    np.testing.assert_array_equal(frames, rgba.max(axis=-1).astype(np.float32))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]], dtype=np.float32), "NaN or infinite"),
        (np.array([[0.0, np.inf], [1.0, 2.0]], dtype=np.float64), "NaN or infinite"),
        (np.array([[0.0, 1e300], [1.0, 2.0]], dtype=np.float64), "after conversion to float32"),
        (np.zeros((4, 4), dtype=np.int32), "pixel type int32 is not supported"),
    ],
)
def test_bad_pixels_are_errors_naming_the_file(tmp_path, array, message):
    path = save(tmp_path / "bad.tif", array)
    with pytest.raises(InputError, match=message) as error:
        read_frames(path)
    assert str(path) in str(error.value)


def test_unreadable_files_are_errors_naming_the_file(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"this is not a tif")
    with pytest.raises(InputError, match="cannot be read") as error:
        read_frames(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_model_frames_equal_the_training_pipeline(tmp_path, dtype):
    """The same file through read_frames + to_model_frames and through the data loader's read_image."""
    image = random_image((33, 41), dtype) if dtype != "float32" else RNG.random((33, 41), dtype=np.float32)
    path = save(tmp_path / "image.tif", image)  # floats in [0, 1]: training refuses others under "tutorial"
    frames, info = read_frames(path)
    for normalization in ("tutorial", "percentile"):
        np.testing.assert_array_equal(
            to_model_frames(frames, info, normalization)[0], read_image(path, normalization=normalization)
        )


def test_percentile_normalisation_is_per_frame(tmp_path):
    frame = random_image((30, 30), "float32")
    frames, info = read_frames(save(tmp_path / "stack.tif", np.stack([frame, 10 * frame + 3])))
    model = to_model_frames(frames, info, "percentile")
    np.testing.assert_allclose(model[0], model[1], atol=1e-5)


# --- writing --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("count", [1, 3, 5])
def test_frames_round_trip_through_write_and_read(tmp_path, dtype, count):
    source = save(tmp_path / "in.tif", random_image((count, 24, 36) if count > 1 else (24, 36), dtype))
    frames, _ = read_frames(source)
    out = tmp_path / "out" / "result.tif"
    write_frames(out, frames, {"seed": 3})
    again, info = read_frames(out)
    np.testing.assert_array_equal(again, frames)
    assert info.dtype == "float32"
    with tifffile.TiffFile(out) as tif:
        assert len(tif.pages) == count  # one page per frame, never packed as colour samples


def test_metadata_is_written_and_read_back(tmp_path):
    metadata = {"seed": 7, "checkpoint_sha256": "ab" * 32, "sampler": "x0", "steps": [100, 200], "nested": {"a": 1.5}}
    path = tmp_path / "sr.tif"
    write_frames(path, np.zeros((2, 8, 8), np.float32), metadata)
    assert read_metadata(path) == metadata
    with tifffile.TiffFile(path) as tif:  # plain JSON in the OME Image/Description
        assert tif.is_ome
        ome = ElementTree.fromstring(tif.pages[0].description)
        namespace = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}
        assert json.loads(ome.find("ome:Image/ome:Description", namespace).text) == metadata


def test_writing_replaces_atomically_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "sr.tif"
    write_frames(path, np.zeros((1, 8, 8), np.float32), {"run": 1})
    write_frames(path, np.ones((1, 8, 8), np.float32), {"run": 2})
    assert read_metadata(path) == {"run": 2} and read_frames(path)[0].max() == 1.0
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        write_frames(path, np.full((1, 8, 8), 5, np.float32), {"bad": object()})
    assert read_metadata(path) == {"run": 2}  # the failed write left the old file alone
    assert os.listdir(tmp_path) == ["sr.tif"]
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)  # usual mode, not 0600


@pytest.mark.parametrize(
    "frames, metadata, message",
    [
        (np.zeros((8, 8), np.float32), {}, r"\[N, H, W\]"),
        (np.zeros((1, 8, 8), np.float32), {"shape": [1]}, "reserved"),
    ],
)
def test_bad_writes_are_refused(tmp_path, frames, metadata, message):
    with pytest.raises(ValueError, match=message):
        write_frames(tmp_path / "x.tif", frames, metadata)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("tifffile_metadata", [{}, None])  # tifffile's own {"shape": ...} JSON, or nothing
def test_reading_metadata_from_a_plain_tif_names_the_file(tmp_path, tifffile_metadata):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), metadata=tifffile_metadata)
    with pytest.raises(InputError, match="no metadata written by write_frames") as error:
        read_metadata(path)
    assert str(path) in str(error.value)


# --- output paths ---------------------------------------------------------------------------------------------


def test_output_path_keeps_the_stem_and_adds_the_suffix():
    assert output_path_for("cells/a.tiff", "out", "_sr") == Path("out/a_sr.tif")
    assert output_path_for(Path("/data/b.TIF"), Path("/res"), "_std") == Path("/res/b_std.tif")


def test_the_same_frames_and_metadata_give_the_same_bytes_and_other_content_another_uuid(tmp_path):
    """The OME UUID comes from the content, not the clock: a fixed-seed prediction is bitwise reproducible."""
    from experiments.image_io.tif_io import write_frames

    frames = np.random.default_rng(0).random((2, 8, 8), dtype=np.float32)
    write_frames(tmp_path / "a.tif", frames, {"seed": 1}, 0.03)
    write_frames(tmp_path / "b.tif", frames, {"seed": 1}, 0.03)
    write_frames(tmp_path / "c.tif", frames + 1, {"seed": 1}, 0.03)
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    uuids = [tifffile.TiffFile(tmp_path / name).ome_metadata.split('UUID="')[1][:45] for name in ("a.tif", "c.tif")]
    assert uuids[0] != uuids[1] and uuids[0].startswith("urn:uuid:")
