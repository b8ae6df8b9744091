"""The networks: the tutorial's attention U-Net, hand-written, and a registry to add others.

Importing a network's module registers it (``unet.registry``): the imports of ``UNet`` and
``ResNet`` below are the list of built-in networks, and a fork's network file in ``unet/`` is added
to it by one more import line.
"""

from unet.config import UNetConfig
from unet.deeplay_import import deeplay_name_to_unet, load_deeplay_state_dict, unet_from_deeplay
from unet.model import UNet
from unet.registry import (
    Denoiser,
    NetworkConfig,
    build_network,
    describe_network,
    network_config_type,
    network_kind,
    network_kinds,
    register_network,
)
from unet.resnet import ResNet, ResNetConfig
from unet.speed import optimize_for_speed

__all__ = [
    "Denoiser",
    "NetworkConfig",
    "ResNet",
    "ResNetConfig",
    "UNet",
    "UNetConfig",
    "build_network",
    "describe_network",
    "deeplay_name_to_unet",
    "load_deeplay_state_dict",
    "network_config_type",
    "network_kind",
    "network_kinds",
    "optimize_for_speed",
    "register_network",
    "unet_from_deeplay",
]
