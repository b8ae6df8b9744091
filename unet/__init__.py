"""Hand-written attention U-Net: the tutorial's network (deeplay ``AttentionUNet``), layer for layer."""

from unet.config import UNetConfig
from unet.deeplay_import import deeplay_name_to_unet, load_deeplay_state_dict, unet_from_deeplay
from unet.model import UNet
from unet.speed import optimize_for_speed

__all__ = [
    "UNet",
    "UNetConfig",
    "deeplay_name_to_unet",
    "load_deeplay_state_dict",
    "optimize_for_speed",
    "unet_from_deeplay",
]
