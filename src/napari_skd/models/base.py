"""What every restoration network here shares: input checks, padding to a multiple, global residual, feature taps."""

from __future__ import annotations

import torch
from torch import nn

from .config import FEATURE_LEVELS, ModelConfig
from .layers import crop_to, pad_to_multiple


class RestorationNet(nn.Module):
    """Subclasses implement ``body(inp) -> (out, features)`` and ``encoder(inp, levels) -> features`` on padded
    inputs; this class pads any input to ``multiple``, adds the global residual and crops back."""

    config: ModelConfig

    @property
    def multiple(self) -> int:
        return self.config.multiple

    def body(self, inp: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def encoder(self, inp: torch.Tensor, levels: int) -> list[torch.Tensor]:
        raise NotImplementedError

    def _check(self, x: torch.Tensor) -> None:
        cfg = self.config
        if x.ndim != cfg.spatial_dims + 2 or x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"expected a tensor (N, {cfg.in_channels}, {'Z, ' if cfg.spatial_dims == 3 else ''}Y, X), "
                f"got shape {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor, levels: int = 3) -> list[torch.Tensor]:
        """Features of the first ``levels`` encoder levels only (the contrastive loss's feature space)."""
        self._check(x)
        return self.encoder(pad_to_multiple(x, self.multiple)[0], levels)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        self._check(x)
        inp, shape = pad_to_multiple(x, self.multiple)
        out, feats = self.body(inp)
        if self.config.in_channels == self.config.out_channels:
            out = out + inp  # global residual: the network predicts the correction
        out = crop_to(out, shape)
        if return_features:
            assert len(feats) == len(FEATURE_LEVELS)
            return out, feats
        return out
