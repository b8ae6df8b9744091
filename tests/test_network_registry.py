"""Networks chosen by name: the registry, the declared contract, config.json and the command line."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace

import pytest
import torch
from torch import nn

from experiments.config.command_line import add_config_arguments, config_from_args

from experiments.config.presets import DEMO

from experiments.config.schema import RunConfig
from experiments.build import build_model
from unet import Denoiser, NetworkConfig, ResNet, ResNetConfig, UNet, UNetConfig, register_network

TINY_UNET = UNetConfig(channels=(4, 8), base_channels=(8,), attention=(False, False), time_encoding_dim=8)


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser()
    add_config_arguments(result)
    return result


def parse(*argv: str) -> RunConfig:
    return config_from_args(parser().parse_args(list(argv)))


def test_config_json_records_the_kind_and_reads_it_back(tmp_path):
    config = replace(DEMO, network=ResNetConfig(width=16, blocks=3))
    config.save(tmp_path / "config.json")
    stored = json.loads((tmp_path / "config.json").read_text())["network"]
    assert stored == {"kind": "resnet", "in_channels": 2, "out_channels": 1, "width": 16, "blocks": 3, "time_encoding_dim": 256}
    assert RunConfig.load(tmp_path / "config.json") == config
    assert DEMO.to_dict()["network"]["kind"] == "unet"


def test_a_network_without_kind_as_written_before_registry_loads_as_the_unet():
    legacy = {"name": "old", "network": {"in_channels": 2, "channels": [4, 8], "base_channels": [8],
                                          "attention": [False, False], "time_encoding_dim": 8}}
    assert RunConfig.from_dict(legacy).network == TINY_UNET


def test_the_command_line_chooses_a_kind_and_reads_its_own_fields():
    config = parse("--preset", "demo", "--network.kind", "resnet", "--network.width", "32", "--blocks", "2")
    assert config == replace(DEMO, network=ResNetConfig(width=32, blocks=2))
    # Without --network.kind the preset's network keeps its other fields.
    assert parse("--preset", "demo", "--channels", "8,16,32").network == replace(DEMO.network, channels=(8, 16, 32))


def test_a_field_the_kind_lacks_is_refused_naming_the_kind_and_its_fields(capsys):
    from experiments.train import main

    assert main(["--preset", "demo", "--network.kind", "resnet", "--channels", "8,16"]) == 1
    err = capsys.readouterr().err
    assert "--network.kind resnet has no field channels" in err
    assert "in_channels, out_channels, width, blocks, time_encoding_dim" in err
    with pytest.raises(ValueError, match="unet has no field width"):
        parse("--network.width", "8")
    with pytest.raises(ValueError, match="--network.blocks: cannot read 'two' as int"):
        parse("--network.kind", "resnet", "--network.blocks", "two")


def test_help_lists_the_kinds_and_which_kind_each_field_belongs_to():
    text = " ".join(parser().format_help().split())
    assert "--network.kind {unet,resnet}" in text
    assert "--network.width WIDTH, --width WIDTH (int for resnet)" in text
    assert "--network.channels CHANNELS, --channels CHANNELS (tuple[int, ...] for unet)" in text
    assert "--network.in_channels IN_CHANNELS, --in-channels IN_CHANNELS (int for unet, resnet)" in text


def test_the_unet_is_built_as_before_weight_for_weight():
    torch.manual_seed(0)
    direct = UNet(DEMO.network).state_dict()
    torch.manual_seed(0)
    registered = build_model(DEMO, torch.device("cpu")).state_dict()
    assert list(direct) == list(registered)
    assert all(torch.equal(direct[name], registered[name]) for name in direct)


def test_both_networks_keep_the_declared_contract():
    for model in (UNet(TINY_UNET), ResNet(ResNetConfig(width=8, blocks=2, time_encoding_dim=8))):
        assert isinstance(model, Denoiser) and isinstance(model.config, NetworkConfig)
        side = 3 * model.config.size_multiple
        x = torch.randn(2, model.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
        assert model(x, torch.zeros(2, model.config.time_encoding_dim)).shape == (2, 1, side, side)
    assert (UNet(TINY_UNET).config.size_multiple, ResNetConfig().size_multiple) == (2, 1)


def test_the_residual_network_takes_any_size_and_conditions_every_block_on_time():
    model = ResNet(ResNetConfig(width=8, blocks=2, time_encoding_dim=8))
    generator = torch.Generator().manual_seed(0)
    x, t_encoding = torch.randn(1, 2, 7, 5, generator=generator), torch.randn(2, 8, generator=generator)
    with torch.no_grad():
        out = model(x.expand(2, -1, -1, -1), t_encoding)
        assert out.shape == (2, 1, 7, 5) and not torch.allclose(out[0], out[1])
        # Zeroing one block's time projection changes the output: the encoding enters there too.
        model.blocks[1].time.weight.zero_()
        model.blocks[1].time.bias.zero_()
        assert not torch.allclose(model(x.expand(2, -1, -1, -1), t_encoding), out)


def test_the_registry_refuses_a_taken_name_and_an_undeclared_contract():
    with pytest.raises(ValueError, match="'resnet' is already taken by ResNet"):
        register_network("resnet", ResNetConfig)(nn.Identity)

    @dataclass(frozen=True)
    class Shapeless:
        width: int = 8

    with pytest.raises(TypeError, match=r"Shapeless lacks \['in_channels', 'time_encoding_dim', 'size_multiple'\]"):
        register_network("shapeless", Shapeless)
    with pytest.raises(ValueError, match=r"unknown network kind 'vit'; choose one of \['unet', 'resnet'\]"):
        RunConfig.from_dict({"network": {"kind": "vit"}})
