"""One image through every route of the Model Zoo package (issue 24): ``bioimageio.core.predict`` (the
README's snippet), bioimageio.core's own test, the TorchScript weights called directly with the rdf's
pre- and post-processing (what deepImageJ does), and ``experiments.predict --hashed-noise`` give the same
image within 1e-4, on the test input and on real widefield crops of other sizes: one of several tiles
(not a multiple of anything) and one smaller than a tile. The package is exported from a real-structure
model, the study's L1 model shipped in ``pretrained/``."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from experiments import predict
from experiments.image_io.images import read_frames

pytest.importorskip("bioimageio.core", reason="the optional extra is not installed: pip install -e '.[export]'")

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "pretrained" / "tutorial-l1" / "model.pt"
EXAMPLE = REPO / "pretrained" / "example_widefield.ome.tif"  # real widefield, 62.6 nm pixels
SEED, STEPS = 3, 4
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> tuple[Path, Path]:
    """The zip and its unpacked folder, exported with the command's defaults (dpmpp2m) and its own test skipped."""
    folder = tmp_path_factory.mktemp("package")
    zip_path = folder / "model.zip"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")
        from experiments import export

        assert export.main(["--checkpoint", str(CHECKPOINT), "--out", str(zip_path), "--seed", str(SEED),
                            "--sampling-steps", str(STEPS), "--test-image", str(EXAMPLE), "--test-side", "192",
                            "--no-test"]) == 0
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder / "unzipped")
    return zip_path, folder / "unzipped"


def real_crops() -> dict[str, np.ndarray]:
    """Crops of the real widefield example in its stored dtype (uint16 or float), as a user would pass them."""
    frame = read_frames(EXAMPLE)[0][0]
    return {"several tiles, 150 x 211": frame[:150, 20:231], "smaller than a tile, 72 x 90": frame[100:172, 50:140]}


def through_library(zip_path: Path, image: np.ndarray) -> np.ndarray:
    from bioimageio.core import load_description
    from bioimageio.core import predict as library_predict

    model = load_description(zip_path)
    sample = library_predict(model=model, inputs={"widefield": image[None, None]})
    return np.asarray(sample.members["super_resolved"].data)[0, 0]


def description(zip_path: Path):
    from bioimageio.spec import load_description

    return load_description(zip_path)


def through_weights(zip_path: Path, unzipped: Path, image: np.ndarray) -> np.ndarray:
    """The TorchScript weights with the pre- and post-processing the rdf declares, applied here in numpy, as
    a Java tool runs them: none of the project's code, no bioimageio.core."""
    model = description(zip_path)
    value = image.astype(np.float32)
    for step in model.inputs[0].preprocessing:
        if step.id == "scale_range":
            low = np.percentile(value, step.kwargs.min_percentile)
            high = np.percentile(value, step.kwargs.max_percentile)
            value = (value - low) / (high - low + step.kwargs.eps)
        elif step.id == "scale_linear":
            value = value * step.kwargs.gain + step.kwargs.offset
        elif step.id != "ensure_dtype":
            raise AssertionError(f"a pre-processing step this route does not know: {step.id}")
    module = torch.jit.load(str(unzipped / Path(str(model.weights.torchscript.source)).name))
    with torch.no_grad():
        value = module(torch.from_numpy(value.astype(np.float32))[None, None])[0, 0].numpy()
    for step in model.outputs[0].postprocessing:
        if step.id == "scale_linear":
            value = value * step.kwargs.gain + step.kwargs.offset
        elif step.id != "ensure_dtype":
            raise AssertionError(f"a post-processing step this route does not know: {step.id}")
    return value


def through_predict(image: np.ndarray, folder: Path) -> np.ndarray:
    tifffile.imwrite(folder / "in.tif", image)
    assert predict.main(["--checkpoint", str(CHECKPOINT), "--input", str(folder / "in.tif"), "--output", str(folder),
                         "--hashed-noise", "--seed", str(SEED), "--sampler", "dpmpp2m", "--sampling-steps", str(STEPS),
                         "--quiet", "--device", "cpu", "--no-preview", "--overwrite"]) == 0
    return tifffile.imread(folder / "in_sr.tif")


