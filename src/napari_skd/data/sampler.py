"""Random training patches and a fixed validation set from canonical (S, C, Z, Y, X) volumes.

Batches are a pure function of ``(seed, step, rank)``, so an interrupted run that resumes at step k sees exactly the
batches an uninterrupted run would, and DDP ranks see different ones. The validation region is the last
``val_fraction`` of every volume's Y rows (at least one patch high); training patches never touch it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dask.array as da
import numpy as np
import torch

from ..errors import InputError
from ..normalize import Normalization
from .degrade import DegradationConfig, degrade

CACHE_BYTES = 1 << 30  # data smaller than this is read once into memory


@dataclass
class Batch:
    input: torch.Tensor
    target: torch.Tensor | None
    teacher: torch.Tensor | None = None  # the teacher's output, when its labels were computed ahead


class PatchSampler:
    """Draws (degraded, clean) patches: from aligned pairs, from degraded data alone, or from clean data plus a
    seeded synthetic degradation."""

    def __init__(
        self,
        degraded: list[da.Array] | None,
        clean: list[da.Array] | None,
        norm: Normalization,
        *,
        spatial_dims: int,
        patch_size: int,
        seed: int = 0,
        degradation: DegradationConfig | None = None,
        val_fraction: float = 0.1,
        val_patches: int = 8,
        augment: bool = True,
        reject_background: float = 0.0,
        labels: list | None = None,
    ):
        """``labels``: the teacher's outputs on ``degraded`` (same shapes, data units), drawn with the same patches."""
        if degraded is None and clean is None:
            raise InputError("no training data: give degraded images, clean images, or both")
        if degraded is None and degradation is None:
            raise InputError("clean images alone need a synthetic degradation (e.g. gaussian) to learn from")
        if degraded is not None and clean is not None:
            if len(degraded) != len(clean):
                raise InputError(f"{len(degraded)} degraded but {len(clean)} clean images: pairs must match one to one")
            for i, (d, c) in enumerate(zip(degraded, clean, strict=True)):
                if d.shape != c.shape:
                    raise InputError(
                        f"pair {i}: degraded shape {d.shape} differs from clean shape {c.shape}; pairs must be aligned"
                    )
        self.norm, self.spatial_dims, self.patch, self.seed = norm, spatial_dims, patch_size, seed
        self.degradation, self.augment, self.reject_background = degradation, augment, reject_background
        ref = degraded if degraded is not None else clean
        for a in ref:
            self._check_size(a.shape)
        self.val_rows = [self._val_rows(a.shape, val_fraction) for a in ref]
        self.degraded = self._cache(degraded)
        self.clean = self._cache(clean)
        self.labels = labels
        self.channels = ref[0].shape[1]
        weights = np.array(
            [a.shape[0] * a.shape[2] * (a.shape[3] - v) * a.shape[4] for a, v in zip(ref, self.val_rows, strict=True)]
        )
        self.weights = weights / weights.sum()
        self.validation = self._validation_set(val_patches) if val_fraction > 0 else None

    # --- set-up -------------------------------------------------------------------------------------------------
    def _check_size(self, shape: tuple[int, ...]) -> None:
        _, _, z, y, x = shape
        need_z = self.patch if self.spatial_dims == 3 else 1
        if self.spatial_dims == 3 and z < need_z:
            raise InputError(f"patch size {self.patch} is larger than the image depth Z={z}; use a smaller patch_size")
        if min(y, x) < self.patch:
            raise InputError(
                f"patch size {self.patch} is larger than the image ({y} x {x} in Y, X); use a smaller patch_size"
            )

    def _val_rows(self, shape: tuple[int, ...], fraction: float) -> int:
        if fraction <= 0:
            return 0
        y = shape[3]
        rows = max(math.ceil(y * fraction), self.patch)
        if y - rows < self.patch:
            raise InputError(
                f"an image of {y} rows cannot hold a validation region of {rows} rows and training patches of "
                f"{self.patch}; lower val_fraction or patch_size, or set val_fraction to 0"
            )
        return rows

    def _cache(self, arrays: list[da.Array] | None) -> list:
        if arrays is None:
            return None
        if sum(a.nbytes for a in arrays) <= CACHE_BYTES:
            return [np.asarray(a.compute(), dtype=np.float32) for a in arrays]
        return arrays

    # --- reading ------------------------------------------------------------------------------------------------
    def _read(self, arrays: list, i: int, region: tuple[slice, ...]) -> np.ndarray:
        block = arrays[i][region]
        block = np.asarray(block.compute() if isinstance(block, da.Array) else block, dtype=np.float32)
        if not np.isfinite(block).all():
            raise InputError(
                f"image {i} contains NaN or Inf pixels in {region}; replace them (e.g. numpy.nan_to_num) first"
            )
        return self.norm.apply(block, channel_axis=0).astype(np.float32)

    def _region(self, i: int, rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[slice, ...]:
        s_n, _, z_n, y_n, x_n = shape
        p = self.patch
        s = int(rng.integers(s_n))
        y0 = int(rng.integers(y_n - self.val_rows[i] - p + 1))
        x0 = int(rng.integers(x_n - p + 1))
        if self.spatial_dims == 3:
            z0 = int(rng.integers(z_n - p + 1))
            zs = slice(z0, z0 + p)
        else:
            z = int(rng.integers(z_n))
            zs = slice(z, z + 1)
        return (s, slice(None), zs, slice(y0, y0 + p), slice(x0, x0 + p))

    def _pair(
        self, i: int, region: tuple[slice, ...], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        clean = self._read(self.clean, i, region) if self.clean is not None else None
        if self.degraded is not None:
            noisy = self._read(self.degraded, i, region)
        else:
            noisy = degrade(clean, self.degradation, rng, spatial_axes=3)
        if self.spatial_dims == 2:  # (C, 1, Y, X) -> (C, Y, X)
            noisy = noisy[:, 0]
            clean = clean[:, 0] if clean is not None else None
        return noisy, clean

    def _label(self, i: int, region: tuple[slice, ...]) -> np.ndarray:
        label = np.asarray(self.labels[i][region], dtype=np.float32)
        label = self.norm.apply(label, channel_axis=0).astype(np.float32)
        return label[:, 0] if self.spatial_dims == 2 else label

    def _augment(self, arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        k = int(rng.integers(4))
        flips = [ax for ax in range(1, 1 + self.spatial_dims) if rng.random() < 0.5]
        out = []
        for a in arrays:
            a = np.rot90(a, k, axes=(-2, -1))
            if flips:
                a = np.flip(a, axis=flips)
            out.append(np.ascontiguousarray(a))
        return out

    # --- public -------------------------------------------------------------------------------------------------
    def batch(self, step: int, batch_size: int, rank: int = 0) -> Batch:
        """The training batch of ``step`` (deterministic in seed, step and rank)."""
        rng = np.random.default_rng([self.seed, step, rank])
        ref = self.degraded if self.degraded is not None else self.clean
        noisy_list, clean_list, label_list = [], [], []
        for _ in range(batch_size):
            for attempt in range(10):
                i = int(rng.choice(len(ref), p=self.weights))
                region = self._region(i, rng, ref[i].shape)
                noisy, clean = self._pair(i, region, rng)
                probe = clean if clean is not None else noisy
                if self.reject_background <= 0 or attempt == 9 or np.percentile(probe, 99) > self.reject_background:
                    break
            arrays = [noisy, clean, self._label(i, region) if self.labels is not None else None]
            if self.augment:
                moved = iter(self._augment([a for a in arrays if a is not None], rng))
                arrays = [None if a is None else next(moved) for a in arrays]
            noisy_list.append(arrays[0])
            clean_list.append(arrays[1])
            label_list.append(arrays[2])
        target = torch.from_numpy(np.stack(clean_list)) if clean_list[0] is not None else None
        teacher = torch.from_numpy(np.stack(label_list)) if label_list[0] is not None else None
        return Batch(torch.from_numpy(np.stack(noisy_list)), target, teacher)

    def _validation_set(self, count: int) -> Batch:
        rng = np.random.default_rng([self.seed, 2**31 - 1])
        ref = self.degraded if self.degraded is not None else self.clean
        p = self.patch
        regions = []
        for i, a in enumerate(ref):
            s_n, _, z_n, y_n, x_n = a.shape
            y0 = y_n - self.val_rows[i]
            zs = (
                [slice(0, p)]
                if self.spatial_dims == 3
                else [slice(z, z + 1) for z in np.linspace(0, z_n - 1, 3).astype(int)]
            )
            for s in range(min(s_n, 2)):
                for z in zs:
                    for x0 in range(0, x_n - p + 1, p):
                        regions.append((i, (s, slice(None), z, slice(y0, y0 + p), slice(x0, x0 + p))))
        picks = np.linspace(0, len(regions) - 1, min(count, len(regions))).astype(int)
        pairs = [self._pair(i, region, rng) for i, region in (regions[k] for k in picks)]
        noisy = torch.from_numpy(np.stack([n for n, _ in pairs]))
        clean = torch.from_numpy(np.stack([c for _, c in pairs])) if pairs[0][1] is not None else None
        return Batch(noisy, clean)
