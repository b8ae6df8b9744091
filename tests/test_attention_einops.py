"""The attention's einops reshapes: bitwise equal to the explicit reshapes they replaced, and TorchScript-able.

The reference functions below are the pre-einops code of ``unet.layers`` (view / transpose / flatten /
reshape), kept here only as the test's oracle. Every comparison is exact (``torch.equal``, i.e. atol 0)
and also checks strides, because a different memory layout could pick a different kernel downstream.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops.layers.torch import Rearrange
from hypothesis import given
from hypothesis import strategies as st

from ddpm import Diffusion
from experiments.inference.scripted_sampler import ScriptedSolver, script_sampler
from experiments.inference.tiling import TileLayout
from unet import UNet, UNetConfig
from unet.layers import MultiHeadAttention, TransformerBlock


# ---------------------------------------------------------------- the old explicit reshapes (oracle)
def old_split_heads(z: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[B, N, dim] -> [B, heads, N, dim / heads]``."""
    batch, tokens, dim = z.shape
    return z.view(batch, tokens, num_heads, dim // num_heads).transpose(1, 2)


def old_merge_heads(attended: torch.Tensor) -> torch.Tensor:
    """``[B, heads, N, head_dim] -> [B, N, heads * head_dim]``."""
    batch, heads, tokens, head_dim = attended.shape
    return attended.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


def old_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, H*W, C]``."""
    return x.flatten(2).transpose(1, 2)


def old_to_channels(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, H*W, C] -> [B, C, H, W]``."""
    batch, _, channels = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, channels, height, width)


