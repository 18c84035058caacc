"""Lazy image input: TIFF/OME-TIFF, zarr/OME-Zarr, NIfTI, DICOM, numpy and dask arrays (no torch, no napari)."""

from .readers import SUPPORTED_EXTENSIONS, Image, expand_sources, open_image

__all__ = ["SUPPORTED_EXTENSIONS", "Image", "expand_sources", "open_image"]
