"""Out-of-core tiled restoration: plan (blocks and tiles), blend, infer, local runner, dask backend, resume state.

``from napari_skd import restore`` is the entry point; this package imports nothing heavy until it is used.
"""
