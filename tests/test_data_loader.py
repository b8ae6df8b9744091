"""PairedImageDataset on tiny generated folders: every check, value scaling, augmentation, cache, loaders."""

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch.utils.data import DataLoader

from experiments.pairs.augment import dihedral

from experiments.pairs.dataset import PairedImageDataset, make_loader

from experiments.image_io.images import read_image

from experiments.data.layout import DatasetError, list_test_levels
from experiments.pairs import cache as cache_module
from experiments.pairs.augment import dihedral_choices

SIZE = 8


def write(folder: Path, name: str, image: np.ndarray, **options) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / name, image, **options)
    return folder / name


def make_split(root: Path, prefix: str = "training", count: int = 6, seed: int = 0, shape=(SIZE, SIZE)) -> list:
    """Write ``count`` random float32 pairs into <root>/<prefix>_wf and _gt; returns [(wf, gt), ...]."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        wf, gt = rng.random(shape, dtype=np.float32), rng.random(shape, dtype=np.float32)
        write(root / f"{prefix}_wf", f"{i:03d}.tif", wf)
        write(root / f"{prefix}_gt", f"{i:03d}.tif", gt)
        pairs.append((wf, gt))
    return pairs


@pytest.fixture
def train_root(tmp_path):
    return tmp_path, make_split(tmp_path)


# --- layout and pairing -----------------------------------------------------------------------


@pytest.mark.parametrize("cache", [True, False])
def test_items_are_model_range_pairs_in_name_order(train_root, cache):
    root, pairs = train_root
    dataset = PairedImageDataset(root, "train", cache=cache)
    assert len(dataset) == len(pairs)
    wf, gt = dataset[2]
    assert wf.shape == gt.shape == (1, SIZE, SIZE) and wf.dtype == gt.dtype == torch.float32
    np.testing.assert_allclose(wf[0].numpy(), 2 * pairs[2][0] - 1, atol=1e-6)
    np.testing.assert_allclose(gt[0].numpy(), 2 * pairs[2][1] - 1, atol=1e-6)
    wf_batch, gt_batch = dataset[[4, 1]]
    assert wf_batch.shape == (2, 1, SIZE, SIZE)
    np.testing.assert_allclose(gt_batch[1, 0].numpy(), 2 * pairs[1][1] - 1, atol=1e-6)
    np.testing.assert_array_equal(dataset[-1][0].numpy(), dataset[len(pairs) - 1][0].numpy())
    with pytest.raises(IndexError):
        dataset[len(pairs)]


def test_clone_root_is_accepted(tmp_path):
    make_split(tmp_path / "BioSR" / "Microtubules")
    assert len(PairedImageDataset(tmp_path, "train")) == 6


def test_not_a_data_set_says_what_to_run(tmp_path):
    with pytest.raises(DatasetError, match="make synthetic-data"):
        PairedImageDataset(tmp_path, "train")


def test_name_on_one_side_only_names_folder_and_files(train_root):
    root, _ = train_root
    write(root / "training_wf", "extra_a.tif", np.zeros((SIZE, SIZE), np.float32))
    (root / "training_gt" / "001.tif").unlink()
    with pytest.raises(DatasetError) as error:
        PairedImageDataset(root, "train")
    message = str(error.value)
    assert "extra_a.tif" in message and "001.tif" in message and str(root / "training_wf") in message


def test_unmatched_list_is_shortened(train_root):
    root, _ = train_root
    for i in range(9):
        write(root / "training_wf", f"only_{i}.tif", np.zeros((SIZE, SIZE), np.float32))
    with pytest.raises(DatasetError, match=r"only_0\.tif.*\(9 in all\)"):
        PairedImageDataset(root, "train")


@pytest.mark.parametrize("cache", [True, False])
def test_shape_mismatch_between_input_and_target(train_root, cache):
    root, _ = train_root
    write(root / "training_gt", "003.tif", np.zeros((SIZE, SIZE + 2), np.float32))
    with pytest.raises(DatasetError, match=r"003\.tif.*\(8, 8\).*\(8, 10\)"):
        PairedImageDataset(root, "train", cache=cache)


def test_pair_with_a_different_size_from_the_rest(train_root):
    root, _ = train_root
    for side in ("wf", "gt"):
        write(root / f"training_{side}", "004.tif", np.zeros((SIZE + 1, SIZE + 1), np.float32))
    with pytest.raises(DatasetError, match=r"004\.tif.*same size"):
        PairedImageDataset(root, "train")


def test_empty_folder(tmp_path):
    make_split(tmp_path)
    for path in (tmp_path / "training_gt").iterdir():
        path.unlink()
    (tmp_path / "training_gt" / "readme.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=f"no .tif.*{tmp_path / 'training_gt'}"):
        PairedImageDataset(tmp_path, "train")


def test_missing_folder(train_root):
    root, _ = train_root
    with pytest.raises(DatasetError, match=f"missing folder {root / 'validate_wf'}"):
        PairedImageDataset(root, "validate")


def test_non_tif_files_are_ignored_and_suffix_case_is_not(train_root):
    root, _ = train_root
    (root / "training_wf" / "notes.txt").write_text("hello")
    (root / "training_gt" / "thumbnail.png").write_bytes(b"\x89PNG")
    write(root / "training_wf", "upper.TIFF", np.zeros((SIZE, SIZE), np.float32))
    write(root / "training_gt", "upper.TIFF", np.ones((SIZE, SIZE), np.float32))
    dataset = PairedImageDataset(root, "train")
    assert len(dataset) == 7
    assert dataset.files.names[-1] == "upper.TIFF"


def test_test_split_uses_the_level_and_the_shared_targets(tmp_path):
    rng = np.random.default_rng(3)
    gt = [rng.random((SIZE, SIZE), dtype=np.float32) for _ in range(3)]
    for i, image in enumerate(gt):
        write(tmp_path / "test_gt", f"{i:03d}.tif", image)
        for level in ("level_01", "level_09"):
            write(tmp_path / "test_wf" / level, f"{i:03d}.tif", np.full((SIZE, SIZE), int(level[-1]) / 10, np.float32))
    assert list_test_levels(tmp_path) == ["level_01", "level_09"]
    for level in ("level_01", "level_09"):
        dataset = PairedImageDataset(tmp_path, "test", level=level)
        wf, target = dataset[1]
        assert torch.allclose(wf, torch.tensor(int(level[-1]) / 10 * 2 - 1))
        np.testing.assert_allclose(target[0].numpy(), 2 * gt[1] - 1, atol=1e-6)
    with pytest.raises(DatasetError, match="level_05"):
        PairedImageDataset(tmp_path, "test", level="level_05")


def test_bad_options_name_the_choices(train_root):
    root, _ = train_root
    with pytest.raises(ValueError, match="'train', 'validate', 'test'"):
        PairedImageDataset(root, "training")
    with pytest.raises(ValueError, match="'tutorial', 'percentile'"):
        PairedImageDataset(root, "train", normalization="zscore")
    with pytest.raises(ValueError, match="'first', 'mean', 'max'"):
        PairedImageDataset(root, "train", reduce="median")


# --- pixel values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, scale", [(np.float32, 1.0), (np.float64, 1.0), (np.uint8, 255.0), (np.uint16, 65535.0)]
)
def test_values_are_scaled_by_dtype_then_to_minus_one_one(tmp_path, dtype, scale):
    image = (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) / (SIZE * SIZE - 1) * scale).astype(dtype)
    for side in ("wf", "gt"):
        write(tmp_path / f"training_{side}", "a.tif", image)
    wf, _ = PairedImageDataset(tmp_path, "train")[0]
    np.testing.assert_allclose(wf[0].numpy(), image / scale * 2 - 1, atol=1e-5)
    assert wf.min() == -1 and wf.max() == 1


def test_percentile_normalization_per_image(tmp_path):
    image = np.random.default_rng(0).random((32, 32)) * 5000 + 100
    for side in ("wf", "gt"):
        write(tmp_path / f"training_{side}", "a.tif", image.astype(np.uint16))
    wf, _ = PairedImageDataset(tmp_path, "train", normalization="percentile", percentiles=(2.0, 98.0))[0]
    values = wf[0].numpy()
    # 2 % of the pixels lie below -1 and 2 % above 1, as the percentiles say.
    assert np.mean(values < -1) == pytest.approx(0.02, abs=0.005)
    assert np.mean(values > 1) == pytest.approx(0.02, abs=0.005)
    plain, _ = PairedImageDataset(tmp_path, "train", cache=tmp_path / "other")[0]
    assert plain.max() < -0.8  # uint16 / 65535 stays near 0 -> near -1 without percentiles


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_names_the_file(train_root, bad):
    root, _ = train_root
    image = np.zeros((SIZE, SIZE), np.float32)
    image[2, 3] = bad
    write(root / "training_wf", "002.tif", image)
    with pytest.raises(DatasetError, match=r"002\.tif.*NaN or infinite"):
        PairedImageDataset(root, "train")  # the cache build reads every file
    direct = PairedImageDataset(root, "train", cache=False)  # checks happen on read
    with pytest.raises(DatasetError, match=r"002\.tif"):
        direct[2]


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize(
    "shape, axes, kind, photometric",
    [((3, SIZE, SIZE), 0, "stack", "minisblack"), ((SIZE, SIZE, 3), -1, "RGB", "rgb")],
)
def test_stack_or_rgb_needs_reduce(tmp_path, shape, axes, kind, photometric, cache):
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    for side in ("wf", "gt"):
        write(tmp_path / f"training_{side}", "a.tif", image, photometric=photometric)
    assert tifffile.imread(tmp_path / "training_wf" / "a.tif").shape == shape
    with pytest.raises(DatasetError, match=f"a.tif.*{kind}.*reduce="):
        PairedImageDataset(tmp_path, "train", cache=cache)
    expected = {
        "first": np.take(image, 0, axis=axes),
        "mean": image.mean(axis=axes),
        "max": image.max(axis=axes),
    }
    for reduce, reduced in expected.items():
        dataset = PairedImageDataset(tmp_path, "train", reduce=reduce, cache=cache and tmp_path / reduce)
        wf, gt = dataset[0]
        assert wf.shape == (1, SIZE, SIZE)
        np.testing.assert_allclose(wf[0].numpy(), 2 * reduced - 1, atol=1e-5)


def test_mean_of_a_uint8_stack_keeps_its_scaling(tmp_path):
    stack = np.stack([np.full((SIZE, SIZE), 255, np.uint8), np.zeros((SIZE, SIZE), np.uint8)])
    path = write(tmp_path, "stack.tif", stack, photometric="minisblack")
    np.testing.assert_allclose(read_image(path, reduce="mean"), 0.0, atol=1e-6)  # mean 0.5 -> 0 in [-1, 1]


def test_single_plane_stack_needs_no_reduce(tmp_path):
    path = write(tmp_path, "one.tif", np.ones((1, SIZE, SIZE), np.float32))
    assert read_image(path).shape == (SIZE, SIZE)


# --- augmentation -----------------------------------------------------------------------------


def _dihedral_group(image: torch.Tensor) -> list[torch.Tensor]:
    return [dihedral(image, k) for k in range(8)]


def test_dihedral_transforms_are_the_eight_distinct_symmetries():
    image = torch.arange(16.0).reshape(4, 4)
    group = _dihedral_group(image)
    assert len({tuple(g.flatten().tolist()) for g in group}) == 8
    assert torch.equal(group[1], image.rot90(1)) and torch.equal(group[4], image.flip(-1))
    with pytest.raises(ValueError, match="0..7"):
        dihedral(image, 8)


def test_augmentation_applies_the_same_transform_to_input_and_target(train_root):
    root, _ = train_root
    plain = PairedImageDataset(root, "train")
    augmented = PairedImageDataset(root, "train", augment=True, seed=5)
    used = set()
    for epoch in range(3):
        augmented.set_epoch(epoch)
        for index in range(len(plain)):
            wf, gt = plain[index]
            wf_aug, gt_aug = augmented[index]
            k = [i for i, g in enumerate(_dihedral_group(wf)) if torch.equal(g, wf_aug)]
            assert len(k) == 1, "the input must be exactly one dihedral transform of the original"
            assert torch.equal(dihedral(gt, k[0]), gt_aug), "the target must get the same transform"
            used.add(k[0])
    assert len(used) >= 5  # 18 draws over 8 transforms


def test_augmentation_is_seeded_and_the_same_in_batches(train_root):
    root, _ = train_root
    a = PairedImageDataset(root, "train", augment=True, seed=1)
    b = PairedImageDataset(root, "train", augment=True, seed=1)
    singles = torch.stack([a[i][0] for i in range(len(a))])
    assert torch.equal(singles, b[list(range(len(b)))][0])
    choices = dihedral_choices(np.arange(1000), seed=1, epoch=0)
    assert not np.array_equal(choices, dihedral_choices(np.arange(1000), seed=2, epoch=0))
    assert not np.array_equal(choices, dihedral_choices(np.arange(1000), seed=1, epoch=1))
    assert np.bincount(choices, minlength=8).min() > 90  # roughly uniform over the 8 transforms


def test_augmentation_needs_square_images(tmp_path):
    make_split(tmp_path, shape=(SIZE, SIZE + 2))
    assert PairedImageDataset(tmp_path, "train")[0][0].shape == (1, SIZE, SIZE + 2)
    with pytest.raises(DatasetError, match="square"):
        PairedImageDataset(tmp_path, "train", augment=True)


# --- cache ------------------------------------------------------------------------------------


def _cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.npy"))


def test_cache_is_built_then_reused(train_root, monkeypatch):
    root, _ = train_root
    first = PairedImageDataset(root, "train")
    files = _cache_files(root / ".cache")
    assert len(files) == 2 and any(f.startswith("training_wf") for f in files)
    assert not list((root / ".cache").glob("*.tmp"))

    def no_build(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(cache_module, "build_cache", no_build)
    again = PairedImageDataset(root, "train")
    assert _cache_files(root / ".cache") == files
    assert torch.equal(first[[0, 1, 2]][0], again[[0, 1, 2]][0])


def test_cache_is_rebuilt_when_a_file_changes(train_root):
    root, pairs = train_root
    PairedImageDataset(root, "train")
    old = _cache_files(root / ".cache")
    write(root / "training_gt", "002.tif", np.full((SIZE, SIZE), 0.75, np.float32))
    stat = os.stat(root / "training_gt" / "002.tif")
    os.utime(root / "training_gt" / "002.tif", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    dataset = PairedImageDataset(root, "train")
    new = _cache_files(root / ".cache")
    assert len(new) == 2
    gt_files = [n for n in new if n.startswith("training_gt")]
    assert gt_files[0] not in old, "the target cache must be rebuilt"
    assert [n for n in new if n.startswith("training_wf")] == [n for n in old if n.startswith("training_wf")]
    assert torch.allclose(dataset[2][1], torch.tensor(0.5))


def test_cache_depends_on_normalization_settings(train_root):
    root, _ = train_root
    PairedImageDataset(root, "train")
    PairedImageDataset(root, "train", normalization="percentile")
    PairedImageDataset(root, "train", normalization="percentile", percentiles=(0.0, 100.0))
    # One cache per folder is kept: each new setting replaces the previous file.
    assert len(_cache_files(root / ".cache")) == 2


def test_cache_equals_direct_reads_and_may_live_elsewhere(train_root, tmp_path_factory):
    root, _ = train_root
    elsewhere = tmp_path_factory.mktemp("cache")
    cached = PairedImageDataset(root, "train", cache=elsewhere, normalization="percentile")
    direct = PairedImageDataset(root, "train", cache=False, normalization="percentile")
    assert len(_cache_files(elsewhere)) == 2 and not (root / ".cache").exists()
    indices = list(range(len(direct)))
    for cached_side, direct_side in zip(cached[indices], direct[indices]):
        assert torch.equal(cached_side, direct_side)


def test_interrupted_build_leaves_no_cache(train_root, monkeypatch):
    root, _ = train_root
    calls = []

    def failing_read(path):
        calls.append(path)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return np.zeros((SIZE, SIZE), np.float32)

    with pytest.raises(KeyboardInterrupt):
        cache_module.build_cache(root / ".cache" / "x.npy", [root / "a"] * 6, (SIZE, SIZE), failing_read)
    assert list((root / ".cache").iterdir()) == []


@pytest.mark.parametrize("workers", [0, 2])
def test_loaders_deliver_every_pair_once(train_root, workers):
    root, pairs = train_root
    dataset = PairedImageDataset(root, "train")
    expected = torch.stack([torch.from_numpy(2 * wf - 1) for wf, _ in pairs])
    for loader in (
        make_loader(dataset, batch_size=4, shuffle=True, num_workers=workers, seed=3),
        DataLoader(dataset, batch_size=4, shuffle=True, num_workers=workers),
    ):
        batches = list(loader)
        assert [len(wf) for wf, _ in batches] == [4, 2]
        assert batches[0][0].shape == (4, 1, SIZE, SIZE)
        seen = torch.cat([wf for wf, _ in batches])[:, 0]
        order = [int(torch.argmin(((expected - s) ** 2).sum((1, 2)))) for s in seen]
        assert sorted(order) == list(range(len(pairs)))
        assert torch.allclose(seen, expected[order], atol=1e-6)


def test_make_loader_order_is_seeded(train_root):
    root, _ = train_root
    dataset = PairedImageDataset(root, "train")
    first = [wf for wf, _ in make_loader(dataset, batch_size=2, seed=7)]
    second = [wf for wf, _ in make_loader(dataset, batch_size=2, seed=7)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
