"""The configuration on the command line: ``--preset``, and one flag per field of every section, as
``--section.field VALUE`` (``--train.epochs 5``) or, where the field name is unique across sections,
``--field VALUE`` (``--epochs 5``). Tuples take comma-separated values (``--channels 16,32,64``), optionals
take ``none``. The network is chosen by name, ``--network.kind`` (see ``unet.registry``), and the flags of
its fields are read for that kind: ``--network.kind resnet --network.width 32``.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import fields, replace
from typing import Any

from ddpm.settings import UsageError, text_parser, type_name
from experiments.config.presets import PRESETS, preset
from experiments.config.schema import RunConfig, section_types
from unet import NetworkConfig, network_config_type, network_kind, network_kinds

DEFAULT_PRESET = "mse"  # the tutorial's first run


def _section_fields() -> list[tuple[str, dataclasses.Field, Any]]:
    entries = []
    for section, section_type in section_types().items():
        hints = typing.get_type_hints(section_type)
        entries.extend((section, f, hints[f.name]) for f in fields(section_type))
    return entries


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset``, ``--name``, ``--out-dir`` and one flag per configuration field."""
    parser.add_argument("--preset", help=f"starting configuration: {', '.join(sorted(PRESETS))} (default {DEFAULT_PRESET})")
    parser.add_argument("--name", help="run name (default: the preset's)")
    parser.add_argument("--out-dir", help="folder that holds run folders (default: runs)")
    entries = _section_fields()
    counts: dict[str, int] = {}
    for name in [f.name for _, f, _ in entries] + list(_network_field_types()):
        counts[name] = counts.get(name, 0) + 1
    group = parser.add_argument_group("configuration overrides")
    for section, f, annotation in entries:
        flags = [f"--{section}.{f.name}"]
        if counts[f.name] == 1 and f.name not in ("name", "preset"):
            flags.append(f"--{f.name.replace('_', '-')}")
        group.add_argument(
            *flags,
            dest=f"cfg__{section}__{f.name}",  # read back by config_overrides
            type=text_parser(annotation, flags[0]),
            # Absent unless given, so that "none" can set an optional field to None.
            default=argparse.SUPPRESS,
            metavar=f.name.upper(),
            help=f"({type_name(annotation)})",
        )
    _add_network_arguments(group, counts)


def _network_field_types() -> dict[str, dict[str, Any]]:
    """{field: {kind: annotation}} over every registered network."""
    types_by_field: dict[str, dict[str, Any]] = {}
    for kind in network_kinds():
        config_type = network_config_type(kind)
        hints = typing.get_type_hints(config_type)
        for f in fields(config_type):
            types_by_field.setdefault(f.name, {})[kind] = hints[f.name]
    return types_by_field


def _add_network_arguments(group, counts: dict[str, int]) -> None:
    """``--network.kind`` and one flag per field of any registered network, read as text: which type a
    value must have depends on the kind, known only once all flags are parsed (``_network_from_texts``)."""
    group.add_argument(
        "--network.kind", dest="cfg__network__kind", choices=network_kinds(), default=argparse.SUPPRESS,
        help="the registered network to train (default: the preset's); the --network.* flags below are its fields",
    )
    for name, by_kind in _network_field_types().items():
        flags = [f"--network.{name}"] + ([f"--{name.replace('_', '-')}"] if counts[name] == 1 else [])
        kinds: dict[str, list[str]] = {}
        for kind, annotation in by_kind.items():
            kinds.setdefault(type_name(annotation), []).append(kind)
        group.add_argument(
            *flags, dest=f"cfg__network__{name}", default=argparse.SUPPRESS, metavar=name.upper(),
            help="(" + "; ".join(f"{type_name} for {', '.join(names)}" for type_name, names in kinds.items()) + ")",
        )


def _network_from_texts(network: NetworkConfig, given: dict[str, str]) -> NetworkConfig:
    """``network``, or the defaults of ``given["kind"]`` when it names another kind, with the other given
    fields (command-line text) parsed for that kind; a field the kind lacks is refused, naming its fields."""
    given = dict(given)
    kind = given.pop("kind", network_kind(network))
    config_type = network_config_type(kind)
    hints, names = typing.get_type_hints(config_type), [f.name for f in fields(config_type)]
    unknown = [name for name in given if name not in names]
    if unknown:
        raise UsageError(
            f"--network.kind {kind} has no field {', '.join(unknown)}; its fields are {', '.join(names)}"
        )
    try:
        values = {name: text_parser(hints[name], f"--network.{name}")(text) for name, text in given.items()}
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"{error} (network kind {kind})") from error
    return replace(network if type(network) is config_type else config_type(), **values)


def config_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The configuration flags given on the command line: ``{section: {field: value}}``, the network's
    kind and fields under ``"network"`` (as text, read for the kind by :func:`config_from_args`)."""
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in vars(args).items():
        if key.startswith("cfg__"):
            _, section, name = key.split("__", 2)
            overrides.setdefault(section, {})[name] = value
    return overrides


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The preset named by ``args.preset`` with every given override applied."""
    config = preset(args.preset or DEFAULT_PRESET)
    overrides = config_overrides(args)
    network = overrides.pop("network", {})
    sections = {name: replace(getattr(config, name), **values) for name, values in overrides.items()}
    sections["network"] = _network_from_texts(config.network, network)
    top = {k: v for k, v in (("name", args.name), ("out_dir", args.out_dir)) if v is not None}
    return replace(config, **sections, **top)
