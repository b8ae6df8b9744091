"""The real-structure data set: layout, determinism, whole-cell split, near-empty windows skipped."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from experiments.pairs.dataset import PairedImageDataset

from experiments.data.layout import list_test_levels
from experiments.microscope.biosr_sim import (
    CELL_DIR,
    CELL_SPLIT,
    RealStructureConfig,
    check_split,
    dihedral,
    generate,
    load_cells,
    read_manifest,
)

SMALL = RealStructureConfig(size=16)  # windows of 32 SIM px
SPLIT = {"train": ("a", "b", "c"), "validate": ("d",), "test": ("e", "f")}


@pytest.fixture(scope="module")
def crops() -> dict[str, np.ndarray]:
    """Six 96 x 96 pieces of real cells (one per fake cell name), the left two thirds of 'a' emptied."""
    cells = load_cells(("Cell_002", "Cell_011", "Cell_013"))
    pieces = [image[y : y + 96, 400 : 400 + 96] for image in cells.values() for y in (300, 600)]
    images = dict(zip("abcdef", (p.copy() for p in pieces)))
    images["a"][:, :64] = 0.0
    return images


def small_set(out: Path, images, seed: int = 0, batch: int = 256, config=SMALL) -> Path:
    generate(out, train=12, validate=3, test_per_level=4, seed=seed, config=config, cell_split=SPLIT,
             cell_images=images, batch=batch)
    return out


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_shipped_cells_are_the_nine_biosr_images_with_their_pixel_size():
    names = sorted(name for split in CELL_SPLIT.values() for name in split)
    assert names == sorted(p.name.removesuffix("_SIM_gt.tif") for p in CELL_DIR.glob("*.tif"))
    assert len(names) == 9 and (CELL_DIR / "README.md").is_file()
    with tifffile.TiffFile(CELL_DIR / "Cell_013_SIM_gt.tif") as tif:
        page = tif.pages[0]
        assert page.dtype == np.uint16 and page.shape == (1004, 1004)
        numerator, denominator = page.tags["XResolution"].value
        assert numerator / denominator == pytest.approx(1 / 0.0313, rel=1e-3)  # pixels per um


def test_layout_passes_the_loader_with_float_images_in_unit_range(tmp_path, crops):
    root = small_set(tmp_path, crops)
    assert list_test_levels(root) == [f"level_{i:02d}" for i in range(1, 10)]
    assert len(PairedImageDataset(root, "train")) == 12 and len(PairedImageDataset(root, "validate")) == 3
    assert len(PairedImageDataset(root, "test", level="level_01")) == 4
    for path in root.rglob("*.tif"):
        image = tifffile.imread(path)
        assert image.dtype == np.float32 and image.shape == (16, 16)
        assert image.min() >= 0 and image.max() <= 1


def test_same_seed_same_bytes_whatever_the_batch_size(tmp_path, crops):
    a = digest(small_set(tmp_path / "a", crops, seed=4))
    b = digest(small_set(tmp_path / "b", crops, seed=4, batch=5))
    c = digest(small_set(tmp_path / "c", crops, seed=5))
    assert a == b
    tifs = [k for k in a if k.endswith(".tif")]
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in tifs)


def test_cells_never_leak_across_splits(tmp_path, crops):
    root = small_set(tmp_path, crops)
    rows = read_manifest(root)
    used = {split: {row["cell"] for row in rows if row["split"] == split} for split in SPLIT}
    for split, names in SPLIT.items():
        assert used[split] == set(names), split  # every cell of the split serves it, and no other cell
    assert not (used["train"] & used["validate"] or used["train"] & used["test"] or used["validate"] & used["test"])
    # The manifest tells the truth: each target is its recorded window (2 x 2 means, an independent route),
    # and matches it far better than the same place in any cell of another split.
    for row in rows:
        split_dir = {"train": "training_gt", "validate": "validate_gt", "test": "test_gt"}[row["split"]]
        target = tifffile.imread(root / split_dir / row["file"]).ravel()

        def match(cell: str) -> float:
            window = crops[cell][int(row["y"]) : int(row["y"]) + 32, int(row["x"]) : int(row["x"]) + 32]
            window = dihedral(window, int(row["quarter_turns"]), row["flipped"] == "1")
            binned = window.reshape(16, 2, 16, 2).mean(axis=(1, 3)).ravel()
            return 0.0 if binned.std() == 0 else np.corrcoef(binned, target)[0, 1]  # an emptied place matches nothing

        others = [name for split, names in SPLIT.items() if split != row["split"] for name in names]
        assert match(row["cell"]) > 0.95 and match(row["cell"]) > max(match(other) for other in others) + 0.2


def test_near_empty_windows_are_skipped(tmp_path, crops):
    def foreground(rows, config) -> list[float]:
        fractions = []
        for row in rows:
            if row["cell"] == "a":  # the cell with an empty left two thirds
                image = crops["a"]
                window = image[int(row["y"]) : int(row["y"]) + 32, int(row["x"]) : int(row["x"]) + 32]
                threshold = config.foreground_threshold * np.quantile(image, config.model.reference_percentile / 100)
                fractions.append(float((window > threshold).mean()))
        return fractions

    kept = foreground(read_manifest(small_set(tmp_path / "kept", crops)), SMALL)
    assert len(kept) == 4 and min(kept) >= SMALL.min_foreground_fraction
    # Control: without the criterion, the same seed does draw empty windows from cell a.
    lax = RealStructureConfig(size=16, min_foreground_fraction=0.0)
    generate(tmp_path / "lax", train=60, validate=1, test_per_level=1, config=lax, cell_split=SPLIT, cell_images=crops)
    assert min(foreground(read_manifest(tmp_path / "lax"), lax)) < SMALL.min_foreground_fraction


def test_a_split_sharing_a_cell_is_refused():
    with pytest.raises(ValueError, match="whole cells"):
        check_split({"train": ("a", "b"), "validate": ("c",), "test": ("b",)})
    check_split(CELL_SPLIT)


def test_a_cell_without_usable_windows_is_named_with_what_to_change(tmp_path, crops):
    speck = np.zeros((96, 96), np.float32)
    speck[40:45, 40:45] = 1.0  # 25 bright pixels: at most 2.4 % of any 32 x 32 window
    with pytest.raises(ValueError, match="d: no window.*lower the criterion"):
        small_set(tmp_path / "speck", dict(crops, d=speck))
    with pytest.raises(ValueError, match="d holds no light"):
        small_set(tmp_path / "dark", dict(crops, d=np.zeros((96, 96), np.float32)))


@pytest.mark.slow
def test_command_line_cuts_the_shipped_cells_and_writes_a_preview(tmp_path):
    from experiments.make_data import main

    main(["--structures", "biosr-sim", "--out", str(tmp_path), "--train", "4", "--validate", "2",
          "--test-per-level", "2", "--size", "64"])
    assert (tmp_path / "synthetic_preview.png").stat().st_size > 10_000
    assert len(PairedImageDataset(tmp_path, "test", level="level_09")) == 2
    cells = {row["split"]: row["cell"] for row in read_manifest(tmp_path)}
    assert cells["validate"] in CELL_SPLIT["validate"] and cells["test"] in CELL_SPLIT["test"]
