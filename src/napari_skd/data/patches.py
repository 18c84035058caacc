"""The training patch shape and each image's held-out validation region, fitted to small images.

A patch is ``(Z, Y, X)`` voxels (``Z`` is 1 for 2D models). ``patch_size`` gives one side (a square in Y, X; for 3D
models also the depth) or one side per spatial axis. What may change to fit the data:

- the depth of a 3D patch given as one side shrinks to the thinnest stack (a multiple of the model's size multiple);
- a patch size left at its default (``fit``) shrinks in Y and X to the smallest image;
- when an image cannot hold both a validation region and training patches, the region moves from the last rows (Y)
  to the last Z slices, then to the last samples (T); failing that, the sides allowed to shrink shrink to the largest
  patch that leaves room for one.

Sides given explicitly are never changed: data they do not fit is refused with a message. Each automatic choice is
described in :attr:`PatchPlan.notes`, which training reports as progress messages.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError

#: Dimension of each held-out axis in an (S, C, Z, Y, X) shape, in the order they are tried.
HELD_OUT_AXES = {"Y": 3, "Z": 2, "S": 0}
_NAMES = {"Y": "rows (Y)", "Z": "Z slices", "S": "samples (T)"}


@dataclass(frozen=True)
class HeldOut:
    """The last ``count`` indices along ``axis`` ("Y", "Z" or "S") of one image are kept for validation."""

    axis: str
    count: int

    @property
    def dim(self) -> int:
        """The dimension of ``axis`` in an (S, C, Z, Y, X) shape."""
        return HELD_OUT_AXES[self.axis]


@dataclass(frozen=True)
class PatchPlan:
    """The patch ``(Z, Y, X)``, each image's held-out region (``None`` without validation) and what was chosen."""

    patch: tuple[int, int, int]
    held_out: tuple[HeldOut | None, ...]
    spatial_dims: int
    notes: tuple[str, ...] = ()

    @property
    def sides(self) -> tuple[int, ...]:
        """The patch's sides along the model's spatial axes: (Y, X), or (Z, Y, X) for 3D models."""
        return self.patch[-self.spatial_dims :]


def plan_patches(
    shapes: Sequence[Sequence[int]],
    patch_size: int | Sequence[int],
    *,
    spatial_dims: int,
    multiple: int = 1,
    val_fraction: float = 0.1,
    fit: bool = False,
    unvalidated: Sequence[Sequence[int]] = (),
) -> PatchPlan:
    """The patch and validation regions for images of (S, C, Z, Y, X) ``shapes``.

    ``multiple``: every patch side must be a multiple of it (the model's); ``fit``: ``patch_size`` is a default
    that may shrink in Y and X to fit small images; ``unvalidated``: shapes of further images the patch must fit,
    which hold no validation region (distillation's unlabelled images).
    """
    shapes = [tuple(int(n) for n in s) for s in shapes]
    every = shapes + [tuple(int(n) for n in s) for s in unvalidated]
    want = _requested(patch_size, spatial_dims, multiple)
    shrink_z = spatial_dims == 3 and isinstance(patch_size, numbers.Integral)
    depth = _fit_depth(every, want[0], multiple) if shrink_z else want[0]
    fitted = (depth, *_fit_plane(every, want[1:], multiple, fit))
    _check_fits(every, fitted, spatial_dims)
    notes = [] if fitted == want else [_patch_note(want, fitted, spatial_dims, f"to fit {_smallest(every)}")]
    patch = fitted
    held = [_held_out(s, patch, val_fraction) for s in shapes]
    if None in held and val_fraction > 0:
        patch = _shrink_for_validation(shapes, patch, multiple, val_fraction, shrink_z, fit)
        held = [_held_out(s, patch, val_fraction) for s in shapes]
        notes = [_patch_note(want, patch, spatial_dims, f"to fit {_smallest(every)} with a validation region")]
    return PatchPlan(patch, tuple(held), spatial_dims, tuple(notes + _held_out_notes(shapes, held)))


def _requested(patch_size: int | Sequence[int], spatial_dims: int, multiple: int) -> tuple[int, int, int]:
    """``patch_size`` as (Z, Y, X), checked against the model's dimensionality and multiple."""
    one = isinstance(patch_size, numbers.Integral)
    sides = (int(patch_size),) * spatial_dims if one else tuple(int(s) for s in patch_size)
    axes = "ZYX"[-spatial_dims:]
    if len(sides) != spatial_dims:
        raise InputError(
            f"patch_size {tuple(patch_size)} has {len(sides)} sides but the model is {spatial_dims}D: give one side, "
            f"or one per spatial axis ({', '.join(axes)})"
        )
    if any(s % multiple for s in sides):
        raise InputError(
            f"patch_size {patch_size} must be a multiple of {multiple} for this model (each side), e.g. "
            f"{max(multiple, sides[-1] // multiple * multiple)}"
        )
    return (sides[0] if spatial_dims == 3 else 1, sides[-2], sides[-1])


def _fit_depth(shapes: list[tuple[int, ...]], side: int, multiple: int) -> int:
    """The depth of a 3D patch given as one side: the side, or the deepest multiple the thinnest stack holds."""
    depth = min(s[2] for s in shapes)
    if depth >= side:
        return side
    if depth < multiple:
        raise InputError(
            f"an image is only {depth} slice(s) deep (Z), but 3D patches need at least {multiple} (the model's size "
            "multiple); train a 2D model (spatial_dims 2) on its slices, or give deeper stacks"
        )
    return depth // multiple * multiple


