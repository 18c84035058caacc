"""The Restormer network family: teacher and student presets, feature taps, FLOP counting."""

from __future__ import annotations

from .config import FEATURE_LEVELS, PRESETS, ModelConfig, preset_config
from .profile import count_flops, count_params, estimate_train_seconds, latency
from .restormer import Restormer
from .unet import UNet

__all__ = [
    "FEATURE_LEVELS",
    "PRESETS",
    "ModelConfig",
    "Restormer",
    "UNet",
    "build_model",
    "count_flops",
    "count_params",
    "estimate_train_seconds",
    "latency",
    "preset_config",
]


def build_model(
    spec: str | ModelConfig | dict,
    in_channels: int = 1,
    out_channels: int = 1,
    layernorm_type: str = "BiasFree",
    spatial_dims: int = 2,
) -> Restormer | UNet:
    """Build a network from a preset name, a ``ModelConfig`` or a config dict.

    The keyword arguments apply to a preset name; a ``ModelConfig`` or dict is used as given.
    ``build_model("teacher", in_channels=3, out_channels=3, layernorm_type="WithBias")`` is the published Restormer.
    """
    if isinstance(spec, str):
        cfg = preset_config(
            spec,
            in_channels=in_channels,
            out_channels=out_channels,
            layernorm_type=layernorm_type,
            spatial_dims=spatial_dims,
        )
    elif isinstance(spec, dict):
        cfg = ModelConfig.model_validate(spec)
    else:
        cfg = spec
    return UNet(cfg) if cfg.arch == "unet" else Restormer(cfg)
