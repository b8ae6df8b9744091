"""Building blocks of the attention U-Net (tutorial summary, "The network").

Feature maps are ``[B, C, H, W]``; token sequences are ``[B, N, C]`` with N = H * W.

Reshapes are einops ``Rearrange`` layers, not ``einops.rearrange`` calls: the layers compile with
``torch.jit.script`` (the exported sampler scripts the whole network), the function does not. They hold
no parameters, so parameter names and the state_dict are those of plain reshapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops.layers.torch import Rearrange
from torch import nn


class ConvBlock(nn.Module):
    """Conv3x3 (padding 1) -> GroupNorm(1 group) -> GELU: ``[B, C_in, H, W] -> [B, C_out, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        # One group normalises over all of C, H, W per image (a LayerNorm for feature maps).
        self.norm = nn.GroupNorm(1, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.norm(self.conv(x)))


class MultiHeadAttention(nn.Module):
    """Multi-head attention with the parameters of ``nn.MultiheadAttention(dim, heads, batch_first=True)``.

    out = W_o concat_h softmax(Q_h K_h^T / sqrt(dim / heads)) V_h + b_o, with [Q; K; V] projected by
    one packed ``in_proj_weight`` [3 * dim, dim]. The product runs through
    ``F.scaled_dot_product_attention`` so GPUs use their fused kernels.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MultiHeadAttention: dim {dim} is not divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.split_heads = Rearrange("b n (heads d) -> b heads n d", heads=num_heads)
        self.merge_heads = Rearrange("b heads n d -> b n (heads d)")
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        # Same initialisation as nn.MultiheadAttention, so training from scratch behaves alike.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor | None = None) -> torch.Tensor:
        """query ``[B, N, dim]`` attends to key_value ``[B, L, dim]``, or to itself when key_value is None."""
        if key_value is None:
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            w_q, w_kv = self.in_proj_weight.split([query.shape[-1], 2 * query.shape[-1]])
            b_q, b_kv = self.in_proj_bias.split([query.shape[-1], 2 * query.shape[-1]])
            q = F.linear(query, w_q, b_q)
            k, v = F.linear(key_value, w_kv, b_kv).chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(self.split_heads(q), self.split_heads(k), self.split_heads(v))
        return self.out_proj(self.merge_heads(attended))


class TransformerBlock(nn.Module):
    """Transformer block on the H * W pixels of a feature map, ``[B, C, H, W] -> [B, C, H, W]``.

    With tokens x (``[B, H*W, C]``), as in the original network:
        x = LN1(x);  x = x + SelfAttn(x)          (the residual starts from the *normalised* tokens)
        x = x + CrossAttn(LN2(x), Linear(context)) if a context is given
        x = x + MLP(LN3(x)),  MLP = Linear -> GELU -> Linear
    """

    def __init__(self, channels: int, num_heads: int, num_cross_heads: int, context_dim: int | None) -> None:
        super().__init__()
        self.self_attention_norm = nn.LayerNorm(channels)
        self.self_attention = MultiHeadAttention(channels, num_heads)
        # None rather than absent, so that TorchScript can tell the cross-attention is not there.
        self.cross_attention = self.cross_attention_norm = self.context_projection = None
        if context_dim is not None:
            self.cross_attention = MultiHeadAttention(channels, num_cross_heads)
            self.cross_attention_norm = nn.LayerNorm(channels)
            self.context_projection = nn.Linear(context_dim, channels)
        self.mlp_norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.GELU(), nn.Linear(channels, channels))
        self.to_tokens = Rearrange("b c h w -> b (h w) c")
        # The way back needs h, known only at run time, which a Rearrange layer cannot take
        # (its lengths are fixed at construction): channels first here, then unflatten in forward.
        self.to_channels = Rearrange("b hw c -> b c hw")

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        tokens = self.self_attention_norm(self.to_tokens(x))
        tokens = tokens + self.self_attention(tokens)
        if self.context_projection is not None and context is not None:
            projected = self.context_projection(context)
            tokens = tokens + self.cross_attention(self.cross_attention_norm(tokens), projected)
        tokens = tokens + self.mlp(self.mlp_norm(tokens))
        return self.to_channels(tokens).unflatten(2, x.shape[2:])


class Level(nn.Module):
    """One U-Net level with time conditioning, ``[B, C_in, H, W] -> [B, C_out, H, W]``.

        h = ConvBlock(x) + Linear(time)[:, :, None, None]
        h = ConvBlock(h) + Conv1x1(x)
        h = TransformerBlock(h, context)   if attention is enabled at this level
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        time_encoding_dim: int,
        transformer: TransformerBlock | None = None,
    ) -> None:
        super().__init__()
        # Registration order follows the original, so parameter lists (and optimizer states) line up.
        self.conv_in = ConvBlock(in_channels, out_channels)
        self.conv_out = ConvBlock(out_channels, out_channels)
        self.residual = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.time_projection = nn.Linear(time_encoding_dim, out_channels)
        self.transformer = transformer

    def forward(self, x: torch.Tensor, time: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """x ``[B, C_in, H, W]``, time ``[B, time_encoding_dim]``, context ``[B, L, context_dim]`` or None."""
        h = self.conv_in(x) + self.time_projection(time)[:, :, None, None]
        h = self.conv_out(h) + self.residual(x)
        if self.transformer is not None:
            h = self.transformer(h, context)
        return h


class DecoderLevel(nn.Module):
    """Upsample 2x by ConvTranspose 2x2 stride 2, concatenate the skip, then a ``Level``.

    ``[B, C_below, H/2, W/2]`` and skip ``[B, C_skip, H, W]`` -> ``[B, C_skip, H, W]``.
    """

    def __init__(self, below_channels: int, skip_channels: int, level: Level) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose2d(below_channels, skip_channels, kernel_size=2, stride=2)
        self.level = level

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, time: torch.Tensor, context: torch.Tensor | None
    ) -> torch.Tensor:
        return self.level(torch.cat([self.upsample(x), skip], dim=1), time, context)
