"""Apply a fixed-tile-size function to an image of any 2-D size, in overlapping tiles blended without seams.

The network only sees ``tile x tile`` inputs (its training size). A larger image is cut into tiles whose
start offsets come from :func:`tile_positions`: evenly spread, neighbours sharing at least ``overlap``
pixels, the last tile flush with the border. Each tile's output is weighted by a separable raised-cosine
window that ramps over exactly the pixels it shares with each neighbour, so where two tiles meet their
weights are ``cos^2`` and ``sin^2`` of the same angle and sum to 1: the result fades from one tile into
the next instead of jumping. Sides on the image border are not tapered. The accumulated sum is divided
by the accumulated weights, so any layout (also corners where four tiles meet) is normalised exactly.

An image smaller than a tile is padded (reflect where the image is large enough, else replicate),
processed as one tile and cropped back.

    from experiments.inference.tiling import predict_tiled
    out = predict_tiled(widefield, lambda tiles: network(tiles), tile=128, overlap=32)

A :class:`TileLayout` records the tile side, the overlap and the tiles per network call.

A diffusion sampler must not be tiled from the outside (each tile running its own chain): every tile
would draw its own noise, and overlaps would average two different samples into a weaker texture, a
grid with the tile spacing. :func:`tiled_network` tiles the *network* instead, inside one chain on the
whole image: one noise field per image at every step, and each step's noise prediction blended across
tiles, so tiled and one-pass sampling agree wherever the network's receptive field fits in the overlap.

:func:`tile_positions`, :func:`axis_windows` and :func:`pad_to_tile` compile with ``torch.jit.script``: the
exported package (:class:`experiments.inference.scripted_sampler.TiledNetwork`) tiles with these same
functions, so it returns what ``experiments.predict`` does.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

TileFn = Callable[[torch.Tensor], torch.Tensor]


def tile_positions(length: int, tile: int, overlap: int) -> List[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``.

    Neighbouring tiles share at least ``overlap`` pixels; offsets are spread as evenly as integers allow
    (so every overlap is about the same), the first is 0 and the last is ``length - tile``.
    ``length <= tile`` gives ``[0]`` (the caller pads the image up to one tile).
    """
    _check_tile(tile, overlap)
    if length < 1:
        raise ValueError(f"length must be at least 1 pixel, got {length}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    span = length - tile
    # Integer division keeps every step <= ceil(span / (count - 1)) <= stride, i.e. overlap is never less.
    return [i * span // (count - 1) for i in range(count)]


def _check_tile(tile: int, overlap: int) -> None:
    if tile < 1:
        raise ValueError(f"tile must be at least 1 pixel, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must satisfy 0 <= overlap < tile ({tile}), got {overlap}")


def _raised_cosine_ramp(width: int) -> torch.Tensor:
    """``sin^2(pi/2 * (j + 0.5) / width)`` for j in [0, width): rises from near 0 to near 1, never 0.

    Sampling at pixel centres makes the ramp of one tile and the reversed ramp of its neighbour over the
    same ``width`` pixels sum to exactly 1 (sin^2 + cos^2).
    """
    centres = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    return torch.sin(0.5 * math.pi * centres) ** 2


def axis_windows(positions: List[int], tile: int) -> List[torch.Tensor]:
    """1-D blending weights (float64 [tile], all > 0) for each tile along one axis.

    Tile i ramps up over the pixels it shares with tile i-1 and down over those it shares with tile i+1;
    the first tile's start and the last tile's end lie on the image border and stay at weight 1.
    """
    windows: List[torch.Tensor] = []
    for i, start in enumerate(positions):
        window = torch.ones(tile, dtype=torch.float64)
        if i > 0:
            shared = positions[i - 1] + tile - start
            window[:shared] *= _raised_cosine_ramp(shared)
        if i < len(positions) - 1:
            shared = start + tile - positions[i + 1]
            window[tile - shared :] *= _raised_cosine_ramp(shared).flip(0)
        windows.append(window)
    return windows


def pad_to_tile(images: torch.Tensor, tile: int) -> Tuple[torch.Tensor, int, int]:
    """Pad ``images`` [B, C, H, W] to at least ``tile`` on each side (see :func:`_pad_axis`); also return
    the offsets ``top, left`` of the original pixels, to crop a result back."""
    padded, top = _pad_axis(images, 2, tile)
    padded, left = _pad_axis(padded, 3, tile)
    return padded, top, left


def _pad_axis(images: torch.Tensor, dim: int, target: int) -> Tuple[torch.Tensor, int]:
    """Pad ``images`` [B, C, H, W] along ``dim`` (2 or 3) up to ``target``, centred; also return the start offset.

    Reflection keeps image statistics the model knows; it needs the pad on each side to be smaller than
    the image, so tiny images fall back to replicating their border pixels.
    """
    size = images.shape[dim]
    if size >= target:
        return images, 0
    before = (target - size) // 2
    after = target - size - before
    pads = [before, after, 0, 0] if dim == 3 else [0, 0, before, after]
    mode = "reflect" if max(before, after) < size else "replicate"
    return F.pad(images, pads, mode=mode), before


def tile_jobs(batch: int, rows: int, cols: int) -> List[Tuple[int, int, int]]:
    """Every (image, row, column) of a tiled batch, image by image, row by row: the order tiles go through the
    network in calls of ``batch_size`` (eager and scripted alike)."""
    jobs: List[Tuple[int, int, int]] = []
    for b in range(batch):
        for i in range(rows):
            for j in range(cols):
                jobs.append((b, i, j))
    return jobs


def cut_tiles(image: torch.Tensor, chunk: List[Tuple[int, int, int]], rows: List[int], cols: List[int],
              tile: int) -> torch.Tensor:
    """The tiles ``chunk`` names, cut from ``image`` [B, C, H, W]: [len(chunk), C, tile, tile]."""
    return torch.stack([image[b, :, rows[i] : rows[i] + tile, cols[j] : cols[j] + tile] for b, i, j in chunk])


def add_tiles(total: torch.Tensor, weights: torch.Tensor, output: torch.Tensor, chunk: List[Tuple[int, int, int]],
              rows: List[int], cols: List[int], row_windows: List[torch.Tensor], col_windows: List[torch.Tensor],
              tile: int) -> None:
    """Add each output tile [len(chunk), C, tile, tile], weighted by its window, into ``total`` [B, C, H, W], and
    the windows into ``weights`` [H, W] once per position (every image of a batch has the same layout)."""
    for k in range(len(chunk)):
        b, i, j = chunk[k]
        window = torch.outer(row_windows[i], col_windows[j]).to(device=total.device, dtype=total.dtype)
        total[b, :, rows[i] : rows[i] + tile, cols[j] : cols[j] + tile] += window * output[k]
        if b == 0:
            weights[rows[i] : rows[i] + tile, cols[j] : cols[j] + tile] += window


def _check_tile_output(output: torch.Tensor, count: int, tile: int) -> None:
    if output.ndim != 4 or output.shape[0] != count or output.shape[2:] != (tile, tile):
        raise ValueError(
            f"the tile function returned shape {tuple(output.shape)} for {count} tiles of {tile}x{tile}; "
            f"it must return [{count}, C_out, {tile}, {tile}]"
        )


@dataclass(frozen=True)
class TileLayout:
    """How an image is cut for a network that takes ``tile x tile`` inputs: ``overlap`` pixels shared by
    neighbouring tiles at least, ``batch_size`` tiles per network call."""

    tile: int
    overlap: int = 32
    batch_size: int = 16

    def __post_init__(self) -> None:
        _check_tile(self.tile, self.overlap)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    def check_size_multiple(self, size_multiple: int) -> None:
        """Refuse a tile that the network cannot take (its sides must be multiples of ``size_multiple``)."""
        if size_multiple < 1 or self.tile % size_multiple:
            raise ValueError(f"tile {self.tile} must be a multiple of {size_multiple}, the network's size_multiple")

    def count(self, height: int, width: int) -> int:
        """Tiles of one image of ``height x width`` (padded up to a tile)."""
        return len(tile_positions(max(height, self.tile), self.tile, self.overlap)) * len(
            tile_positions(max(width, self.tile), self.tile, self.overlap)
        )


@torch.no_grad()
def predict_tiled(
    image: torch.Tensor,
    fn: TileFn,
    tile: int = 128,
    overlap: int = 32,
    batch_size: int = 16,
    progress: bool = False,
    size_multiple: int = 1,
    desc: str | None = None,
) -> torch.Tensor:
    """Run ``fn`` over overlapping ``tile x tile`` tiles of ``image`` and blend the results seamlessly.

    Args:
        image: [C, H, W] or [B, C, H, W], any H, W >= 1 (in whatever range ``fn`` expects, e.g. [-1, 1]);
            padded up to a tile where smaller (:func:`pad_to_tile`) and cropped back.
        fn: maps a batch of tiles [N, C, tile, tile] (N <= batch_size) to [N, C_out, tile, tile]; it is
            called under ``torch.no_grad``. Its output may live on another device; it is moved back.
        tile, overlap, batch_size: the :class:`TileLayout` (the blending ramp is as wide as the actual
            overlap, which may be a little larger so that tiles are evenly spread; tiles of all images in a
            batch are pooled into the calls of ``fn``).
        progress: show a tqdm bar over tiles, labelled ``desc``.
        size_multiple: the network's (e.g. 2 ** number of downsamplings); checked against ``tile``.

    Returns:
        [C_out, H, W] or [B, C_out, H, W] (matching ``image``), in ``fn``'s output dtype promoted to at
        least float32. Every pixel is the window-weighted mean of the tile outputs covering it, so an
        ``fn`` that returns its input gives back ``image`` to float rounding.
    """
    if image.ndim not in (3, 4):
        raise ValueError(f"image must be [C, H, W] or [B, C, H, W], got shape {tuple(image.shape)}")
    layout = TileLayout(tile, overlap, batch_size)
    layout.check_size_multiple(size_multiple)
    batched = image if image.ndim == 4 else image.unsqueeze(0)
    height, width = batched.shape[2:]
    padded, top, left = pad_to_tile(batched, tile)
    with tqdm(total=len(padded) * layout.count(*padded.shape[2:]), desc=desc, unit="tile", disable=not progress) as bar:
        blended = blend_tiles(padded, fn, layout, on_tiles=bar.update)
    blended = blended[:, :, top : top + height, left : left + width]
    return blended if image.ndim == 4 else blended[0]


def blend_tiles(
    image: torch.Tensor, fn: TileFn, layout: TileLayout, on_tiles: Callable[[int], None] | None = None
) -> torch.Tensor:
    """The core of :func:`predict_tiled` on an image [B, C, H, W] already at least one tile on each side
    (nothing is padded here). ``on_tiles`` is called with the number of tiles after each call of ``fn``."""
    tile = layout.tile
    if min(image.shape[2:]) < tile:
        raise ValueError(f"image {tuple(image.shape[2:])} is smaller than a {tile}-pixel tile; pad it first (pad_to_tile)")
    rows = tile_positions(image.shape[2], tile, layout.overlap)
    cols = tile_positions(image.shape[3], tile, layout.overlap)
    row_windows, col_windows = axis_windows(rows, tile), axis_windows(cols, tile)
    jobs = tile_jobs(image.shape[0], len(rows), len(cols))

    total = weights = None  # allocated once the first output tells C_out and dtype
    for first in range(0, len(jobs), layout.batch_size):
        chunk = jobs[first : first + layout.batch_size]
        output = fn(cut_tiles(image, chunk, rows, cols, tile))
        _check_tile_output(output, len(chunk), tile)
        if total is None:
            dtype = torch.promote_types(output.dtype, torch.float32)
            shape = (image.shape[0], output.shape[1], *image.shape[2:])
            total = torch.zeros(shape, dtype=dtype, device=image.device)
            weights = torch.zeros(image.shape[2:], dtype=dtype, device=image.device)
        add_tiles(total, weights, output.to(device=image.device, dtype=total.dtype), chunk, rows, cols, row_windows,
                  col_windows, tile)
        if on_tiles is not None:
            on_tiles(len(chunk))
    return total / weights


def tiled_network(
    model: Callable[..., torch.Tensor],
    layout: TileLayout,
    on_tiles: Callable[[int], None] | None = None,
) -> Callable[..., torch.Tensor]:
    """``model`` run tile by tile on inputs of any size: a drop-in for the noise predictor of a sampler.

    The result is called as the network is, ``(x [B, C_in, H, W], t_encoding [B, D], **kwargs)``, with
    H, W >= ``layout.tile`` (the caller pads the image once, :func:`pad_to_tile`), and returns the
    blended noise prediction [B, C_out, H, W] of :func:`blend_tiles`. The sampler keeps x_t and its noise
    for the whole image, so every tile of a step sees the same noise field. All images of a sampling
    chain are at the same time step, so the first row of ``t_encoding`` alone is passed for every tile
    (the networks' contract, :class:`unet.Denoiser`): the time projection is then computed alike for any
    number of tiles per call, and a tile's result does not depend on the batch it is computed in.
    """

    def call(x: torch.Tensor, t_encoding: torch.Tensor, **kwargs) -> torch.Tensor:
        encoding = t_encoding[:1]
        return blend_tiles(x, lambda tiles: model(tiles, encoding, **kwargs), layout, on_tiles)

    return call
