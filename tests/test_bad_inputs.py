"""Hostile user files: every reader of a user's TIF (the data set with and without its cache, prediction's
reader) refuses them with an InputError that names the file, and lists folders the same way.

Each bad file is made here with tifffile or raw bytes; the expectations are what tifffile itself reports
about the file (its axes) and arithmetic on the written values, not the readers' own output.
"""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from experiments.pairs.dataset import PairedImageDataset
from experiments.image_io.tif_io import InputError, find_inputs, read_frames

SIZE = 8
BAD_NAME = "001.tif"


def _truncated(path: Path) -> None:
    tifffile.imwrite(path, np.random.default_rng(0).random((SIZE, SIZE), dtype=np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # header intact, pixel data cut short, as after a failed copy


def _stack_cut_short(path: Path) -> None:
    # a plain multi-page TIF (no tifffile metadata, as many acquisition programs write), cut in half: tifffile
    # reads its first page as the whole image and only logs that the others are gone
    tifffile.imwrite(path, np.random.default_rng(0).random((5, 64, 64), dtype=np.float32), metadata=None)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _text(path: Path) -> None:
    path.write_text("Sample 12, widefield, 488 nm\n")


def _complex(path: Path) -> None:
    tifffile.imwrite(path, np.ones((SIZE, SIZE), np.complex64))


def _int32(path: Path) -> None:
    tifffile.imwrite(path, np.ones((SIZE, SIZE), np.int32))


# kind -> (how to make the file, a phrase of the message that says what went wrong)
BAD_FILES = {
    "truncated": (_truncated, "cannot be read as a TIF"),
    "stack_cut_short": (_stack_cut_short, "damaged TIF (tifffile: <tifffile.TiffPages @8> invalid page offset"),
    "zero_bytes": (_zero_bytes, "cannot be read as a TIF"),
    "text": (_text, "cannot be read as a TIF"),
    "complex": (_complex, "pixel type complex64 is not supported"),
    "int32": (_int32, "pixel type int32 is not supported"),
}


def make_split(root: Path, count: int = 3) -> None:
    """``count`` float32 pairs in [0, 1] in <root>/training_wf and training_gt, named 000.tif, 001.tif, ..."""
    rng = np.random.default_rng(1)
    for side in ("wf", "gt"):
        (root / f"training_{side}").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            tifffile.imwrite(root / f"training_{side}" / f"{i:03d}.tif", rng.random((SIZE, SIZE), dtype=np.float32))


def load_everything(root: Path, cache: bool, **options) -> PairedImageDataset:
    """Build the data set and read every pair, so that a reader without cache meets every file too."""
    dataset = PairedImageDataset(root, "train", cache=cache, **options)
    dataset[list(range(len(dataset)))]
    return dataset


def assert_names(error: pytest.ExceptionInfo, path: Path, phrase: str) -> None:
    message = str(error.value)
    assert str(path) in message, message
    assert phrase in message, message


# --- class 1: any unreadable file, named, in every reader ------------------------------------------------------


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_data_set_names_a_bad_file(tmp_path, kind, cache):
    make_split(tmp_path)
    make, phrase = BAD_FILES[kind]
    bad = tmp_path / "training_wf" / BAD_NAME
    make(bad)
    with pytest.raises(InputError) as error:
        load_everything(tmp_path, cache)
    assert_names(error, bad, phrase)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_prediction_reader_names_a_bad_file(tmp_path, kind, capfd):
    make, phrase = BAD_FILES[kind]
    bad = tmp_path / "cells.tif"
    make(bad)
    with pytest.raises(InputError) as error:
        read_frames(bad)
    assert_names(error, bad, phrase)
    assert capfd.readouterr().err == ""  # the one line is the error's: nothing of tifffile's on the terminal


def test_hidden_files_are_skipped_by_every_folder_listing(tmp_path):
    make_split(tmp_path)
    wf = tmp_path / "training_wf"
    # What macOS leaves on a foreign disk: an AppleDouble resource fork beside each copied file.
    for side in ("wf", "gt"):
        (tmp_path / f"training_{side}" / "._000.tif").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    (wf / ".unpaired.tif").write_bytes(b"")  # on one side only: not a pairing problem either
    dataset = load_everything(tmp_path, cache=True)
    assert dataset.files.names == ("000.tif", "001.tif", "002.tif")
    assert find_inputs([wf]) == list(dataset.files.wf_paths)


# --- class 2: finite on disk, not finite (or far off) after scaling -------------------------------------------


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize(
    "dtype, value, normalization, phrase",
    [
        # float32 near its maximum: percentile scaling divides by the spread of the other pixels (~1e-3).
        (np.float32, 3e38, "percentile", "infinite or NaN when scaled"),
        # float64 beyond float32's range: finite in the file, inf once read as float32.
        (np.float64, 1e300, "tutorial", "after conversion to float32"),
        # float32 3e38 under the tutorial scaling, and float counts 0..65535: far outside [0, 1].
        (np.float32, 3e38, "tutorial", "float values span"),
        (np.float32, 65535.0, "tutorial", "float values span"),
    ],
)
def test_data_set_refuses_values_the_network_cannot_use(tmp_path, dtype, value, normalization, phrase, cache):
    make_split(tmp_path)
    image = (np.random.default_rng(2).random((32, 32)) * 1e-3).astype(dtype)
    image[5, 7] = value
    for side in ("wf", "gt"):
        tifffile.imwrite(tmp_path / f"training_{side}" / BAD_NAME, image)
    for side in ("wf", "gt"):  # the others must have the same size
        for name in ("000.tif", "002.tif"):
            tifffile.imwrite(tmp_path / f"training_{side}" / name, np.zeros((32, 32), np.float32))
    with pytest.raises(InputError) as error:
        load_everything(tmp_path, cache, normalization=normalization)
    assert_names(error, tmp_path / "training_wf" / BAD_NAME, phrase)


def test_float_counts_train_under_percentile_normalization(tmp_path):
    """The refusal of 0..65535 floats is about the tutorial scaling only: percentiles map them to [0, 1]."""
    counts = np.arange(SIZE * SIZE, dtype=np.float32).reshape(SIZE, SIZE) * 1000.0
    for side in ("wf", "gt"):
        (tmp_path / f"training_{side}").mkdir(parents=True)
        tifffile.imwrite(tmp_path / f"training_{side}" / "a.tif", counts)
    wf, _ = PairedImageDataset(tmp_path, "train", normalization="percentile", percentiles=(0.0, 100.0))[0]
    np.testing.assert_allclose(wf[0].numpy(), counts / counts.max() * 2 - 1, atol=1e-5)


# --- class 6: what is a plane, a stack, or colour channels, by tifffile's axes --------------------------------


def _interleaved_two_channel(path: Path) -> np.ndarray:
    image = np.random.default_rng(3).random((SIZE, SIZE + 2, 2), dtype=np.float32)
    tifffile.imwrite(path, image, photometric="minisblack", planarconfig="contig")
    return image.mean(axis=-1)


def _planar_rgb(path: Path) -> np.ndarray:
    image = np.random.default_rng(4).integers(0, 256, (3, SIZE, SIZE + 2), dtype=np.uint8)
    tifffile.imwrite(path, image, photometric="rgb", planarconfig="separate")
    return image.mean(axis=0) / 255.0


def _imagej_channels(path: Path) -> np.ndarray:
    image = np.random.default_rng(5).random((2, SIZE, SIZE + 2), dtype=np.float32)
    tifffile.imwrite(path, image, imagej=True, metadata={"axes": "CYX"})
    return image.mean(axis=0)


# kind -> (writes the file and returns its channel mean in [0, 1], tifffile's axes for it)
COLOURED = {
    "YXS two channels": (_interleaved_two_channel, "YXS"),
    "SYX planar RGB": (_planar_rgb, "SYX"),
    "CYX channels": (_imagej_channels, "CYX"),
}


@pytest.mark.parametrize("kind", sorted(COLOURED))
def test_prediction_takes_colour_channels_as_channels_not_frames(tmp_path, kind):
    write, axes = COLOURED[kind]
    path = tmp_path / "colour.tif"
    mean = write(path)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == axes  # the layout under test, as tifffile reads it
    with pytest.raises(InputError) as error:
        read_frames(path)
    assert_names(error, path, "channels")
    frames, info = read_frames(path, reduce="mean")
    assert frames.shape == (1, SIZE, SIZE + 2)  # one frame of the full width, not 2 or 3 frames
    np.testing.assert_allclose(frames[0] / info.unit_divisor, mean, atol=1e-6)


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("kind", sorted(COLOURED))
def test_data_set_takes_colour_channels_as_channels(tmp_path, kind, cache):
    write, _ = COLOURED[kind]
    for side in ("wf", "gt"):
        (tmp_path / f"training_{side}").mkdir(parents=True)
        mean = write(tmp_path / f"training_{side}" / "a.tif")
    with pytest.raises(InputError) as error:
        load_everything(tmp_path, cache)
    assert_names(error, tmp_path / "training_wf" / "a.tif", "channels")
    wf, _ = load_everything(tmp_path, cache and tmp_path / "mean", reduce="mean")[0]
    np.testing.assert_allclose(wf[0].numpy(), mean * 2 - 1, atol=1e-5)
