"""Restormer (Zamir et al., "Restormer: Efficient Transformer for High-Resolution Image Restoration", CVPR 2022).

Parameter names and shapes match the official implementation (swz30/Restormer,
``basicsr/models/archs/restormer_arch.py``), so official checkpoints load with ``strict=True``. The same classes build
a 3D variant (Conv3d, 3D pixel (un)shuffle); MDTA stays linear in the number of pixels or voxels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import RestorationNet
from .config import ModelConfig
from .layers import LayerNorm, PixelShuffle3d, PixelUnshuffle3d, conv


class MDTA(nn.Module):
    """Multi-Dconv head Transposed Attention: attention across channels, linear in pixels."""

    def __init__(self, dim: int, num_heads: int, bias: bool, spatial_dims: int):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = conv(spatial_dims, dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = conv(spatial_dims, dim * 3, dim * 3, 3, groups=dim * 3, bias=bias)
        self.project_out = conv(spatial_dims, dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        heads = self.num_heads
        q = F.normalize(q.reshape(b, heads, c // heads, -1), dim=-1)
        k = F.normalize(k.reshape(b, heads, c // heads, -1), dim=-1)
        v = v.reshape(b, heads, c // heads, -1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)  # (b, heads, c/h, c/h)
        out = (attn @ v).reshape(x.shape)
        return self.project_out(out)


class GDFN(nn.Module):
    """Gated-Dconv Feed-forward Network: GELU-gated depthwise-conv feed-forward."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool, spatial_dims: int):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = conv(spatial_dims, dim, hidden * 2, 1, bias=bias)
        self.dwconv = conv(spatial_dims, hidden * 2, hidden * 2, 3, groups=hidden * 2, bias=bias)
        self.project_out = conv(spatial_dims, hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + MDTA(LN(x)), then x + GDFN(LN(x))."""

    def __init__(self, dim: int, num_heads: int, cfg: ModelConfig):
        super().__init__()
        sd = cfg.spatial_dims
        self.norm1 = LayerNorm(dim, cfg.layernorm_type)
        self.attn = MDTA(dim, num_heads, cfg.bias, sd)
        self.norm2 = LayerNorm(dim, cfg.layernorm_type)
        self.ffn = GDFN(dim, cfg.ffn_expansion_factor, cfg.bias, sd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """3x3 convolution from image channels to the level-1 width."""

    def __init__(self, in_channels: int, dim: int, bias: bool, spatial_dims: int):
        super().__init__()
        self.proj = conv(spatial_dims, in_channels, dim, 3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve every spatial axis and double the channels: 3x3 conv, then pixel unshuffle."""

    def __init__(self, channels: int, spatial_dims: int):
        super().__init__()
        factor = 2**spatial_dims  # channels gained by unshuffling
        unshuffle = nn.PixelUnshuffle(2) if spatial_dims == 2 else PixelUnshuffle3d(2)
        self.body = nn.Sequential(conv(spatial_dims, channels, channels * 2 // factor, 3, bias=False), unshuffle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double every spatial axis and halve the channels: 3x3 conv, then pixel shuffle."""

    def __init__(self, channels: int, spatial_dims: int):
        super().__init__()
        factor = 2**spatial_dims
        shuffle = nn.PixelShuffle(2) if spatial_dims == 2 else PixelShuffle3d(2)
        self.body = nn.Sequential(conv(spatial_dims, channels, channels * factor // 2, 3, bias=False), shuffle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Restormer(RestorationNet):
    """4-level encoder-decoder of transformer blocks with skip connections and a global residual.

    ``model(x)`` returns the restored image; ``model(x, return_features=True)`` returns it together with the features
    of every level, in the order of ``FEATURE_LEVELS``. Inputs of any size are reflect-padded to a multiple of 8
    and cropped back.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        sd, bias = cfg.spatial_dims, cfg.bias
        c1, c2, c3, c4 = cfg.level_channels
        h1, h2, h3, h4 = cfg.heads
        n1, n2, n3, n4 = cfg.num_blocks

        def stage(width: int, heads: int, n: int) -> nn.Sequential:
            return nn.Sequential(*[TransformerBlock(width, heads, cfg) for _ in range(n)])

        self.patch_embed = OverlapPatchEmbed(cfg.in_channels, c1, False, sd)  # bias-free, as published
        self.encoder_level1 = stage(c1, h1, n1)
        self.down1_2 = Downsample(c1, sd)
        self.encoder_level2 = stage(c2, h2, n2)
        self.down2_3 = Downsample(c2, sd)
        self.encoder_level3 = stage(c3, h3, n3)
        self.down3_4 = Downsample(c3, sd)
        self.latent = stage(c4, h4, n4)
        self.up4_3 = Upsample(c4, sd)
        self.reduce_chan_level3 = conv(sd, c4, c3, 1, bias=bias)
        self.decoder_level3 = stage(c3, h3, n3)
        self.up3_2 = Upsample(c3, sd)
        self.reduce_chan_level2 = conv(sd, c3, c2, 1, bias=bias)
        self.decoder_level2 = stage(c2, h2, n2)
        self.up2_1 = Upsample(c2, sd)
        self.decoder_level1 = stage(c2, h1, n1)  # level 1 keeps the concatenated width 2*dim, as published
        self.refinement = stage(c2, h1, cfg.num_refinement_blocks)
        self.output = conv(sd, c2, cfg.out_channels, 3, bias=bias)

    def encoder(self, inp: torch.Tensor, levels: int) -> list[torch.Tensor]:
        feats = [self.encoder_level1(self.patch_embed(inp))]
        for down, enc in ((self.down1_2, self.encoder_level2), (self.down2_3, self.encoder_level3))[: levels - 1]:
            feats.append(enc(down(feats[-1])))
        return feats

    def body(self, inp: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        enc1 = self.encoder_level1(self.patch_embed(inp))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.refinement(self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1)))
        return self.output(dec1), [enc1, enc2, enc3, latent, dec3, dec2, dec1]
