"""The tutorial's figures as PNG files: sample grids (Fig. 5, 6), training loss (Fig. 7), metrics over
epochs (Fig. 8), the forward process (Fig. 2) and the time encodings (Fig. 3).

Every function builds a ``matplotlib.figure.Figure`` on an Agg canvas, never through pyplot: no
display is needed, no global figure list grows during a long run, and the figure is closed (freed)
as soon as it is written. Each writes one PNG to ``path`` (creating its folder) and returns the path.
Images are tensors or arrays ``[N, 1, H, W]`` (or ``[N, H, W]``) with values in [-1, 1], drawn in
grey with the fixed limits -1 (black) and 1 (white), so brightness is comparable across panels.
"""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from experiments.records import HIGHER_IS_BETTER, METRIC_LABELS, METRIC_NAMES

ImageStack = torch.Tensor | np.ndarray
IMAGE_LIMITS = (-1.0, 1.0)
DPI = 100


def _to_numpy(values: ImageStack) -> np.ndarray:
    """Tensor (any device, any float dtype) or array -> float32 numpy array of the same shape."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().float().numpy()
    return np.asarray(values, dtype=np.float32)


def as_images(images: ImageStack, name: str) -> np.ndarray:
    """``[N, 1, H, W]`` or ``[N, H, W]`` tensor / array -> float32 numpy ``[N, H, W]``."""
    array = _to_numpy(images)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"{name} must be [N, 1, H, W] or [N, H, W] single-channel images; got shape {images.shape}")
    return array


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    figure.clear()  # frees the artists now rather than whenever the garbage collector runs
    return path


def show_image(
    axes: Axes, image: np.ndarray, limits: tuple[float, float] = IMAGE_LIMITS, cmap: str = "gray"
) -> AxesImage:
    shown = axes.imshow(image, cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest")
    axes.set_axis_off()
    return shown


def signed_map_limits(maps: np.ndarray) -> tuple[float, float]:
    """Colour limits of a map column: from 0 (or its minimum, if negative) to its maximum."""
    return min(0.0, float(maps.min())), float(maps.max())


def plot_image_grid(
    images: Mapping[str, ImageStack],
    maps: Mapping[str, ImageStack],
    path: str | Path,
    title: str | None = None,
    max_images: int = 4,
    map_limits: Callable[[np.ndarray], tuple[float, float]] = signed_map_limits,
    image_width: float = 1.8,
    map_width: float = 1.8,
) -> Path:
    """One row per image: the ``images`` columns, then the ``maps`` columns, titled by their keys.

    ``images``: ``[N, 1, H, W]`` (or ``[N, H, W]``) in [-1, 1], drawn in grey on fixed limits; ``maps``: per-pixel
    quantities in their own units (a std, an error map), each column on the magma scale ``map_limits`` gives for
    its drawn rows, with a colour bar. Every column must hold the same number of images (their sides may
    differ); the first ``max_images`` are drawn. ``image_width`` / ``map_width``: inches per column.
    """
    columns = {name: as_images(stack, name) for name, stack in images.items()}
    extras = {name: as_images(stack, name) for name, stack in maps.items()}
    counts = {len(stack) for stack in (*columns.values(), *extras.values())}
    if len(counts) != 1:
        named = {name: len(stack) for name, stack in (*columns.items(), *extras.items())}
        raise ValueError(f"every column must hold the same number of images; got {named}")
    rows = min(counts.pop(), max_images)
    if rows < 1:
        raise ValueError("an image grid needs at least one image (and max_images >= 1)")

    width = image_width * len(columns) + map_width * len(extras)
    figure = new_figure(width, max(image_width, map_width) * rows + (0.4 if title else 0.0))
    grid = figure.subplots(rows, len(columns) + len(extras), squeeze=False)
    for column, (name, stack) in enumerate(columns.items()):
        grid[0, column].set_title(name)
        for row in range(rows):
            show_image(grid[row, column], stack[row])
    for column, (name, stack) in enumerate(extras.items(), start=len(columns)):
        limits = map_limits(stack[:rows])
        grid[0, column].set_title(name)
        for row in range(rows):
            shown = show_image(grid[row, column], stack[row], limits, cmap="magma")
            figure.colorbar(shown, ax=grid[row, column], fraction=0.046, pad=0.04)
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)


def plot_sample_grid(
    inputs: ImageStack,
    outputs: ImageStack,
    targets: ImageStack,
    path: str | Path,
    title: str | None = None,
    extra: Mapping[str, ImageStack] | None = None,
    max_images: int = 4,
) -> Path:
    """One row per image: input, output, target (Fig. 5 and 6), then one column per ``extra`` entry.

    ``inputs``, ``outputs``, ``targets``: ``[N, 1, H, W]`` in [-1, 1], the first ``max_images`` are
    drawn. ``extra`` maps a column title to more ``[N, 1, H, W]`` maps (e.g. ``"std"``, a per-pixel
    uncertainty); those are not in [-1, 1], so each such column gets its own colour scale (0 or its
    minimum, to its maximum over the drawn rows) and a colour bar (:func:`plot_image_grid`).
    """
    images = {"Input": inputs, "Output": outputs, "Target": targets}
    return plot_image_grid(images, extra or {}, path, title, max_images)


def plot_training_loss(losses: Sequence[float], path: str | Path) -> Path:
    """The mean training loss of each epoch against the epoch number, from 1 (Fig. 7)."""
    if len(losses) == 0:
        raise ValueError("plot_training_loss needs at least one epoch's loss")
    figure = new_figure(6.0, 4.0)
    axes = figure.subplots()
    axes.plot(range(1, len(losses) + 1), losses, "g-o", label="Training loss")
    axes.set_xlabel("Epoch")
    axes.set_ylabel("Loss")
    axes.legend()
    return save_figure(figure, path)


def plot_metrics(
    history: Sequence[Mapping[str, float]], path: str | Path, baseline: Mapping[str, float] | None = None
) -> Path:
    """One panel per metric over epochs (Fig. 8).

    ``history``: one dict per evaluated epoch with metric keys (``"mae"`` ..., the tutorial protocol);
    its ``"epoch"`` key gives the x value (else the position, from 1). When ``"<metric>_mean"`` and
    ``"<metric>_std"`` are present, a band shows the per-image mean ± std. ``baseline`` (e.g. the
    bicubic input's metrics) is drawn as a dashed horizontal line. Metrics absent from every entry
    get no panel.
    """
    names = [name for name in METRIC_NAMES if any(name in entry for entry in history)]
    if not names:
        raise ValueError(f"history holds none of the metrics {METRIC_NAMES}: nothing to plot")
    figure = new_figure(3.6 * len(names), 3.4)
    panels = figure.subplots(1, len(names), squeeze=False)[0]
    for axes, name in zip(panels, names):
        entries = [(entry.get("epoch", index + 1), entry) for index, entry in enumerate(history) if name in entry]
        epochs = [epoch for epoch, _ in entries]
        values = [entry[name] for _, entry in entries]
        axes.plot(epochs, values, "o-", color="C0", markersize=3, label="per batch (tutorial)")
        spread = [entry for _, entry in entries if f"{name}_mean" in entry and f"{name}_std" in entry]
        if len(spread) == len(entries):
            mean = np.array([entry[f"{name}_mean"] for entry in spread])
            std = np.array([entry[f"{name}_std"] for entry in spread])
            axes.fill_between(epochs, mean - std, mean + std, color="C0", alpha=0.2, label="per image mean ± std")
        if baseline is not None and name in baseline:
            axes.axhline(baseline[name], color="C3", linestyle="--", label="bicubic input")
        direction = "higher" if HIGHER_IS_BETTER[name] else "lower"
        axes.set_title(f"{METRIC_LABELS[name]} ({direction} is better)")
        axes.set_xlabel("Epoch")
    panels[0].legend(fontsize="small")  # the same series in every panel: one legend is enough
    figure.tight_layout()
    return save_figure(figure, path)


def plot_forward_process(images: ImageStack, steps: Sequence[int], path: str | Path) -> Path:
    """A row of noisy images x_t, one per time step in ``steps`` (Fig. 2).

    ``images``: ``[S, 1, H, W]``, image ``i`` taken at ``t = steps[i]``. Drawn with the fixed limits
    [-1, 1], so the growing noise shows as saturation rather than being rescaled away.
    """
    frames = as_images(images, "images")
    if len(frames) != len(steps) or len(frames) == 0:
        raise ValueError(
            f"need one time step per image and at least one image; got {len(frames)} images, {len(steps)} steps"
        )
    figure = new_figure(1.8 * len(frames), 2.1)
    for axes, frame, step in zip(figure.subplots(1, len(frames), squeeze=False)[0], frames, steps):
        show_image(axes, frame)
        axes.set_title(f"t = {step}")
    return save_figure(figure, path)


def plot_time_encodings(encodings: ImageStack, path: str | Path, stride: int = 1) -> Path:
    """The time encodings as an image: one row per time step, one column per dimension (Fig. 3).

    ``encodings``: ``[T', D]``, row ``i`` being the encoding of ``t = i * stride`` (pass every
    ``stride``-th row of a long table, e.g. ``table[::10]`` with ``stride=10``; the axis shows real t).
    """
    table = _to_numpy(encodings)
    if table.ndim != 2:
        raise ValueError(f"encodings must be [T, D]; got shape {table.shape}")
    if stride < 1:
        raise ValueError(f"stride must be a positive number of time steps; got {stride}")
    figure = new_figure(6.0, 4.5)
    axes = figure.subplots()
    rows, dims = table.shape
    # Each row covers t in [i * stride - stride / 2, i * stride + stride / 2]; top row is t = 0.
    extent = (-0.5, dims - 0.5, (rows - 0.5) * stride, -0.5 * stride)
    # Sines and cosines lie in [-1, 1]; fixed limits keep the colour scale symmetric.
    shown = axes.imshow(
        table, cmap="RdBu", vmin=-1.0, vmax=1.0, aspect="auto", interpolation="nearest", extent=extent
    )
    axes.set_xlabel("Encoding dimension")
    axes.set_ylabel("Time step t")
    figure.colorbar(shown, ax=axes)
    return save_figure(figure, path)
