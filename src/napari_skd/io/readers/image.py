"""The image records readers produce, and the metadata vocabulary they share."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np

from ...axes import canonical_order

SPATIAL = "ZYX"
UNITS = {  # OME, ImageJ and NIfTI spellings -> OME-NGFF unit names
    "µm": "micrometer",
    "\u03bcm": "micrometer",
    "\\u00B5m": "micrometer",
    "um": "micrometer",
    "micron": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "meter": "meter",
}


@dataclass
class Image:
    """A lazily read image: ``data`` is a dask array whose dimensions ``axes`` names (as stored)."""

    data: da.Array
    axes: str
    scale: dict[str, float] = field(default_factory=dict)  # physical size per spatial axis; empty when unknown
    units: dict[str, str] = field(default_factory=dict)
    translation: dict[str, float] = field(default_factory=dict)
    intensity_unit: str | None = None  # e.g. "HU" for CT
    source: str = "<array>"
    name: str = "image"
    affine: np.ndarray | None = None  # a NIfTI file's 4 x 4 voxel-to-world affine (X, Y, Z), kept for NIfTI output
    channels: list[dict[str, Any]] = field(default_factory=list)  # OME channel metadata (label, color), if any
    pyramid: list[da.Array] = field(default_factory=list)  # coarser levels of a multiscale file, same axes as data

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def to_canonical(self) -> Image:
        """The same image with its dimensions (lazily) transposed into TCZYX order."""
        order = canonical_order(self.axes)
        return dataclasses.replace(
            self,
            data=self.data.transpose(order),
            axes="".join(self.axes[i] for i in order),
            pyramid=[level.transpose(order) for level in self.pyramid],
        )


@dataclass
class RawImage:
    """What a reader found; metadata is keyed by dimension position so that explicit axes can relabel it."""

    data: da.Array
    axes: str | None = None
    scale: dict[int, float] = field(default_factory=dict)
    units: dict[int, str] = field(default_factory=dict)
    translation: dict[int, float] = field(default_factory=dict)
    intensity_unit: str | None = None
    affine: np.ndarray | None = None
    channels: list[dict[str, Any]] = field(default_factory=list)
    pyramid: list[da.Array] = field(default_factory=list)
