"""The attention U-Net: input checks, every option trains (forward + backward), SDPA == nn.MultiheadAttention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unet import UNet, UNetConfig, optimize_for_speed
from unet.layers import MultiHeadAttention, TransformerBlock

TINY = dict(channels=(4, 8, 16), base_channels=(8,), time_encoding_dim=8)


def tiny_inputs(config: UNetConfig, size: int = 8, batch: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, config.in_channels, size, size, generator=generator)
    t_encoding = torch.randn(batch, config.time_encoding_dim, generator=generator)
    return x, t_encoding


# ---------------------------------------------------------------- every option: forward + backward

OPTIONS = {
    "plain": dict(),
    "attention_finest_level": dict(attention=(True, False, False)),
    "attention_deepest_level": dict(attention=(False, False, True), num_heads=4),
    "attention_everywhere_two_heads": dict(attention=(True, True, True), num_heads=2),
    "class_conditioned": dict(num_classes=3),
    "cross_attention": dict(attention=(False, True, True), context_dim=5, num_cross_heads=2),
    "depth_1": dict(channels=(4,), attention=(False,)),
    "depth_2_wide_bottleneck": dict(channels=(4, 8), attention=(False, True), base_channels=(16, 32, 16)),
    "depth_4": dict(channels=(4, 8, 16, 32), attention=(False,) * 4),
    "non_doubling_widths": dict(channels=(4, 6, 10), attention=(True, True, False)),
    "two_image_channels": dict(in_channels=3, out_channels=2),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_every_option_runs_forward_and_backward(name):
    torch.manual_seed(0)
    config = UNetConfig(**{**TINY, **OPTIONS[name]})
    model = UNet(config)
    size = config.size_multiple * 2
    x, t_encoding = tiny_inputs(config, size=size)
    y = torch.tensor([0, 2]) if config.num_classes else None
    context = torch.randn(2, 3, config.context_dim) if config.context_dim else None

    out = model(x, t_encoding, y, context)
    assert out.shape == (2, config.out_channels, size, size)
    out.square().mean().backward()
    # Every parameter takes part: none is built and then skipped.
    unused = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert unused == []


def test_class_labels_change_the_output_and_context_changes_the_output():
    torch.manual_seed(0)
    config = UNetConfig(**TINY, num_classes=2, attention=(False, True, False), context_dim=3)
    model = UNet(config)
    x, t_encoding = tiny_inputs(config)
    context = torch.randn(2, 4, 3)
    base = model(x, t_encoding, torch.tensor([0, 0]), context)
    assert not torch.allclose(base, model(x, t_encoding, torch.tensor([1, 1]), context))
    assert not torch.allclose(base, model(x, t_encoding, torch.tensor([0, 0]), context + 1))


def test_batch_items_are_independent():
    """GroupNorm(1) and attention act per image: an item's output ignores the rest of the batch."""
    torch.manual_seed(0)
    config = UNetConfig(**TINY, attention=(True, False, True))
    model = UNet(config)
    x, t_encoding = tiny_inputs(config, batch=3)
    torch.testing.assert_close(model(x, t_encoding)[:1], model(x[:1], t_encoding[:1]), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- input checks


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return UNet(UNetConfig(**TINY))


def test_wrong_channel_count_is_rejected(tiny_model):
    x, t_encoding = tiny_inputs(tiny_model.config)
    with pytest.raises(ValueError, match=r"expected x of shape \[B, 2, H, W\].*UNetConfig.in_channels"):
        tiny_model(x[:, :1], t_encoding)


def test_wrong_time_encoding_width_is_rejected(tiny_model):
    x, t_encoding = tiny_inputs(tiny_model.config)
    with pytest.raises(ValueError, match=r"t_encoding of shape \[2 or 1, 8\].*positional_encoding"):
        tiny_model(x, t_encoding[:, :4])
    with pytest.raises(ValueError, match=r"t_encoding of shape \[2 or 1, 8\]"):
        tiny_model(x, t_encoding[:, :1].squeeze(1))  # raw timesteps instead of their encoding
    with pytest.raises(ValueError, match=r"t_encoding of shape \[2 or 1, 8\]"):
        tiny_model(x, t_encoding.repeat(2, 1))  # neither one row per image nor one for all


def test_class_labels_without_num_classes_are_rejected(tiny_model):
    x, t_encoding = tiny_inputs(tiny_model.config)
    with pytest.raises(ValueError, match="num_classes is None"):
        tiny_model(x, t_encoding, y=torch.tensor([0, 1]))


@pytest.mark.parametrize("size", [(6, 8), (8, 10), (2, 8)])
def test_spatial_size_not_divisible_by_two_to_the_depth_minus_one_is_rejected(tiny_model, size):
    x = torch.randn(2, 2, *size)
    with pytest.raises(ValueError, match=r"not divisible by 2\^\(depth-1\) = 4"):
        tiny_model(x, torch.randn(2, 8))


def test_context_of_the_wrong_width_or_without_context_dim_is_rejected(tiny_model):
    x, t_encoding = tiny_inputs(tiny_model.config)
    with pytest.raises(ValueError, match="UNetConfig.context_dim"):
        tiny_model(x, t_encoding, context=torch.randn(2, 3, 5))
    model = UNet(UNetConfig(**TINY, attention=(True, False, False), context_dim=5))
    with pytest.raises(ValueError, match=r"context of shape \[B, L, 5\]"):
        model(x, t_encoding, context=torch.randn(2, 3, 4))


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(attention=(True, False)), "one flag per entry of channels"),
        (dict(attention=(True, False, False), num_heads=3), "not divisible by num_heads=3"),
        (dict(attention=(False, True, False), context_dim=4, num_cross_heads=3), "num_cross_heads=3"),
        (dict(context_dim=4), "no level has attention"),
        (dict(channels=()), "at least one entry"),
    ],
)
def test_invalid_configs_are_rejected(fields, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**{**TINY, **fields})


