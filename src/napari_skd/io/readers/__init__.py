"""Lazy readers: every supported input becomes an :class:`Image` around a dask array that nothing here computes.

Readers first describe what the file says (:class:`RawImage`: metadata keyed by dimension position, axes as stored
or ``None`` when the file does not say); :func:`open_image` then checks the pixels' dtype and shape, resolves the
axes (explicit axes win, a shape is never guessed) and keys scale and units by axis letter.

Modules: ``image`` (the records), ``sources`` (recognising paths, ``expand_sources``), ``dispatch`` (``open_image``,
arrays), ``lazy`` (file-backed dask arrays), ``optional`` (medical extra) and one reader per format: ``tiff``,
``zarr``, ``nifti``, ``dicom``.
"""

from .dispatch import open_image
from .image import Image
from .sources import SUPPORTED_EXTENSIONS, expand_sources

__all__ = ["SUPPORTED_EXTENSIONS", "Image", "expand_sources", "open_image"]
