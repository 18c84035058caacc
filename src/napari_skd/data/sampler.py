"""Random training patches and a fixed validation set from canonical (S, C, Z, Y, X) volumes.

Batches are a pure function of ``(seed, step, rank)``, so an interrupted run that resumes at step k sees exactly the
batches an uninterrupted run would, and DDP ranks see different ones. The validation region is the last
``val_fraction`` of every volume's Y rows (at least one patch high), or in images too small for that its last Z slices
or samples (``patches.plan_patches`` chooses, and fits the patch to small images); training patches never touch it.
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
from .patches import HeldOut, PatchPlan, plan_patches

CACHE_BYTES = 1 << 30  # data smaller than this is read once into memory


@dataclass
class Batch:
    input: torch.Tensor
    target: torch.Tensor | None
    teacher: torch.Tensor | None = None  # the teacher's output, when its labels were computed ahead


def check_pairs(degraded: list[da.Array] | None, clean: list[da.Array] | None) -> None:
    """Degraded and clean images, when both are given, must be aligned pairs."""
    if degraded is None or clean is None:
        return
    if len(degraded) != len(clean):
        raise InputError(f"{len(degraded)} degraded but {len(clean)} clean images: pairs must match one to one")
    for i, (d, c) in enumerate(zip(degraded, clean, strict=True)):
        if d.shape != c.shape:
            raise InputError(
                f"pair {i}: degraded shape {d.shape} differs from clean shape {c.shape}; pairs must be aligned"
            )


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
        patch_size: int | tuple[int, ...],
        multiple: int = 1,
        fit: bool = False,
        seed: int = 0,
        degradation: DegradationConfig | None = None,
        val_fraction: float = 0.1,
        val_patches: int = 8,
        augment: bool = True,
        reject_background: float = 0.0,
        labels: list | None = None,
    ):
        """``patch_size``, ``multiple`` and ``fit``: see :func:`~napari_skd.data.patches.plan_patches` (the chosen
        patch is ``self.patch``, (Z, Y, X)); ``labels``: the teacher's outputs on ``degraded`` (same shapes, data
        units), drawn with the same patches."""
        if degraded is None and clean is None:
            raise InputError("no training data: give degraded images, clean images, or both")
        if degraded is None and degradation is None:
            raise InputError("clean images alone need a synthetic degradation (e.g. gaussian) to learn from")
        check_pairs(degraded, clean)
        self.norm, self.spatial_dims, self.seed = norm, spatial_dims, seed
        self.degradation, self.augment, self.reject_background = degradation, augment, reject_background
        ref = degraded if degraded is not None else clean
        self.plan: PatchPlan = plan_patches(
            [a.shape for a in ref], patch_size, spatial_dims=spatial_dims, multiple=multiple,
            val_fraction=val_fraction, fit=fit,
        )  # fmt: skip
        self.patch = self.plan.patch
        self.degraded = self._cache(degraded)
        self.clean = self._cache(clean)
        self.labels = labels
        self.channels = ref[0].shape[1]
        weights = np.array([math.prod(self._training_extent(i, a.shape)) for i, a in enumerate(ref)])
        self.weights = weights / weights.sum()
        self.validation = self._validation_set(val_patches) if val_fraction > 0 else None

    # --- set-up -------------------------------------------------------------------------------------------------
    def _training_extent(self, i: int, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Image ``i``'s (S, Z, Y, X) extent outside its held-out region."""
        extent = [shape[0], shape[2], shape[3], shape[4]]
        held: HeldOut | None = self.plan.held_out[i]
        if held is not None:
            extent[(0, None, 1, 2)[held.dim]] -= held.count
        return tuple(extent)

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
        s_n, z_n, y_n, x_n = self._training_extent(i, shape)
        pz, py, px = self.patch
        s = int(rng.integers(s_n))
        y0 = int(rng.integers(y_n - py + 1))
        x0 = int(rng.integers(x_n - px + 1))
        if self.spatial_dims == 3:
            z0 = int(rng.integers(z_n - pz + 1))
            zs = slice(z0, z0 + pz)
        else:
            z = int(rng.integers(z_n))
            zs = slice(z, z + 1)
        return (s, slice(None), zs, slice(y0, y0 + py), slice(x0, x0 + px))

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
        if self.patch[1] != self.patch[2]:
            k = k % 2 * 2  # a quarter turn would swap Y and X of a patch that is not square: half turns only
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
        regions = [(i, region) for i, a in enumerate(ref) for region in self._held_out_regions(i, a.shape)]
        picks = np.linspace(0, len(regions) - 1, min(count, len(regions))).astype(int)
        pairs = [self._pair(i, region, rng) for i, region in (regions[k] for k in picks)]
        noisy = torch.from_numpy(np.stack([n for n, _ in pairs]))
        clean = torch.from_numpy(np.stack([c for _, c in pairs])) if pairs[0][1] is not None else None
        return Batch(noisy, clean)

    def _held_out_regions(self, i: int, shape: tuple[int, ...]) -> list[tuple]:
        """Patches tiling image ``i``'s held-out region: its first patch of rows (Y), its first patch of slices (Z:
        three slices for 2D models) or its first two samples (S), across the image."""
        s_n, _, z_n, y_n, x_n = shape
        pz, py, px = self.patch
        held: HeldOut = self.plan.held_out[i]
        first = shape[held.dim] - held.count
        samples = range(first, min(s_n, first + 2)) if held.axis == "S" else range(min(s_n, 2))
        if self.spatial_dims == 3:
            zs = [slice(first, first + pz)] if held.axis == "Z" else [slice(0, pz)]
        else:
            planes = np.linspace(first, z_n - 1, 3) if held.axis == "Z" else np.linspace(0, z_n - 1, 3)
            zs = [slice(z, z + 1) for z in planes.astype(int)]
        ys = [first] if held.axis == "Y" else range(0, y_n - py + 1, py)
        return [
            (s, slice(None), z, slice(y0, y0 + py), slice(x0, x0 + px))
            for s in samples
            for z in zs
            for y0 in ys
            for x0 in range(0, x_n - px + 1, px)
        ]
