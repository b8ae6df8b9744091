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

A diffusion sampler must not be tiled from the outside (each tile running its own chain): every tile
would draw its own noise, and overlaps would average two different samples into a weaker texture, a
grid with the tile spacing. :func:`tiled_network` tiles the *network* instead, inside one chain on the
whole image: one noise field per image at every step, and each step's noise prediction blended across
tiles, so tiled and one-pass sampling agree wherever the network's receptive field fits in the overlap.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

TileFn = Callable[[torch.Tensor], torch.Tensor]


def tile_positions(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``.

    Neighbouring tiles share at least ``overlap`` pixels; offsets are spread as evenly as integers allow
    (so every overlap is about the same), the first is 0 and the last is ``length - tile``.
    ``length <= tile`` gives ``[0]`` (the caller pads the image up to one tile).
    """
    if tile < 1:
        raise ValueError(f"tile must be at least 1 pixel, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must satisfy 0 <= overlap < tile ({tile}), got {overlap}")
    if length < 1:
        raise ValueError(f"length must be at least 1 pixel, got {length}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    span = length - tile
    # Integer division keeps every step <= ceil(span / (count - 1)) <= stride, i.e. overlap is never less.
    return [i * span // (count - 1) for i in range(count)]


def _raised_cosine_ramp(width: int) -> torch.Tensor:
    """``sin^2(pi/2 * (j + 0.5) / width)`` for j in [0, width): rises from near 0 to near 1, never 0.

    Sampling at pixel centres makes the ramp of one tile and the reversed ramp of its neighbour over the
    same ``width`` pixels sum to exactly 1 (sin^2 + cos^2).
    """
    centres = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    return torch.sin(0.5 * math.pi * centres) ** 2


def axis_windows(positions: list[int], tile: int) -> list[torch.Tensor]:
    """1-D blending weights (float64 [tile], all > 0) for each tile along one axis.

    Tile i ramps up over the pixels it shares with tile i-1 and down over those it shares with tile i+1;
    the first tile's start and the last tile's end lie on the image border and stay at weight 1.
    """
    windows = []
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


def pad_to_tile(images: torch.Tensor, tile: int) -> tuple[torch.Tensor, int, int]:
    """Pad ``images`` [B, C, H, W] to at least ``tile`` on each side (see :func:`_pad_axis`); also return
    the offsets ``top, left`` of the original pixels, to crop a result back."""
    padded, top = _pad_axis(images, 2, tile)
    padded, left = _pad_axis(padded, 3, tile)
    return padded, top, left


def _pad_axis(images: torch.Tensor, dim: int, target: int) -> tuple[torch.Tensor, int]:
    """Pad ``images`` [B, C, H, W] along ``dim`` (2 or 3) up to ``target``, centred; also return the start offset.

    Reflection keeps image statistics the model knows; it needs the pad on each side to be smaller than
    the image, so tiny images fall back to replicating their border pixels.
    """
    size = images.shape[dim]
    if size >= target:
        return images, 0
    before = (target - size) // 2
    after = target - size - before
    pads = (before, after, 0, 0) if dim == 3 else (0, 0, before, after)
    mode = "reflect" if max(before, after) < size else "replicate"
    return F.pad(images, pads, mode=mode), before


def _check_tile_output(output: torch.Tensor, count: int, tile: int) -> None:
    if output.ndim != 4 or output.shape[0] != count or output.shape[2:] != (tile, tile):
        raise ValueError(
            f"the tile function returned shape {tuple(output.shape)} for {count} tiles of {tile}x{tile}; "
            f"it must return [{count}, C_out, {tile}, {tile}]"
        )


@torch.no_grad()
def predict_tiled(
    image: torch.Tensor,
    fn: TileFn,
    tile: int = 128,
    overlap: int = 32,
    batch_size: int = 16,
    progress: bool = False,
    multiple_of: int = 1,
    desc: str | None = None,
    on_tiles: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Run ``fn`` over overlapping ``tile x tile`` tiles of ``image`` and blend the results seamlessly.

    Args:
        image: [C, H, W] or [B, C, H, W], any H, W >= 1 (in whatever range ``fn`` expects, e.g. [-1, 1]).
        fn: maps a batch of tiles [N, C, tile, tile] (N <= batch_size) to [N, C_out, tile, tile]; it is
            called under ``torch.no_grad``. Its output may live on another device; it is moved back.
        tile: tile side in pixels, the size ``fn`` accepts; must be a multiple of ``multiple_of``.
        overlap: minimum number of pixels neighbouring tiles share (the blending ramp is as wide as the
            actual overlap, which may be a little larger so that tiles are evenly spread).
        batch_size: tiles per call of ``fn`` (tiles of all images in a batch are pooled).
        progress: show a tqdm bar over tiles, labelled ``desc``.
        multiple_of: the model's size factor (e.g. 2 ** number of downsamplings); checked against ``tile``.
        on_tiles: called with the number of tiles after each call of ``fn``, e.g. a caller's progress bar.

    Returns:
        [C_out, H, W] or [B, C_out, H, W] (matching ``image``), in ``fn``'s output dtype promoted to at
        least float32. Every pixel is the window-weighted mean of the tile outputs covering it, so an
        ``fn`` that returns its input gives back ``image`` to float rounding.
    """
    if image.ndim not in (3, 4):
        raise ValueError(f"image must be [C, H, W] or [B, C, H, W], got shape {tuple(image.shape)}")
    if multiple_of < 1 or tile % multiple_of:
        raise ValueError(f"tile {tile} must be a multiple of {multiple_of}, the model's size factor")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    batched = image if image.ndim == 4 else image.unsqueeze(0)
    height, width = batched.shape[2:]
    padded, top, left = pad_to_tile(batched, tile)
    rows = tile_positions(padded.shape[2], tile, overlap)
    cols = tile_positions(padded.shape[3], tile, overlap)
    row_windows, col_windows = axis_windows(rows, tile), axis_windows(cols, tile)
    jobs = [(b, i, j) for b in range(padded.shape[0]) for i in range(len(rows)) for j in range(len(cols))]

    total = weights = None  # allocated once the first output tells C_out and dtype
    with tqdm(total=len(jobs), desc=desc, unit="tile", disable=not progress) as bar:
        for first in range(0, len(jobs), batch_size):
            chunk = jobs[first : first + batch_size]
            tiles = torch.stack([padded[b, :, rows[i] : rows[i] + tile, cols[j] : cols[j] + tile] for b, i, j in chunk])
            output = fn(tiles)
            _check_tile_output(output, len(chunk), tile)
            if total is None:
                dtype = torch.promote_types(output.dtype, torch.float32)
                shape = (padded.shape[0], output.shape[1], *padded.shape[2:])
                total = torch.zeros(shape, dtype=dtype, device=image.device)
                weights = torch.zeros(padded.shape[2:], dtype=dtype, device=image.device)
            output = output.to(device=image.device, dtype=total.dtype)
            for (b, i, j), result in zip(chunk, output, strict=True):
                window = torch.outer(row_windows[i], col_windows[j]).to(device=image.device, dtype=total.dtype)
                total[b, :, rows[i] : rows[i] + tile, cols[j] : cols[j] + tile] += window * result
                if b == 0:  # every image in the batch has the same layout; count its weights once
                    weights[rows[i] : rows[i] + tile, cols[j] : cols[j] + tile] += window
            bar.update(len(chunk))
            if on_tiles is not None:
                on_tiles(len(chunk))

    blended = (total / weights)[:, :, top : top + height, left : left + width]
    return blended if image.ndim == 4 else blended[0]


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    """Tiles of one image of ``height x width`` (padded up to ``tile``) in the layout of :func:`predict_tiled`."""
    return len(tile_positions(max(height, tile), tile, overlap)) * len(tile_positions(max(width, tile), tile, overlap))


def tiled_network(
    model: Callable[..., torch.Tensor],
    tile: int,
    overlap: int,
    batch_size: int,
    multiple_of: int = 1,
    on_tiles: Callable[[int], None] | None = None,
) -> Callable[..., torch.Tensor]:
    """``model`` run tile by tile on inputs of any size: a drop-in for the noise predictor of a sampler.

    The result is called as the network is, ``(x [B, C_in, H, W], t_encoding [B, D], **kwargs)``, with
    H, W >= ``tile`` (pad with :func:`pad_to_tile`), and returns the blended noise prediction
    [B, C_out, H, W] of :func:`predict_tiled`. The sampler keeps x_t and its noise for the whole image, so
    every tile of a step sees the same noise field. All images of a sampling chain are at the same
    time step, so the first row of ``t_encoding`` alone is passed for every tile (the networks' contract,
    :class:`unet.Denoiser`): the time projection is then computed alike for any number of tiles per call,
    and a tile's result does not depend on the batch it is computed in. ``on_tiles``: see :func:`predict_tiled`.
    """

    def call(x: torch.Tensor, t_encoding: torch.Tensor, **kwargs) -> torch.Tensor:
        encoding = t_encoding[:1]
        return predict_tiled(
            x,
            lambda tiles: model(tiles, encoding, **kwargs),
            tile,
            overlap,
            batch_size,
            multiple_of=multiple_of,
            on_tiles=on_tiles,
        )

    return call