def _fit_plane(shapes: list[tuple[int, ...]], sides: tuple[int, int], multiple: int, fit: bool) -> tuple[int, int]:
    """The patch's Y and X sides: as given, or (``fit``) shrunk to the smallest image."""
    y, x = min(s[3] for s in shapes), min(s[4] for s in shapes)
    if not fit or (y >= sides[0] and x >= sides[1]):
        return sides
    side = min(y, x) // multiple * multiple
    if side < 1:
        raise InputError(
            f"an image of {y} x {x} pixels (Y, X) is smaller than the smallest training patch, {multiple} x "
            f"{multiple}: give larger images, or remove the small ones"
            if len(shapes) == 1
            else f"the images are as small as {y} x {x} pixels (Y, X), smaller than the smallest training patch, "
            f"{multiple} x {multiple}: give larger images, or remove the small ones"
        )
    return (min(sides[0], side), min(sides[1], side))


def _check_fits(shapes: list[tuple[int, ...]], patch: tuple[int, int, int], spatial_dims: int) -> None:
    """Refuse an image a patch given explicitly does not fit."""
    for _, _, z, y, x in shapes:
        if spatial_dims == 3 and z < patch[0]:
            raise InputError(
                f"patch size {_text(patch, 3)} is larger than the image depth Z={z}; use a smaller patch_size, or "
                "give one side only (the depth then shrinks to fit the stack)"
            )
        if y < patch[1] or x < patch[2]:
            raise InputError(
                f"patch size {_text(patch, 2)} is larger than the image ({y} x {x} in Y, X); use a smaller "
                "patch_size, or leave it unset to fit the images"
            )


def _held_out(shape: tuple[int, ...], patch: tuple[int, int, int], fraction: float) -> HeldOut | None:
    """The last ``fraction`` (at least one patch) of the first axis among Y, Z, S that leaves a patch to train on."""
    if fraction <= 0:
        return None
    sides = {"Y": patch[1], "Z": patch[0], "S": 1}
    for axis, dim in HELD_OUT_AXES.items():
        n = shape[dim]
        count = max(math.ceil(n * fraction), sides[axis])
        if n - count >= sides[axis]:
            return HeldOut(axis, count)
    return None


def _shrink_for_validation(
    shapes: list[tuple[int, ...]],
    patch: tuple[int, int, int],
    multiple: int,
    fraction: float,
    shrink_z: bool,
    shrink_yx: bool,
) -> tuple[int, int, int]:
    """The largest patch (in voxels) no larger than ``patch`` that leaves every image a validation region."""
    depths = range(multiple, patch[0] + 1, multiple) if shrink_z else [patch[0]]
    square = patch[1] == patch[2]
    planes = [(s, s) for s in range(multiple, patch[1] + 1, multiple)] if shrink_yx and square else [patch[1:]]
    candidates = sorted(((z, *p) for z in depths for p in planes), key=lambda p: (math.prod(p), p[1]), reverse=True)
    for candidate in candidates:
        if all(_held_out(s, candidate, fraction) is not None for s in shapes):
            return candidate
    i, shape = next((i, s) for i, s in enumerate(shapes) if _held_out(s, patch, fraction) is None)
    raise InputError(
        f"image {i} ({_size(shape)}) cannot hold a validation region (the last {fraction:.0%} of its rows, Z "
        f"slices or samples, at least one patch) and training patches of {_text(patch, 3 if shrink_z else 2)}; "
        "lower val_fraction or patch_size, or set val_fraction to 0 (no validation)"
    )


def _size(shape: tuple[int, ...]) -> str:
    """An (S, C, Z, Y, X) shape for a person: ``24 x 58 x 58 in Z, Y, X``, with the samples when there are several."""
    s, _, z, y, x = shape
    text = f"{y} x {x} in Y, X" if z == 1 else f"{z} x {y} x {x} in Z, Y, X"
    return text + (f", {s} samples" if s > 1 else "")


def _smallest(shapes: list[tuple[int, ...]]) -> str:
    """The image, or the smallest extent of the images along each axis, for a note."""
    if len(shapes) == 1:
        return f"the image ({_size(shapes[0])})"
    return f"the images (smallest {_size(tuple(min(s[d] for s in shapes) for d in range(5)))})"


def _text(patch: tuple[int, int, int], dims: int) -> str:
    """A patch as the user wrote it: one side when all are equal, else ``8 x 64 x 64``."""
    sides = patch[-dims:]
    return str(sides[0]) if len(set(sides)) == 1 else " x ".join(str(s) for s in sides)


def _patch_note(want: tuple[int, int, int], patch: tuple[int, int, int], dims: int, why: str) -> str:
    sides = " x ".join(str(s) for s in patch[-dims:])
    return f"patches of {sides} ({', '.join('ZYX'[-dims:])}) instead of {_text(want, dims)}, {why}"


def _held_out_notes(shapes: list[tuple[int, ...]], held: list[HeldOut | None]) -> list[str]:
    """One note per image whose validation region is not its last rows."""
    notes = []
    for i, (shape, h) in enumerate(zip(shapes, held, strict=True)):
        if h is not None and h.axis != "Y":
            which = f" of image {i}" if len(shapes) > 1 else ""
            notes.append(
                f"validation holds out the last {h.count} of {shape[h.dim]} {_NAMES[h.axis]}{which}: "
                f"its {shape[3]} rows cannot hold both a validation region and training patches"
            )
    return notes