def test_the_rdf_declares_no_halo_so_the_library_passes_the_image_unpadded(package):
    assert all(getattr(axis, "halo", 0) == 0 for axis in description(package[0]).outputs[0].axes)


def test_the_package_passes_its_own_test_and_reproduces_its_test_output_through_every_route(package, tmp_path,
                                                                                          monkeypatch):
    from experiments.inference.bioimage_export import test_package

    monkeypatch.setenv("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")
    zip_path, unzipped = package
    assert test_package(zip_path).status == "passed"
    test_in, test_out = np.load(unzipped / "test_input.npy")[0, 0], np.load(unzipped / "test_output.npy")[0, 0]
    routes = {"bioimageio.core.predict": through_library(zip_path, test_in),
              "weights + rdf processing": through_weights(zip_path, unzipped, test_in),
              "experiments.predict --hashed-noise": through_predict(test_in, tmp_path)}
    for name, output in routes.items():
        assert output.shape == test_out.shape, name
        assert np.abs(output - test_out).max() <= TOLERANCE, f"{name}: {np.abs(output - test_out).max():.3g}"
    assert test_out.std() > 0.05  # a real image, not a flat one


@pytest.mark.parametrize("name", list(real_crops()))
def test_real_images_of_other_sizes_give_one_image_through_every_route(package, tmp_path, monkeypatch, name):
    monkeypatch.setenv("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")
    zip_path, unzipped = package
    image = real_crops()[name]
    reference = through_predict(image, tmp_path)
    assert reference.shape == image.shape
    for route, output in (("bioimageio.core.predict", through_library(zip_path, image)),
                          ("weights + rdf processing", through_weights(zip_path, unzipped, image))):
        difference = np.abs(output - reference).max()
        assert difference <= TOLERANCE, f"{name}, {route}: differs from experiments.predict by {difference:.3g}"


def test_a_batch_through_the_package_gives_each_image_its_own_output(package, tmp_path, monkeypatch):
    """Three different crops in one batch (batch axis 3): each output is the one its crop gets alone from
    experiments.predict, through the library (its scale_range per image, not over the batch) and through the
    weights called on the batch (their tiles and blending per image)."""
    from bioimageio.core import predict as library_predict

    monkeypatch.setenv("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")
    zip_path, unzipped = package
    frame = read_frames(EXAMPLE)[0][0].astype(np.float32)
    crops = np.stack([frame[:72, :90], frame[100:172, 50:140] * 0.5 + 300, frame[180:252, 160:250]])
    references = np.stack([through_predict(crop, tmp_path) for crop in crops])
    assert min(np.abs(references[i] - references[j]).max() for i, j in ((0, 1), (0, 2), (1, 2))) > 0.1

    sample = library_predict(model=description(zip_path), inputs={"widefield": crops[:, None]})
    library = np.asarray(sample.members["super_resolved"].data)[:, 0]
    # The weights on the batch, each image scaled by its own min and max as the rdf says.
    low, high = crops.min(axis=(1, 2), keepdims=True), crops.max(axis=(1, 2), keepdims=True)
    scaled = 2 * (crops - low) / (high - low) - 1
    module = torch.jit.load(str(unzipped / "sampler.pt"))
    with torch.no_grad():
        weights = module(torch.from_numpy(scaled.astype(np.float32))[:, None])[:, 0].numpy() * 0.5 + 0.5
    for route, outputs in (("weights on the batch", weights), ("bioimageio.core.predict", library)):
        assert outputs.shape == references.shape, route
        difference = np.abs(outputs - references).max()
        assert difference <= TOLERANCE, f"{route}: a batch differs from its images alone by {difference:.3g}"
