"""Out-of-core tiled restoration: plan (blocks and tiles), blend, infer, local runner, dask backend, and the output
target (``target/``: an OME-Zarr store or a single file) that owns the output path.

``from napari_skd import restore`` is the entry point; this package imports nothing heavy until it is used.
"""
