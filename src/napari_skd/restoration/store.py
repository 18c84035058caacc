"""The output store's readers under their old name, for callers that predate :mod:`.target` (the Restore widget).

New code imports them from ``napari_skd.restoration.target``, which owns an output's whole life.
"""

from .target import output_exists, read_output

__all__ = ["output_exists", "read_output"]
