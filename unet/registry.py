"""The networks the pipeline can train, chosen by name (``--network.kind``), and what it needs of them.

A network is an ``nn.Module`` built from one frozen config dataclass and registered under a name:

    @register_network("resnet", ResNetConfig)
    class ResNet(nn.Module):
        def __init__(self, config: ResNetConfig = ResNetConfig()) -> None: ...

Registration happens when the module defining the network is imported. The built-in networks are
imported by ``unet/__init__.py`` (their list is the imports there), and so is a fork's file placed in
``unet/``: importing anything from ``unet`` registers every network before a name is looked up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class NetworkConfig(Protocol):
    """What the pipeline reads of a network before building it (declared by every network config).

    in_channels: channels of the network input, condition channels + image channels (2 when
        conditional on one widefield image, 1 for the unconditional generator).
    time_encoding_dim: width D of the time encoding ``ddpm.positional_encoding(t, D)`` it takes.
    size_multiple: image sides must be multiples of this (1: any size); crops and tiles respect it.
    """

    @property
    def in_channels(self) -> int: ...

    @property
    def time_encoding_dim(self) -> int: ...

    @property
    def size_multiple(self) -> int: ...


@runtime_checkable
class Denoiser(Protocol):
    """Any network the pipeline trains: ``model(x, t_encoding) -> noise``, carrying its config.

    x: ``[B, config.in_channels, H, W]``, the condition channels then x_t, in [-1, 1], with H and W
    multiples of ``config.size_multiple``; t_encoding: ``[B, config.time_encoding_dim]``, or
    ``[1, config.time_encoding_dim]`` for one time step shared by the whole batch (broadcast; tiled
    sampling passes it so, which keeps a tile's result independent of the batch it is computed in). Returns
    the predicted noise ``[B, C, H, W]`` (Eq. 7's epsilon_theta), C the image channels.
    """

    config: NetworkConfig

    def __call__(self, x: torch.Tensor, t_encoding: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class _Entry:
    module: type[nn.Module]
    config: type


_NETWORKS: dict[str, _Entry] = {}


def register_network(kind: str, config_type: type) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make ``module_type(config)`` trainable as ``--network.kind <kind>``.

    ``config_type`` must be a dataclass whose defaults build a network and that declares the
    :class:`NetworkConfig` properties; its fields become ``--network.<field>`` flags.
    """
    if not dataclasses.is_dataclass(config_type):
        raise TypeError(f"register_network({kind!r}): {config_type!r} is not a dataclass; decorate it with @dataclass(frozen=True)")
    missing = [name for name in ("in_channels", "time_encoding_dim", "size_multiple") if not hasattr(config_type(), name)]
    if missing:
        raise TypeError(f"register_network({kind!r}): {config_type.__name__} lacks {missing} (see unet.registry.NetworkConfig)")
    if "kind" in {f.name for f in dataclasses.fields(config_type)}:
        raise TypeError(f"register_network({kind!r}): 'kind' is the registry's own key; rename that field of {config_type.__name__}")

    def register(module_type: type[nn.Module]) -> type[nn.Module]:
        if kind in _NETWORKS and _NETWORKS[kind].module is not module_type:
            raise ValueError(f"network kind {kind!r} is already taken by {_NETWORKS[kind].module.__qualname__}; choose another name")
        _NETWORKS[kind] = _Entry(module_type, config_type)
        return module_type

    return register


def network_kinds() -> tuple[str, ...]:
    """The registered names, in registration order (the built-ins first)."""
    return tuple(_NETWORKS)


def network_config_type(kind: str) -> type:
    """The config dataclass of the network registered as ``kind``."""
    if kind not in _NETWORKS:
        raise ValueError(
            f"unknown network kind {kind!r}; choose one of {list(_NETWORKS)} (a new network registers itself "
            "with @register_network in a file imported by unet/__init__.py)"
        )
    return _NETWORKS[kind].config


def network_kind(config: Any) -> str:
    """The registered name whose config type ``config`` is."""
    for kind, entry in _NETWORKS.items():
        if type(config) is entry.config:
            return kind
    raise ValueError(f"{type(config).__name__} is not the config of a registered network; registered: {list(_NETWORKS)}")


def describe_network(config: Any) -> str:
    """One paragraph on the network of ``config``, from the network's own description: the first sentence
    of its class docstring, then its registered name and every setting (e.g. for a model card)."""
    module = _NETWORKS[network_kind(config)].module
    summary = " ".join((module.__doc__ or module.__qualname__).split("\n\n")[0].split())
    settings = ", ".join(f"{f.name} {getattr(config, f.name)!r}" for f in dataclasses.fields(config))
    return f"{summary} (network kind `{network_kind(config)}`, {module.__qualname__}: {settings})"


def build_network(config: Any) -> nn.Module:
    """The network of ``config``'s kind, built from it: ``module_type(config)``."""
    model = _NETWORKS[network_kind(config)].module(config)
    if not isinstance(model, Denoiser):
        raise TypeError(f"{type(model).__qualname__} does not keep its config as self.config (see unet.registry.Denoiser)")
    return model
