"""napari adapters (widgets, sample data). The only package that may import napari or Qt."""
