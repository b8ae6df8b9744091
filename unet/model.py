"""The attention U-Net of the tutorial (deeplay ``AttentionUNet``), written out layer by layer."""

from __future__ import annotations

import torch
from torch import nn

from unet.config import UNetConfig
from unet.layers import ConvBlock, DecoderLevel, Level, TransformerBlock
from unet.registry import register_network


@register_network("unet", UNetConfig)
class UNet(nn.Module):
    """Attention U-Net predicting the noise of a (conditioned) noisy image.

    Encoder: one ``Level`` per entry of ``config.channels``, each followed by 2x2 max-pooling (the
    deepest level's pooled output is unused). Bottleneck: ``ConvBlock``s through ``base_channels`` on
    the deepest level's features, at 1 / 2^(depth-1) of the input size. Decoder: per shallower level,
    ``DecoderLevel`` (upsample, concatenate skip, ``Level``). Output: Conv1x1 to ``out_channels``.
    """

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        # None rather than absent, so that TorchScript can tell there is no class embedding.
        self.class_embedding = None
        if config.num_classes is not None:
            self.class_embedding = nn.Embedding(config.num_classes, config.time_encoding_dim)

        in_widths = (config.in_channels, *config.channels[:-1])
        self.encoder = nn.ModuleList(
            self._level(level, in_width, out_width)
            for level, (in_width, out_width) in enumerate(zip(in_widths, config.channels))
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

        widths = (config.channels[-1], *config.base_channels, config.channels[-1])
        self.bottleneck = nn.Sequential(*(ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:])))

        # Deepest-but-one level first; each DecoderLevel brings the features up to its skip's width.
        self.decoder = nn.ModuleList(
            DecoderLevel(
                below_channels=config.channels[level + 1],
                skip_channels=config.channels[level],
                level=self._level(level, 2 * config.channels[level], config.channels[level]),
            )
            for level in reversed(range(config.depth - 1))
        )
        self.output = nn.Conv2d(config.channels[0], config.out_channels, kernel_size=1)

    def _level(self, level: int, in_channels: int, out_channels: int) -> Level:
        config = self.config
        transformer = (
            TransformerBlock(out_channels, config.num_heads, config.num_cross_heads, config.context_dim)
            if config.attention[level]
            else None
        )
        return Level(in_channels, out_channels, config.time_encoding_dim, transformer)

    def forward(
        self,
        x: torch.Tensor,
        t_encoding: torch.Tensor,
        y: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise.

        x: ``[B, in_channels, H, W]``, the condition channels then x_t, in [-1, 1]; H and W divisible
            by 2^(depth-1).
        t_encoding: ``[B, time_encoding_dim]``, ``ddpm.positional_encoding(t, time_encoding_dim)``, or
            ``[1, time_encoding_dim]``: one time step for the whole batch.
        y: optional class labels ``[B]`` (int64 in [0, num_classes)); needs ``config.num_classes``.
        context: optional ``[B, L, context_dim]`` for cross-attention; needs ``config.context_dim``.
        Returns ``[B, out_channels, H, W]``.
        """
        if not torch.jit.is_scripting():  # a scripted network holds no config to check against
            self._check_inputs(x, t_encoding, y, context)
        time = t_encoding
        if self.class_embedding is not None and y is not None:
            time = time + self.class_embedding(y)

        skips = []
        for level, encoder_level in enumerate(self.encoder):
            x = encoder_level(x, time, context)
            skips.append(x)
            if level < len(self.encoder) - 1:  # the deepest pooling's output would be unused
                x = self.pool(x)

        x = self.bottleneck(x)
        # Indexed from the end (the deepest skip is the bottleneck's input): TorchScript has no reversed().
        for level, decoder_level in enumerate(self.decoder):
            x = decoder_level(x, skips[-2 - level], time, context)
        return self.output(x)

    @torch.jit.unused
    def _check_inputs(
        self,
        x: torch.Tensor,
        t_encoding: torch.Tensor,
        y: torch.Tensor | None,
        context: torch.Tensor | None,
    ) -> None:
        config = self.config
        if x.ndim != 4 or x.shape[1] != config.in_channels:
            raise ValueError(
                f"UNet: expected x of shape [B, {config.in_channels}, H, W] (condition channels + image "
                f"channels), got {list(x.shape)}; set UNetConfig.in_channels to match your input."
            )
        rows_ok = t_encoding.ndim == 2 and t_encoding.shape[0] in (1, x.shape[0])
        if not rows_ok or t_encoding.shape[-1] != config.time_encoding_dim:
            raise ValueError(
                f"UNet: expected t_encoding of shape [{x.shape[0]} or 1, {config.time_encoding_dim}], got "
                f"{list(t_encoding.shape)}; encode t with ddpm.positional_encoding(t, "
                f"{config.time_encoding_dim}) or set UNetConfig.time_encoding_dim to its width."
            )
        size_multiple = config.size_multiple
        if x.shape[-2] % size_multiple or x.shape[-1] % size_multiple:
            raise ValueError(
                f"UNet: spatial size {tuple(x.shape[-2:])} is not divisible by 2^(depth-1) = {size_multiple} "
                f"for depth {config.depth}; crop or pad the images to a multiple of {size_multiple}."
            )
        if y is not None and config.num_classes is None:
            raise ValueError(
                "UNet: class labels y were given but UNetConfig.num_classes is None; set num_classes "
                "to build the class embedding, or call the model without y."
            )
        if context is not None and (context.ndim != 3 or context.shape[-1] != config.context_dim):
            raise ValueError(
                f"UNet: expected context of shape [B, L, {config.context_dim}], got {list(context.shape)}; "
                "set UNetConfig.context_dim (with at least one attention level) to the context width."
            )
