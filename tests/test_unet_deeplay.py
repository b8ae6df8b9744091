"""Our UNet is deeplay's AttentionUNet: same parameters, same outputs on the same weights.

Fixtures (copied from the project's shared fixtures so a clone is self-contained):
- deeplay_attention_unet_tutorial.json: every parameter name and shape of deeplay's ``AttentionUNet``
  in the tutorial configuration, in registration order.
- deeplay_attention_unet_tiny.pt: four small deeplay networks (plain, self-attention, class-conditioned,
  cross-attention), each with its constructor arguments, a state_dict, random inputs and the output
  deeplay computed from them. Plain tensors, dicts and lists only, so ``weights_only=True`` loads it.
Both were checked against deeplay 0.1.4 (torch 2.14.1, CPU) in a scratch environment: its
``named_parameters()`` equal the JSON list, and its outputs on the .pt inputs equal ``out`` exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unet import UNet, UNetConfig, deeplay_name_to_unet, load_deeplay_state_dict, unet_from_deeplay

FIXTURES = Path(__file__).parent / "fixtures"
TUTORIAL = json.loads((FIXTURES / "deeplay_attention_unet_tutorial.json").read_text())
TINY = torch.load(FIXTURES / "deeplay_attention_unet_tiny.pt", weights_only=True)


def test_default_config_is_the_tutorials():
    assert UNetConfig() == UNetConfig.from_deeplay(TUTORIAL["config"])


def test_default_parameter_count_is_the_tutorials():
    model = UNet()
    assert sum(p.numel() for p in model.parameters()) == TUTORIAL["parameter_count"] == 1_752_193


def test_name_mapping_covers_every_tutorial_parameter_one_to_one_with_equal_shapes():
    ours = {name: tuple(p.shape) for name, p in UNet().named_parameters()}
    mapped = {deeplay_name_to_unet(name): tuple(shape) for name, shape in TUTORIAL["parameters"]}
    assert len(mapped) == len(TUTORIAL["parameters"])  # injective: no two deeplay names collide
    assert mapped == ours


@pytest.mark.parametrize("case", sorted(TINY))
def test_name_mapping_covers_every_option(case):
    fixture = TINY[case]
    model = UNet(UNetConfig.from_deeplay(fixture["config"]))
    mapped = {deeplay_name_to_unet(name): tuple(t.shape) for name, t in fixture["state_dict"].items()}
    assert mapped == {name: tuple(t.shape) for name, t in model.state_dict().items()}


@pytest.mark.parametrize("case", ["plain", "self_attention", "class_conditioned", "cross_attention"])
def test_deeplay_weights_reproduce_deeplay_outputs(case):
    fixture = TINY[case]
    model = unet_from_deeplay(fixture["config"], fixture["state_dict"]).eval()
    t = fixture["t"].clone()
    with torch.no_grad():
        out = model(fixture["x"], t, fixture["y"], fixture["context"])
    torch.testing.assert_close(out, fixture["out"], rtol=0, atol=1e-5)
    assert torch.equal(t, fixture["t"])  # unlike the original, the time encoding is not changed in place


def test_loading_into_a_mismatched_config_names_the_differences():
    fixture = TINY["self_attention"]
    plain_model = UNet(UNetConfig.from_deeplay({**fixture["config"], "channel_attention": [False] * 3}))
    with pytest.raises(ValueError, match=r"not in model: \['decoder\.0\.level\.transformer"):
        load_deeplay_state_dict(plain_model, fixture["state_dict"])


def test_from_deeplay_rejects_unknown_arguments():
    with pytest.raises(ValueError, match="unknown deeplay arguments"):
        UNetConfig.from_deeplay({"chanels": [8, 16]})