def old_attention(module: MultiHeadAttention, query: torch.Tensor, key_value: torch.Tensor | None) -> torch.Tensor:
    """The pre-einops ``MultiHeadAttention.forward``, on ``module``'s parameters."""
    if key_value is None:
        q, k, v = F.linear(query, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
    else:
        dim = query.shape[-1]
        w_q, w_kv = module.in_proj_weight.split([dim, 2 * dim])
        b_q, b_kv = module.in_proj_bias.split([dim, 2 * dim])
        q = F.linear(query, w_q, b_q)
        k, v = F.linear(key_value, w_kv, b_kv).chunk(2, dim=-1)
    heads = module.num_heads
    attended = F.scaled_dot_product_attention(
        old_split_heads(q, heads), old_split_heads(k, heads), old_split_heads(v, heads)
    )
    return module.out_proj(old_merge_heads(attended))


def old_transformer_block(block: TransformerBlock, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """The pre-einops ``TransformerBlock.forward``, on ``block``'s parameters."""
    _, _, height, width = x.shape
    tokens = block.self_attention_norm(old_to_tokens(x))
    tokens = tokens + old_attention(block.self_attention, tokens, None)
    if block.context_projection is not None and context is not None:
        projected = block.context_projection(context)
        tokens = tokens + old_attention(block.cross_attention, block.cross_attention_norm(tokens), projected)
    tokens = tokens + block.mlp(block.mlp_norm(tokens))
    return old_to_channels(tokens, height, width)


def assert_identical(new: torch.Tensor, old: torch.Tensor) -> None:
    """Same shape, same values bit for bit, same memory layout (strides of size-1 dims address nothing)."""
    assert new.shape == old.shape
    layout = [(size, stride) for size, stride in zip(new.shape, new.stride()) if size > 1]
    assert layout == [(size, stride) for size, stride in zip(old.shape, old.stride()) if size > 1]
    assert torch.equal(new, old)


def randn(shape, seed: int, channels_last: bool = False) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# ---------------------------------------------------------------- the reshapes alone
sizes = st.integers(1, 6)


@given(batch=st.integers(1, 3), tokens=st.integers(1, 12), heads=st.integers(1, 4), head_dim=sizes,
       packed=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2**16))
def test_head_split_and_merge_equal_the_explicit_reshapes(batch, tokens, heads, head_dim, packed, seed):
    dim = heads * head_dim
    # As in the layer: q, k, v are chunks of one packed projection, hence not contiguous when packed > 1.
    z = randn((batch, tokens, packed * dim), seed).chunk(packed, dim=-1)[-1]
    attention = MultiHeadAttention(dim, heads)
    split, merge = attention.split_heads, attention.merge_heads
    assert_identical(split(z), old_split_heads(z, heads))
    attended = randn((batch, heads, tokens, head_dim), seed + 1)
    assert_identical(merge(attended), old_merge_heads(attended))
    assert_identical(merge(split(z)), z.reshape(batch, tokens, dim))


@given(batch=st.integers(1, 3), channels=sizes, height=sizes, width=sizes, channels_last=st.booleans(),
       seed=st.integers(0, 2**16))
def test_image_token_reshapes_equal_the_explicit_reshapes(batch, channels, height, width, channels_last, seed):
    block = TransformerBlock(channels, 1, 1, None)
    x = randn((batch, channels, height, width), seed, channels_last)
    assert_identical(block.to_tokens(x), old_to_tokens(x))
    tokens = randn((batch, height * width, channels), seed + 1)
    assert_identical(block.to_channels(tokens).unflatten(2, (height, width)), old_to_channels(tokens, height, width))


# ---------------------------------------------------------------- the layers: old forward == new forward
@given(head_dim=st.integers(1, 4), heads=st.integers(1, 4), height=sizes, width=sizes, cross=st.booleans(),
       channels_last=st.booleans(), seed=st.integers(0, 2**16))
def test_transformer_block_equals_the_explicit_reshape_version(head_dim, heads, height, width, cross, channels_last, seed):
    torch.manual_seed(seed)
    channels = heads * head_dim
    block = TransformerBlock(channels, heads, heads, 3 if cross else None)
    x = randn((2, channels, height, width), seed, channels_last)
    context = randn((2, 4, 3), seed + 1) if cross else None
    with torch.no_grad():
        assert_identical(block(x, context), old_transformer_block(block, x, context))
        tokens = randn((2, height * width, channels), seed + 2)
        assert_identical(block.self_attention(tokens), old_attention(block.self_attention, tokens, None))


def test_rearrange_layers_hold_no_state_so_parameter_names_are_unchanged():
    block = TransformerBlock(8, 2, 2, 3)
    rearranges = [m for m in block.modules() if isinstance(m, Rearrange)]
    assert len(rearranges) == 6  # to_tokens, to_channels, and split/merge in each of the two attentions
    assert all(not list(m.parameters()) and not list(m.buffers()) for m in rearranges)
    attention = ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    expected = {f"{m}.{n}" for m in ("self_attention", "cross_attention") for n in attention} | {
        f"{m}.{p}"
        for m in ("self_attention_norm", "cross_attention_norm", "mlp_norm", "context_projection", "mlp.0", "mlp.2")
        for p in ("weight", "bias")
    }
    assert set(block.state_dict()) == expected


# ---------------------------------------------------------------- TorchScript: the network and the sampler
ATTENTION_NET = dict(channels=(8, 16), base_channels=(16,), attention=(True, True), time_encoding_dim=16, num_heads=2)


@pytest.mark.parametrize("extras", [{}, {"num_classes": 3, "context_dim": 4, "num_cross_heads": 4}])
def test_unet_with_attention_scripts_to_the_same_numbers(extras):
    torch.manual_seed(0)
    network = UNet(UNetConfig(**ATTENTION_NET, **extras)).eval()
    scripted = torch.jit.script(network)
    y = torch.tensor([0, 2]) if extras else None
    context = torch.randn(2, 5, 4) if extras else None
    with torch.no_grad():
        for height, width in ((8, 8), (6, 10)):
            x, encoding = torch.randn(2, 2, height, width), torch.randn(2, 16)
            assert torch.equal(scripted(x, encoding, y, context), network(x, encoding, y, context))


@pytest.mark.parametrize("sampler", ["dpmpp2m", "ddim"])
def test_script_sampler_with_an_attention_unet_equals_the_eager_sampler(tmp_path, sampler):
    torch.manual_seed(0)
    network = UNet(UNetConfig(**ATTENTION_NET))
    diffusion = Diffusion(steps=50, time_encoding_dim=16)
    layout = TileLayout(4, 2, batch_size=3)  # several tiles in several calls
    module = script_sampler(network, diffusion, sampler, sampling_steps=4, seed=3, layout=layout)
    module.save(str(tmp_path / "sampler.pt"))
    loaded = torch.jit.load(str(tmp_path / "sampler.pt"))
    eager = ScriptedSolver(network, diffusion, sampler, 4, 3, layout)
    widefield = torch.rand(2, 1, 8, 6) * 2 - 1
    with torch.no_grad():
        expected = eager(widefield)
        assert expected.shape == (2, 1, 8, 6) and torch.isfinite(expected).all()
        torch.testing.assert_close(module(widefield), expected, rtol=0, atol=0)
        torch.testing.assert_close(loaded(widefield), expected, rtol=0, atol=0)
