"""Typed configuration of the attention U-Net.

The defaults are the tutorial's network (deeplay ``AttentionUNet`` with in_channels 2,
channels [32, 64, 128], base_channels [256, 256], no attention, out_channels 1,
position_embedding_dim 256): 1,752,193 parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from ddpm.settings import UsageError, bounded, check_ranges


@dataclass(frozen=True)
class UNetConfig:
    """Shape of the attention U-Net.

    in_channels: channels of the network input, i.e. condition channels + image channels
        (the tutorial feeds [widefield, x_t], hence 2).
    out_channels: channels of the predicted noise (1 for grey-scale images).
    channels: output channels of each encoder level, finest first. The decoder mirrors all but the
        deepest level, so the depth is ``len(channels)``.
    base_channels: channels of the bottleneck blocks, which run at 1 / 2^(depth-1) of the input size
        (a quarter for the tutorial's depth 3).
    attention: one flag per level: append a transformer block (self-attention, optional
        cross-attention, MLP) to that level's encoder module and, when it has one, its decoder module.
    time_encoding_dim: width of the time encoding passed to ``forward`` (``ddpm.positional_encoding``).
    num_heads: heads of every self-attention layer.
    num_cross_heads: heads of every cross-attention layer.
    num_classes: if set, a class embedding of width ``time_encoding_dim`` is added to the time encoding.
    context_dim: if set, every transformer block cross-attends to a context ``[B, L, context_dim]``.
    """

    in_channels: int = bounded(2, 1)
    out_channels: int = bounded(1, 1)
    channels: tuple[int, ...] = bounded((32, 64, 128), 1)
    base_channels: tuple[int, ...] = bounded((256, 256), 1)
    attention: tuple[bool, ...] = (False, False, False)
    time_encoding_dim: int = bounded(256, 2)
    num_heads: int = bounded(1, 1)
    num_cross_heads: int = bounded(1, 1)
    num_classes: int | None = bounded(None, 1)
    context_dim: int | None = bounded(None, 1)

    def __post_init__(self) -> None:
        # Accept lists (from JSON or the command line) but store tuples so the config stays hashable.
        for name in ("channels", "base_channels", "attention"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_ranges(self, "--network.")
        if self.time_encoding_dim % 2:
            raise UsageError(f"--network.time_encoding_dim must be even (sines and cosines), got {self.time_encoding_dim}")
        if not self.channels or not self.base_channels:
            raise UsageError("UNetConfig: channels and base_channels need at least one entry each.")
        if len(self.attention) != len(self.channels):
            raise UsageError(
                f"UNetConfig: attention has {len(self.attention)} flags but channels has "
                f"{len(self.channels)} levels; give one flag per entry of channels."
            )
        for level, (width, enabled) in enumerate(zip(self.channels, self.attention)):
            for heads_name in ("num_heads", "num_cross_heads"):
                heads = getattr(self, heads_name)
                if enabled and width % heads:
                    raise UsageError(
                        f"UNetConfig: level {level} has {width} channels, not divisible by "
                        f"{heads_name}={heads}; choose a head count that divides every attended width."
                    )
        if self.context_dim is not None and not any(self.attention):
            raise UsageError(
                "UNetConfig: context_dim is set but no level has attention, so the context would be "
                "ignored; set at least one attention flag to True."
            )

    @property
    def depth(self) -> int:
        """Number of encoder levels; inputs must be divisible by 2^(depth-1)."""
        return len(self.channels)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this, 2^(depth-1): the encoder halves them depth-1 times."""
        return 2 ** (self.depth - 1)

    @classmethod
    def from_deeplay(cls, deeplay_kwargs: Mapping[str, Any]) -> "UNetConfig":
        """Translate the keyword arguments of deeplay's ``AttentionUNet`` into a ``UNetConfig``.

        Missing arguments take deeplay's own defaults (in_channels 1, attention at every level,
        embedding dim 16, one head), not ours, so a deeplay config means the same network here.
        """
        known = {
            "in_channels", "channels", "channel_attention", "base_channels", "out_channels",
            "position_embedding_dim", "num_classes", "context_embedding_dim", "num_attention_heads",
        }
        unknown = set(deeplay_kwargs) - known
        if unknown:
            raise UsageError(f"UNetConfig.from_deeplay: unknown deeplay arguments {sorted(unknown)}; "
                             f"expected a subset of {sorted(known)}.")
        heads = deeplay_kwargs.get("num_attention_heads", {"self": 1, "cross": 1})
        channels = tuple(deeplay_kwargs.get("channels", (32, 64, 128)))
        return cls(
            in_channels=deeplay_kwargs.get("in_channels", 1),
            out_channels=deeplay_kwargs.get("out_channels", 1),
            channels=channels,
            base_channels=tuple(deeplay_kwargs.get("base_channels", (256, 256))),
            attention=tuple(deeplay_kwargs.get("channel_attention", (True,) * len(channels))),
            time_encoding_dim=deeplay_kwargs.get("position_embedding_dim", 16),
            num_heads=heads.get("self", 1),
            num_cross_heads=heads.get("cross", 1),
            num_classes=deeplay_kwargs.get("num_classes"),
            context_dim=deeplay_kwargs.get("context_embedding_dim"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (lists instead of tuples), e.g. to store beside a checkpoint."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}
