"""A trained checkpoint as a BioImage Model Zoo package (model spec 0.5) that runs without our code (the
library of ``python -m experiments.export``).

The package's TorchScript weights are the whole deterministic sampler, DPM-Solver++(2M) or DDIM (``--sampler``,
:class:`experiments.inference.scripted_sampler.ScriptedSolver`): one call on the widefield image runs
``--sampling-steps`` network evaluations from x_T = :func:`ddpm.hashed_noise.hashed_normal` of ``--seed``, so deepImageJ,
ilastik and bioimageio.core get the same image every time without seeding anything.

Conventions (written into the package's documentation too):

* Input: one widefield image, axes ``batch, channel (1), y, x``, on the grid of the model's task
  (:mod:`experiments.data.task`): a tutorial-task model takes it on the output's grid (the bicubic-upsampled
  widefield, like the tutorial's inputs) and returns the same size; a native-task model takes the camera
  image and enlarges it 2x inside, so the output has twice the side and half the pixel size.
* Pre-processing: ``scale_range`` over y, x with percentiles 0 / 100 (each image's min -> 0, max -> 1),
  then ``scale_linear`` ``2 v - 1`` to the model's [-1, 1]. The training data were read as stored floats in
  [0, 1]; per-image min / max puts any uint8 / uint16 / float image there.
* Post-processing: ``scale_linear`` ``(v + 1) / 2``: the output is in [0, 1] like the training targets and
  the files ``experiments.predict`` writes.
* Sizes: y and x of any size from :data:`MIN_INPUT_SIDE`. The module tiles the network itself, with
  ``experiments.predict``'s default layout (:class:`~experiments.inference.scripted_sampler.TiledNetwork`),
  so the output axes declare no halo: a tool then hands the module the whole image, unpadded, and every
  route gives the image ``experiments.predict --hashed-noise`` gives. Pixel size: ``--pixel-size`` in µm
  (default: the test TIF's metadata, else the training inputs'), the output's divided by the enlargement.

Needs the optional extra: ``pip install -e '.[export]'``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ddpm.settings import SEEDS, UserError, bounded, check_choice, check_ranges, within
from experiments import figures
from experiments.build import refines
from experiments.config.schema import output_channels
from experiments.image_io.images import read_frames
from experiments.data.layout import TIF_SUFFIXES
from experiments.data.normalization import SCALE_RANGE_EPS
from experiments.image_io.ome_tiff import PIXEL_SIZES_UM
from experiments.inference.loading import load_for_inference
from experiments.inference.package import WEIGHTS_NAME, postprocess, preprocess
from experiments.inference.predictor import Predictor
from experiments.inference.sampling import PREDICTION_SAMPLING
from experiments.inference.scripted_sampler import (EXPORT_SAMPLERS, ExportSampler, save_scripted, script_sampler,
                                                    solver_steps)
from experiments.integrity.outputs import check_outputs
from experiments.records import read_records
from unet import describe_network

# The sampler, its network evaluations and the x_T seed are fixed in the exported module; by default
# prediction's (experiments.inference.sampling.PREDICTION_SAMPLING).
DEFAULT_EXPORT_SAMPLER: ExportSampler = PREDICTION_SAMPLING.sampler
DEFAULT_SAMPLING_STEPS: int = PREDICTION_SAMPLING.sampling_steps
# The smallest input side the package declares; smaller frames are padded to a tile inside the module
# anyway, but a tool's parametrised test of sizes from this one should see an image.
MIN_INPUT_SIDE = 16
# The test tensor: the centred square crop of the test image, its output at most this side (bioimageio's
# test runs the whole sampler on it several times).
TEST_SIDE = 256
# The example input shipped in pretrained/ (python -m experiments.publish --example): a test image where
# the training data are not at hand, as in a fresh clone.
EXAMPLE_INPUT = "example_widefield.ome.tif"
# (text, DOI or None, URL or None). The tutorial's DOI is not in our copy of it: a search link stands in.
CITATIONS = (
    (
        "Bachimanchi H., Volpe G. (2024). Diffusion Models to Enhance the Resolution of Microscopy Images: A Tutorial.",
        None,
        "https://scholar.google.com/scholar?q=Diffusion+Models+to+Enhance+the+Resolution+of+Microscopy+Images+A+Tutorial",
    ),
    (
        "Qiao C. et al. (2021). Evaluation and development of deep neural networks for image super-resolution in "
        "optical microscopy. Nature Methods 18, 194-202 (the BioSR data set).",
        "10.1038/s41592-020-01048-5",
        None,
    ),
)


SAMPLER_TITLES = {
    "dpmpp2m": "DPM-Solver++(2M) (Lu et al. 2022, deterministic)",
    "ddim": "deterministic DDIM (Song et al. 2021, eta = 0)",
}


class ExportError(UserError):
    """The package cannot be built as asked; the message names the file or flag and what to do."""


@dataclass(frozen=True)
class ExportOptions:
    """What the package fixes; each range is checked when built (the command's flags take the same)."""

    sampler: ExportSampler = DEFAULT_EXPORT_SAMPLER
    sampling_steps: int = bounded(DEFAULT_SAMPLING_STEPS, 1)
    seed: int = within(0, SEEDS)
    pixel_size_um: float | None = within(None, PIXEL_SIZES_UM)
    test_side: int = bounded(TEST_SIDE, 1)  # the largest side of the test tensor's output
    test_image: Path | None = None  # default: a test TIF of the run's data root

    def __post_init__(self) -> None:
        check_ranges(self, "export option ")
        check_choice("--sampler", self.sampler, EXPORT_SAMPLERS)


def _first_tif(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    return next((p for p in sorted(folder.rglob("*")) if p.suffix.lower() in TIF_SUFFIXES and p.is_file()), None)


def find_test_image(predictor: Predictor) -> Path | None:
    """A widefield TIF the model was trained or tested on: the run's ``<data.root>/test_wf`` first, then
    ``training_wf``, then the example input shipped beside the checkpoint or its folder (``pretrained/``)."""
    root = Path(predictor.config.data.root)
    shipped = (folder / EXAMPLE_INPUT for folder in (predictor.checkpoint.parent, predictor.checkpoint.parent.parent))
    return (_first_tif(root / "test_wf") or _first_tif(root / "training_wf")
            or next((path for path in shipped if path.is_file()), None))


def synthetic_widefield(side: int) -> np.ndarray:
    """A deterministic stand-in [side, side] in [0, 1]: blurred random filaments (seed 0), used only without data."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    image = np.zeros((side, side), np.float32)
    for _ in range(6):
        a, b, phase = rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(0, 2 * np.pi)
        image += np.exp(-(np.sin(a * x + b * y + phase) ** 2) / 0.02)
    return (image - image.min()) / (image.max() - image.min())


def test_input(predictor: Predictor, options: ExportOptions) -> tuple[np.ndarray, str, float | None]:
    """The test tensor [1, 1, S, S] float32, where it came from, its pixel size.

    S is the test image's shorter side, at most ``options.test_side`` output pixels; the crop is centred.
    It must be at least :data:`MIN_INPUT_SIDE`.
    """
    path = options.test_image or find_test_image(predictor)
    if path is None:
        side = max(MIN_INPUT_SIDE, predictor.tile // predictor.enlargement)
        return synthetic_widefield(side)[None, None], "a deterministic synthetic image (no data found)", None
    frames, info = read_frames(path)
    image = frames[0]
    side = min(max(options.test_side // predictor.enlargement, 1), *image.shape)
    if side < MIN_INPUT_SIDE:
        raise ExportError(
            f"{path}: image {image.shape} gives a {side}-pixel test crop, but the package declares inputs of at "
            f"least {MIN_INPUT_SIDE} pixels per side; pass a larger --test-image or --test-side"
        )
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    crop = image[top : top + side, left : left + side]
    if not crop.max() > crop.min():
        raise ExportError(f"{path}: the test crop is constant ({crop.min():g} everywhere); the package's test "
                          "tensors must show structure: pass a real widefield image as --test-image")
    return np.ascontiguousarray(crop)[None, None], str(path), info.pixel_size_um


def measured_metrics(checkpoint: Path) -> dict[str, dict[str, float]] | None:
    """The tutorial-protocol scores of every split in the last evaluated epoch of the run's records
    beside the checkpoint (``metrics.json``), under ``"epoch N, <split>"``; None when there are none."""
    try:
        records = read_records(checkpoint.parent)
    except (OSError, ValueError):
        return None
    latest: dict[str, tuple[int, dict[str, float]]] = {}
    for record in records:  # a later epoch replaces an earlier one; splits keep their first place
        latest.update({split: (record.epoch, scores) for split, scores in record.scores.items()})
    return {f"epoch {epoch}, {split}": {metric: value for metric, value in scores.items()
                                        if not metric.endswith(("_mean", "_std"))}
            for split, (epoch, scores) in latest.items()} or None


def write_cover(image: np.ndarray, output: np.ndarray, path: Path) -> Path:
    """Input | output side by side (2:1, as the Model Zoo shows covers), each on its own [min, max]."""
    figure = figures.new_figure(8.0, 4.0)
    for axis, (title, shown) in zip(figure.subplots(1, 2), (("Widefield input", image), ("Diffusion output", output))):
        figures.show_image(axis, shown, (float(shown.min()), float(shown.max())))
        axis.set_title(title)
    return figures.save_figure(figure, path)


def is_regression(predictor: Predictor) -> bool:
    """Whether the checkpoint is the regression baseline (one network evaluation, no diffusion)."""
    return predictor.config.train.objective == "regression"


def weights_summary(predictor: Predictor, options: ExportOptions) -> str:
    """What the TorchScript weights run, in one sentence."""
    if is_regression(predictor):
        return "one network evaluation (the regression baseline: no diffusion, no noise)"
    if refines(predictor.model):
        return (f"the regression's one evaluation, then {options.sampling_steps} {SAMPLER_TITLES[options.sampler]} steps "
                f"on its residual from position-hashed initial noise (seed {options.seed}), added back to it")
    return (f"{options.sampling_steps} {SAMPLER_TITLES[options.sampler]} steps from position-hashed initial noise "
            f"(seed {options.seed})")


def determinism(predictor: Predictor, options: ExportOptions) -> str:
    """The documentation's paragraph on where the output's randomness comes from (none)."""
    if is_regression(predictor):
        return "One network evaluation, no noise: every run on every machine gives the same output."
    return (f"The diffusion starts from x_T, standard normal noise computed from a hash of (seed {options.seed}, pixel\n"
            "position): no random generator is used, so every run on every machine gives the same output, and a pixel's\n"
            f"noise does not depend on the image size. The sampler ({options.sampler}), its steps ({options.sampling_steps}) and the seed are\n"
            "fixed in the TorchScript module; export again (`python -m experiments.export --sampler NAME --sampling-steps N\n"
            "--seed S`) to change them.")


def input_paragraph(predictor: Predictor, options: ExportOptions) -> str:
    """The documentation's description of the input the package takes, for the model's task."""
    layout = predictor.layout()
    sizes = (f"any size from {MIN_INPUT_SIDE} px works: the model runs its network on overlapping tiles of "
             f"{layout.tile} px ({layout.overlap} px shared) and blends them itself, so give it the whole image "
             "(do not tile it in the tool)")
    if predictor.enlargement == 1:
        return ("- Input: one widefield image (axes b, c = 1, y, x), **already on the output's pixel grid**: the bicubic x2\n"
                "  upsampled widefield, like the tutorial's BioSR inputs. The model does not enlarge the image; " + sizes + ".")
    return (f"- Input: one widefield image (axes b, c = 1, y, x) **on the camera's grid**, as recorded (the training inputs\n"
            f"  had {predictor.grid.input_pixel_um * 1000:.1f} nm pixels). The model enlarges it {predictor.enlargement}x "
            f"(bicubic) onto the SIM grid and returns an image of {predictor.enlargement}x the side; " + sizes + ".")


def documentation(predictor: Predictor, options: ExportOptions, source: str, metrics: dict | None) -> str:
    config = predictor.config
    network = config.network
    metric_lines = (
        "\n".join(f"- {split}: " + ", ".join(f"{name} {value:.4g}" for name, value in scores.items())
                  for split, scores in metrics.items())
        if metrics else "- none recorded beside this checkpoint (no metrics.json)"
    )
    citations = "\n".join(f"- {text} {f'https://doi.org/{doi}' if doi else url}" for text, doi, url in CITATIONS)
    return f"""# Diffusion super-resolution (widefield -> SIM-like), {config.name}

A conditional denoising diffusion model (DDPM, Ho et al. 2020, after the tutorial by Bachimanchi & Volpe 2024)
that turns a widefield fluorescence image into a SIM-like super-resolved one. The weights hold the whole
sampler, {weights_summary(predictor, options)}, around the network:
{describe_network(network)}.

## Input and output
{input_paragraph(predictor, options)}
- Pre-processing: each image's min -> 0 and max -> 1 (`scale_range`, percentiles 0 / 100), then `2 v - 1`.
- Output: the super-resolved image in [0, 1] (`(v + 1) / 2` of the model's [-1, 1]).
- Pixel size: {"%.6g µm in, %.6g µm out" % (options.pixel_size_um, options.pixel_size_um / predictor.enlargement) if options.pixel_size_um else "not recorded"}.

## Noise and determinism
{determinism(predictor, options)}

## Training data
Run `{config.name}`, {config.data.task} task: data root `{config.data.root}` (BioSR layout; the real BioSR
microtubules or the project's real-structure or synthetic sets), normalisation `{config.data.normalization}`, {config.train.epochs} epochs, loss
`{config.train.loss}`, {predictor.diffusion.steps} diffusion steps. Checkpoint `{predictor.checkpoint.name}`
(sha256 {predictor.digest}, {predictor.weights} weights). Test tensor: {source}.

## Metrics as measured (the run's metrics.json)
{metric_lines}

## Validation
`experiments.export` runs bioimageio.core's model test on the written zip (offline): the TorchScript weights
reproduce `test_output.npy` from `test_input.npy`, for batch sizes 1 and 2 and several input sizes. In the
project's tests `bioimageio.core.predict`, the TorchScript weights with this page's pre- and post-processing
(as deepImageJ runs them) and `experiments.predict --hashed-noise` give the same image within 1e-4, on the
test input and on images of other sizes; each image of a batch gets the output it gets alone. Block-wise prediction by a tool (bioimageio.core's
`blocksize_parameter` / `input_block_shape`, a patch size in deepImageJ smaller than the image) samples each
block alone, its noise placed in block coordinates: a different sample, with seams. Give the whole image.

## Limits
- Trained on one structure (microtubules, or synthetic filaments) at one magnification and noise level:
  on other structures, other microscopes or other signal levels it will invent detail.
- A diffusion model samples a plausible image, it does not measure one: thin filaments, crossings and
  gaps in the output can be hallucinated, especially where the widefield signal is weak. Compare with the
  input and, in Python, with several seeds (`experiments.predict --samples N --std`).
- Per-image min / max scaling: a single hot pixel compresses the rest of the image; crop or clip it first.
- The sampling steps are fixed at export; more are slower and not always better.

## Citations
{citations}

## Licence
MIT, as the code that trained it.
"""


def build_package(checkpoint: Path, out: Path, options: ExportOptions, overwrite: bool = False) -> Path:
    """Write the zip at ``out``; returns it. Needs ``bioimageio.spec`` (the ``[export]`` extra).

    ``out`` is checked first (:func:`~experiments.integrity.outputs.check_outputs`): never the checkpoint or the
    test image, an existing file only with ``overwrite``; the test image is read before the network is
    scripted. A description that bioimageio.spec refuses is an :class:`ExportError` naming the field."""
    try:
        from bioimageio.spec import save_bioimageio_package
        from bioimageio.spec.model import v0_5 as spec
    except ImportError as error:
        raise ExportError(f"bioimageio.spec is not installed ({error}); run: pip install -e '.[export]'") from error
    if out.suffix.lower() != ".zip":
        raise ExportError(f"{out}: a Model Zoo package is a .zip file; name --out like model.zip")
    predictor = load_for_inference(checkpoint, "cpu")
    try:
        solver_steps(predictor.diffusion, options.sampler, options.sampling_steps)
    except ValueError as error:
        raise ExportError(f"--sampling-steps {options.sampling_steps}: {error}") from None
    test_image = options.test_image or find_test_image(predictor)
    check_outputs([out], [predictor.checkpoint] + ([test_image] if test_image else []), overwrite)
    image, source, file_pixel_size = test_input(predictor, replace(options, test_image=test_image))
    module = script_sampler(predictor.model, predictor.diffusion, options.sampler, options.sampling_steps, options.seed,
                            predictor.layout(), regression=is_regression(predictor), enlargement=predictor.enlargement,
                            channels=output_channels(predictor.config))
    # The training inputs' pixel when neither the flag nor the test image states one: the model expects it.
    pixel_size = next(size for size in (options.pixel_size_um, file_pixel_size, predictor.grid.input_pixel_um)
                      if size is not None)
    options = replace(options, pixel_size_um=pixel_size)
    with torch.no_grad():
        model_output = module(torch.from_numpy(preprocess(image))).numpy()
    output = postprocess(model_output)
    metrics = measured_metrics(predictor.checkpoint)
    # The package copies every file into the zip, so they can be made in a folder that goes away after.
    from pydantic import ValidationError

    with tempfile.TemporaryDirectory(prefix="export-") as folder:
        try:
            return _write_package(
                spec, save_bioimageio_package, Path(folder), module, image, output, predictor, options, source, metrics, out
            )
        except ValidationError as error:  # bioimageio.spec's check of the description: what we were given
            first = error.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            raise ExportError(f"bioimageio.spec refuses the package description at {where}: {first.get('msg')}; "
                              "check the export options (--pixel-size, --test-image)") from error


def _write_package(spec, save, work: Path, module, image, output, predictor: Predictor, options: ExportOptions,
                   source: str, metrics: dict | None, out: Path) -> Path:
    """Files, then the spec 0.5 description of them, then the zip (``spec``, ``save``: bioimageio.spec's)."""
    pixel_size = options.pixel_size_um
    weights = work / WEIGHTS_NAME
    save_scripted(module, weights)
    np.save(work / "test_input.npy", image)
    np.save(work / "test_output.npy", output)
    cover = write_cover(image[0, 0], output[0, 0], work / "cover.png")
    (work / "documentation.md").write_text(documentation(predictor, options, source, metrics))

    # The output's axes are scale times finer; the library sizes them from the input's by the axes' scales.
    in_scale = 1.0 if pixel_size is None else pixel_size
    physical = {} if pixel_size is None else {"unit": "micrometer"}
    input_id, y, x = spec.TensorId("widefield"), spec.AxisId("y"), spec.AxisId("x")
    size = spec.ParameterizedSize(min=MIN_INPUT_SIDE, step=1)
    inputs = spec.InputTensorDescr(
        id=input_id,
        description=("widefield image on the output's pixel grid (bicubic x2 upsampled), any intensity range"
                     if predictor.enlargement == 1 else "widefield image on the camera's grid, any intensity range"),
        axes=[
            spec.BatchAxis(),
            spec.ChannelAxis(channel_names=[spec.Identifier("widefield")]),
            spec.SpaceInputAxis(id=y, size=size, scale=in_scale, **physical),
            spec.SpaceInputAxis(id=x, size=size, scale=in_scale, **physical),
        ],
        test_tensor=spec.FileDescr(source=work / "test_input.npy"),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[
            spec.ScaleRangeDescr(
                kwargs=spec.ScaleRangeKwargs(axes=[y, x], min_percentile=0.0, max_percentile=100.0, eps=SCALE_RANGE_EPS)
            ),
            spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=2.0, offset=-1.0)),
        ],
    )
    outputs = spec.OutputTensorDescr(
        id=spec.TensorId("super_resolved"),
        description="SIM-like super-resolved image in [0, 1]",
        axes=[
            spec.BatchAxis(),
            spec.ChannelAxis(channel_names=[spec.Identifier("super_resolved")]),
            # No halo: the module tiles and blends itself (TiledNetwork); a halo would make the tools pad
            # the image, which moves the tiles and the position-hashed noise.
            *(spec.SpaceOutputAxis(id=axis, size=spec.SizeReference(tensor_id=input_id, axis_id=axis),
                                   scale=in_scale / predictor.enlargement, **physical)
              for axis in (y, x)),
        ],
        test_tensor=spec.FileDescr(source=work / "test_output.npy"),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        postprocessing=[spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=0.5, offset=0.5))],
    )
    description = spec.ModelDescr(
        name=f"Diffusion super-resolution {predictor.config.name}"[:128],
        description=(
            f"Conditional diffusion model (DDPM) turning widefield into SIM-like images; the TorchScript weights run "
            f"{weights_summary(predictor, options)}."
        ),
        authors=[spec.Author(name="diffusion-sr-microscopy contributors")],
        cite=[
            spec.CiteEntry(text=text, doi=spec.Doi(doi)) if doi else spec.CiteEntry(text=text, url=spec.HttpUrl(url))
            for text, doi, url in CITATIONS
        ],
        license=spec.LicenseId("MIT"),
        documentation=spec.FileDescr(source=work / "documentation.md"),
        covers=[spec.FileDescr(source=cover)],
        tags=["super-resolution", "diffusion", "ddpm", options.sampler, "microscopy", "widefield", "sim", "2d", "pytorch"],
        inputs=[inputs],
        outputs=[outputs],
        weights=spec.WeightsDescr(
            torchscript=spec.TorchscriptWeightsDescr(source=weights, pytorch_version=spec.Version(torch.__version__.split("+")[0]))
        ),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(save(description, output_path=out))


def test_package(path: Path):
    """bioimageio.core's model test of the zip, offline; returns its ValidationSummary."""
    os.environ.setdefault("BIOIMAGEIO_PERFORM_IO_CHECKS", "false")
    from bioimageio.core import test_model

    return test_model(path, devices=["cpu"])
