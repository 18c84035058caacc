"""Architecture configuration of the Restormer family and the named presets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError

LEVELS = 4  # encoder levels 1..3 plus the latent level
MULTIPLE = 2 ** (LEVELS - 1)  # spatial sizes are padded to a multiple of this


class ModelConfig(BaseModel):
    """Hyper-parameters of a Restormer (Zamir et al., CVPR 2022), generalised to 2D or 3D."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    arch: Literal["restormer", "unet"] = Field("restormer", description="Restormer transformer or CARE-like U-Net.")
    in_channels: int = Field(1, ge=1, le=64)
    out_channels: int = Field(1, ge=1, le=64)
    dim: int = Field(48, ge=4, le=512, description="Width of level 1; level k has dim * 2**(k-1) channels.")
    num_blocks: tuple[int, int, int, int] = Field((4, 6, 6, 8), description="Transformer blocks per level.")
    heads: tuple[int, int, int, int] = Field((1, 2, 4, 8), description="Attention heads per level.")
    num_refinement_blocks: int = Field(4, ge=0)
    ffn_expansion_factor: float = Field(2.66, gt=0)
    bias: bool = False
    layernorm_type: Literal["BiasFree", "WithBias"] = "BiasFree"
    spatial_dims: Literal[2, 3] = 2

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if any(n < 1 for n in self.num_blocks):
            raise ValueError(f"num_blocks must be >= 1 at every level, got {list(self.num_blocks)}")
        if self.arch == "unet":
            return self
        if self.spatial_dims == 3 and self.dim % 4:
            raise ValueError(f"a 3D model needs dim divisible by 4 (3D pixel unshuffle), got dim={self.dim}")
        if self.spatial_dims == 2 and self.dim % 2:
            raise ValueError(f"a 2D model needs an even dim (pixel unshuffle), got dim={self.dim}")
        for level, heads in enumerate(self.heads):
            width = self.level_channels[level]
            if heads < 1 or width % heads:
                raise ValueError(f"level {level + 1} has {width} channels, which {heads} heads do not divide")
        return self

    @property
    def level_channels(self) -> tuple[int, int, int, int]:
        """Channels of encoder levels 1-3 and the latent level."""
        return tuple(self.dim * 2**k for k in range(LEVELS))  # type: ignore[return-value]

    @property
    def feature_channels(self) -> tuple[int, ...]:
        """Channels of the tapped features, in the order of ``FEATURE_LEVELS``."""
        c1, c2, c3, c4 = self.level_channels
        return (c1, c2, c3, c4, c3, c2, c2 if self.arch == "restormer" else c1)

    @property
    def multiple(self) -> int:
        """Every spatial size the network sees internally is a multiple of this."""
        return MULTIPLE


#: Names of the tapped feature levels, returned by ``model(x, return_features=True)`` in this order.
FEATURE_LEVELS: tuple[str, ...] = ("enc1", "enc2", "enc3", "latent", "dec3", "dec2", "dec1")

#: Named architectures. ``teacher`` is the published Restormer; students keep <= 25 % of its FLOPs.
PRESETS: dict[str, dict] = {
    "teacher": dict(dim=48, num_blocks=(4, 6, 6, 8), heads=(1, 2, 4, 8), num_refinement_blocks=4),
    "student-s": dict(dim=24, num_blocks=(2, 3, 3, 4), heads=(1, 2, 4, 8), num_refinement_blocks=2),
    "student-xs": dict(dim=16, num_blocks=(1, 2, 2, 2), heads=(1, 2, 4, 8), num_refinement_blocks=1),
    # Small members of the family for tests, demos and CPU-only work.
    "teacher-tiny": dict(dim=16, num_blocks=(1, 2, 2, 2), heads=(1, 2, 4, 8), num_refinement_blocks=1),
    "student-tiny": dict(dim=8, num_blocks=(1, 1, 1, 1), heads=(1, 2, 4, 8), num_refinement_blocks=1),
    # CARE-like convolutional U-Nets (two 3x3 convs per level): dense convolutions run near a CPU's matmul peak, where
    # transformer blocks reach a tenth of it (docs/benchmarks.md). unet-s is the recommended CPU student; unet-m,
    # 4x its FLOPs (7 % of the published teacher's), the GPU student.
    "unet-m": dict(arch="unet", dim=32, num_blocks=(2, 2, 2, 2), num_refinement_blocks=0),
    "unet-s": dict(arch="unet", dim=16, num_blocks=(2, 2, 2, 2), num_refinement_blocks=0),
    "unet-xs": dict(arch="unet", dim=8, num_blocks=(2, 2, 2, 2), num_refinement_blocks=0),
}


def preset_config(
    name: str,
    *,
    in_channels: int = 1,
    out_channels: int = 1,
    layernorm_type: str = "BiasFree",
    spatial_dims: int = 2,
) -> ModelConfig:
    """The ``ModelConfig`` of a named preset with the given data-dependent settings."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    try:
        return ModelConfig(
            **PRESETS[name],
            in_channels=in_channels,
            out_channels=out_channels,
            layernorm_type=layernorm_type,
            spatial_dims=spatial_dims,
        )
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings for the preset {name!r}: {wrong}") from exc
