"""Load weights trained with the tutorial's code (deeplay ``AttentionUNet``) into ``UNet``.

Our parameter names describe the layer they belong to; deeplay's follow its module tree. The rules
below rename one into the other, e.g.

    encoder.blocks.0.blocks.1.normalization.weight          -> encoder.0.conv_out.norm.weight
    encoder.blocks.1.feed_forward_position_embedding.bias    -> encoder.1.time_projection.bias
    base_blocks.2.layer.weight                               -> bottleneck.2.conv.weight
    decoder.blocks.0.0.weight                                -> decoder.0.upsample.weight
    decoder.blocks.0.1.attention_layer.layer_norm1.weight    -> decoder.0.level.transformer.self_attention_norm.weight
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from unet.config import UNetConfig
from unet.model import UNet

# (pattern, replacement) applied in order to every deeplay name.
DEEPLAY_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"^encoder\.blocks\.(\d+)\.", r"encoder.\1."),
    (r"^decoder\.blocks\.(\d+)\.0\.", r"decoder.\1.upsample."),
    (r"^decoder\.blocks\.(\d+)\.1\.", r"decoder.\1.level."),
    (r"^base_blocks\.", "bottleneck."),
    (r"\.blocks\.0\.", ".conv_in."),
    (r"\.blocks\.1\.", ".conv_out."),
    (r"\.layer\.", ".conv."),
    (r"\.normalization\.", ".norm."),
    (r"\.res_block\.", ".residual."),
    (r"\.feed_forward_position_embedding\.", ".time_projection."),
    (r"\.attention_layer\.", ".transformer."),
    (r"\.layer_norm1\.", ".self_attention_norm."),
    (r"\.layer_norm2\.", ".cross_attention_norm."),
    (r"\.layer_norm3\.", ".mlp_norm."),
    (r"\.feed_forward\.", ".mlp."),
)


def deeplay_name_to_unet(name: str) -> str:
    """Our parameter name for deeplay's parameter ``name`` (see the module docstring for examples)."""
    for pattern, replacement in DEEPLAY_NAME_RULES:
        name = re.sub(pattern, replacement, name)
    return name


def load_deeplay_state_dict(model: UNet, state_dict: Mapping[str, torch.Tensor]) -> UNet:
    """Copy a deeplay ``AttentionUNet`` state_dict into ``model`` (in place) and return ``model``.

    Every entry must find its parameter and every parameter must be filled, with equal shapes;
    otherwise the error says which names differ, which usually means ``model`` was built with
    another config than the checkpoint (use ``UNetConfig.from_deeplay`` on deeplay's arguments).
    """
    renamed = {deeplay_name_to_unet(name): tensor for name, tensor in state_dict.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    mismatched = sorted(
        f"{name}: checkpoint {tuple(renamed[name].shape)}, model {tuple(expected[name].shape)}"
        for name in set(expected) & set(renamed)
        if renamed[name].shape != expected[name].shape
    )
    if missing or unexpected or mismatched:
        raise ValueError(
            "load_deeplay_state_dict: the checkpoint does not fit this UNet's config "
            f"{model.config}.\n  missing in checkpoint: {missing}\n  not in model: {unexpected}\n"
            f"  shape mismatch: {mismatched}\n"
            "Build the model with UNetConfig.from_deeplay(<the AttentionUNet arguments used for training>)."
        )
    model.load_state_dict(renamed)
    return model


def unet_from_deeplay(deeplay_kwargs: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> UNet:
    """Build a ``UNet`` from deeplay ``AttentionUNet`` arguments and load its trained weights."""
    return load_deeplay_state_dict(UNet(UNetConfig.from_deeplay(deeplay_kwargs)), state_dict)