def test_config_round_trips_through_a_plain_dict():
    config = UNetConfig(**TINY, attention=(True, False, True), num_classes=4)
    assert UNetConfig(**config.to_dict()) == config


# ---------------------------------------------------------------- attention == nn.MultiheadAttention


@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("cross", [False, True])
def test_sdpa_attention_equals_nn_multihead_attention(heads, cross):
    torch.manual_seed(heads)
    dim = 8
    reference = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():  # nonzero biases, so a bias mix-up cannot hide
        reference.in_proj_bias.normal_()
        reference.out_proj.bias.normal_()
    ours = MultiHeadAttention(dim, heads)
    ours.load_state_dict(reference.state_dict())  # same names: in_proj_weight, in_proj_bias, out_proj.*

    query = torch.randn(3, 10, dim)
    key_value = torch.randn(3, 4, dim) if cross else query
    expected, _ = reference(query, key_value, key_value)
    torch.testing.assert_close(ours(query, key_value if cross else None), expected, rtol=1e-5, atol=1e-6)


def test_transformer_block_residual_starts_from_the_normalised_tokens():
    """As in the original: x = LN1(x); x = x + SelfAttn(x). Zeroing attention and MLP leaves LN1(x)."""
    torch.manual_seed(0)
    block = TransformerBlock(channels=4, num_heads=1, num_cross_heads=1, context_dim=None)
    with torch.no_grad():
        for layer in (block.self_attention.out_proj, block.mlp[2]):
            layer.weight.zero_()
            layer.bias.zero_()
    x = torch.randn(2, 4, 3, 5)
    tokens = x.flatten(2).transpose(1, 2)
    expected = block.self_attention_norm(tokens).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(block(x, None), expected)


# ---------------------------------------------------------------- speed options keep the outputs


def _speed_case():
    torch.manual_seed(0)
    config = UNetConfig(**TINY, attention=(False, True, False))
    return UNet(config), *tiny_inputs(config)


def test_optimize_for_speed_channels_last_keeps_outputs_and_parameters():
    model, x, t_encoding = _speed_case()
    expected = model(x, t_encoding)
    fast = optimize_for_speed(model)
    assert fast.output.weight is model.output.weight  # the optimiser still trains `model`
    assert fast.encoder[0].conv_in.conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x, t_encoding), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_optimize_for_speed_compile_keeps_outputs():
    model, x, t_encoding = _speed_case()
    expected = model(x, t_encoding)
    torch.testing.assert_close(optimize_for_speed(model, compile=True)(x, t_encoding), expected, rtol=1e-5, atol=1e-5)
