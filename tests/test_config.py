"""Run configuration: presets, command-line overrides, JSON round trip."""

import argparse

import pytest

from experiments.config.command_line import add_config_arguments, config_from_args

from experiments.config.presets import PRESETS, preset

from experiments.config.schema import RunConfig, check_consistency
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
    assert config.eval.max_test_images is None and config.sampling.variance == "beta_tilde"


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


def test_sampling_steps_beyond_the_diffusion_steps_are_refused_naming_both_flags():
    check_consistency(parse("--preset", "demo"))
    with pytest.raises(ValueError, match=r"got 10; change --sampling-steps.*--diffusion\.steps"):
        check_consistency(parse("--preset", "demo", "--steps", "5"))


# Each flag with a value outside its valid range, and the bound the message must state.
OUT_OF_RANGE = [
    (["--train.batch_size", "0"], "--train.batch_size must be >= 1, got 0"),
    (["--eval.batch_size", "0"], "--eval.batch_size must be >= 1, got 0"),
    (["--crop", "0"], "--data.crop must be >= 1, got 0"),
    (["--crop", "-8"], "--data.crop must be >= 1, got -8"),
    (["--diffusion.steps", "0"], "--diffusion.steps must be >= 1, got 0"),
    (["--epochs", "0"], "--train.epochs must be >= 1"),
    (["--every", "0"], "--eval.every must be >= 1"),
    (["--samples", "0"], "--sampling.samples must be >= 1"),
    (["--sampling-steps", "0"], "--sampling.sampling_steps must be >= 1"),
    (["--train.lr", "0"], "--train.lr must be > 0"),
    (["--train.lr", "nan"], "--train.lr must be > 0, got nan"),
    (["--weight-decay", "-0.1"], "--train.weight_decay must be >= 0"),
    (["--beta-start", "0"], "--diffusion.beta_start must be > 0 and < 1"),
    (["--beta-end", "1"], "--diffusion.beta_end must be > 0 and < 1"),
    (["--beta-start", "0.2", "--beta-end", "0.1"], "--diffusion.beta_start .* must not exceed --diffusion.beta_end"),
    (["--ema-decay", "1"], "--train.ema_decay must be > 0 and < 1"),
    (["--eta", "-0.5"], "--sampling.eta must be >= 0 and <= 1"),
    (["--eta", "inf"], "--sampling.eta must be >= 0 and <= 1"),
    (["--train.seed", "-1"], "--train.seed must be >= 0"),
    (["--eval.seed", str(2**40)], "--eval.seed must be >= 0 and <= 4294967295"),
    (["--num-workers", "-1"], "--data.num_workers must be >= 0"),
    (["--max-train-pairs", "0"], "--data.max_train_pairs must be >= 1"),
    (["--max-test-images", "0"], "--eval.max_test_images must be >= 1"),
    (["--validation-images", "-1"], "--eval.validation_images must be >= 0"),
    (["--figure-images", "0"], "--eval.figure_images must be >= 1"),
    (["--channels", "8,0,16", "--attention", "false,false,false"], "--network.channels must be >= 1, got \\(8, 0, 16\\)"),
    (["--base-channels", "0"], "--network.base_channels must be >= 1"),
    (["--in-channels", "0"], "--network.in_channels must be >= 1"),
    (["--out-channels", "0"], "--network.out_channels must be >= 1"),
    (["--time-encoding-dim", "0"], "--network.time_encoding_dim must be >= 2"),
    (["--time-encoding-dim", "7"], "--network.time_encoding_dim must be even"),
    (["--num-heads", "0"], "--network.num_heads must be >= 1"),
    (["--num-cross-heads", "0"], "--network.num_cross_heads must be >= 1"),
    (["--num-classes", "0"], "--network.num_classes must be >= 1"),
    (["--context-dim", "0"], "--network.context_dim must be >= 1"),
]


@pytest.mark.parametrize("argv, message", OUT_OF_RANGE)
def test_every_numeric_field_is_range_checked_when_the_config_is_built(argv, message):
    with pytest.raises(ValueError, match=message):
        parse("--preset", "demo", *argv)


def test_every_numeric_field_has_a_declared_range():
    from dataclasses import fields

    from experiments.config.schema import DataConfig, DiffusionConfig, EvalConfig, SamplingConfig, TrainConfig
    from unet import ResNetConfig, UNetConfig

    for section in (DiffusionConfig, DataConfig, TrainConfig, EvalConfig, SamplingConfig, UNetConfig, ResNetConfig):
        for f in fields(section):
            numeric = any(kind in str(f.type) for kind in ("int", "float"))
            assert not numeric or "range" in f.metadata, f"{section.__name__}.{f.name} has no range"


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"train": {"epochs": 2', "config.json is not a valid run configuration"),
        ("[1, 2]", "expected a JSON object"),
        ('{"train": 3}', "TrainConfig section must be a JSON object"),
        ('{"train": {"batch_size": 0}}', "--train.batch_size must be >= 1"),
        ('{"train": {"lr": "fast"}}', "--train.lr must be a number"),
    ],
)
def test_a_corrupt_config_file_is_named_with_what_to_do(tmp_path, text, message):
    from experiments.config.schema import ConfigFileError

    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigFileError, match=message) as raised:
        RunConfig.load(path)
    assert str(path) in str(raised.value) and "start a new run" in str(raised.value)


def test_choice_lists_are_imported_from_where_they_live():
    """Each option list of the config is the one its module declares (one list, not a copy)."""
    import typing

    from ddpm.diffusion import LossKind
    from ddpm.schedule import ScheduleKind
    from experiments.config.schema import DataConfig, DiffusionConfig, EvalConfig, TrainConfig
    from experiments.data.normalization import Normalization
    from experiments.records import HIGHER_IS_BETTER, METRIC_NAMES, MetricName
    from experiments.runtime import Precision

    assert typing.get_type_hints(DiffusionConfig)["schedule"] is ScheduleKind
    assert typing.get_type_hints(DataConfig)["normalization"] is Normalization
    assert typing.get_type_hints(TrainConfig)["loss"] is LossKind
    assert typing.get_type_hints(TrainConfig)["precision"] is Precision
    assert typing.get_type_hints(EvalConfig)["best_metric"] is MetricName
    assert set(METRIC_NAMES) == set(HIGHER_IS_BETTER)


def test_the_paper_row_is_chosen_by_the_config_field_not_by_the_run_name():
    from experiments.config.presets import TUTORIAL_L1, TUTORIAL_MSE
    from experiments.config.schema import EvalConfig, RunConfig
    from experiments.evaluation.report import paper_row_label
    from experiments.records import EpochRecord
    from experiments.training.run_folder import final_rows

    scores = {"mae": 0.1, "nrmse": 0.2, "ssim": 0.5, "ms_ssim": 0.6, "psnr": 20.0}
    history = [EpochRecord(1, 0.5, 1.0, {"level_09": scores})]

    def rows(config):
        return final_rows(config, history, {"level_09": scores})["level_09"]

    assert paper_row_label("mse") in rows(TUTORIAL_MSE) and paper_row_label("l1") in rows(TUTORIAL_L1)
    named_like_the_paper = RunConfig(name="mse", eval=EvalConfig(paper_comparison=None))
    assert not any(label in rows(named_like_the_paper) for label in map(paper_row_label, ("mse", "l1")))
    assert paper_row_label("l1") in rows(RunConfig(name="my-run", eval=EvalConfig(paper_comparison="l1")))
