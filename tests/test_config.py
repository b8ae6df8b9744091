"""Run configuration: presets, command-line overrides, JSON round trip."""

import argparse

import pytest

from experiments.config import PRESETS, RunConfig, add_config_arguments, check_consistency, config_from_args, preset
from unet import UNet


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_tutorial_presets_hold_the_tutorials_settings():
    for name, loss in (("mse", "mse"), ("l1", "l1")):
        config = preset(name)
        assert (config.train.batch_size, config.train.lr, config.train.epochs, config.train.loss) == (64, 1e-4, 60, loss)
        assert (config.diffusion.steps, config.diffusion.beta_start, config.diffusion.beta_end) == (2000, 1e-6, 0.01)
        assert config.diffusion.schedule == "linear"
        assert config.eval.levels == ("level_09",) and config.eval.max_test_images is None
        assert config.eval.every == 1 and config.data.augment is False
        assert sum(p.numel() for p in UNet(config.network).parameters()) == 1_752_193


def test_overrides_by_short_and_dotted_names():
    config = parse("--preset", "l1", "--epochs", "5", "--train.lr", "2e-4", "--channels", "8,16", "--attention", "false,true",
                   "--base-channels", "32", "--max-test-images", "none", "--variance", "beta_tilde")
    assert config.name == "l1" and config.train.loss == "l1"
    assert config.train.epochs == 5 and config.train.lr == 2e-4
    assert config.network.channels == (8, 16) and config.network.attention == (False, True)
    assert config.network.base_channels == (32,)
    assert config.eval.max_test_images is None and config.eval.variance == "beta_tilde"


def test_none_clears_an_optional_field():
    assert parse("--preset", "demo").data.crop == 64
    config = parse("--preset", "demo", "--crop", "none", "--ema-decay", "none", "--max-test-images", "none")
    assert config.data.crop is None and config.train.ema_decay is None and config.eval.max_test_images is None


@pytest.mark.parametrize("argv", [["--loss", "huber"], ["--epochs", "many"], ["--augment", "perhaps"]])
def test_bad_values_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        parse(*argv)
    assert argv[0] in capsys.readouterr().err


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        preset("fast")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(tmp_path, name):
    path = tmp_path / "config.json"
    PRESETS[name].save(path)
    assert RunConfig.load(path) == PRESETS[name]


def test_unknown_fields_in_a_config_file_are_named(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"train": {"epochs": 2, "learning_rate": 1}}')
    with pytest.raises(ValueError, match="learning_rate"):
        RunConfig.load(path)


@pytest.mark.parametrize(
    "argv, flag",
    [(["--steps", "10"], "--sampling-steps"), (["--samples", "0"], "--samples"), (["--every", "0"], "--every")],
)
def test_inconsistent_settings_are_refused_up_front(argv, flag):
    check_consistency(parse("--preset", "demo"))
    with pytest.raises(ValueError, match=flag):
        check_consistency(parse("--preset", "demo", *argv))
