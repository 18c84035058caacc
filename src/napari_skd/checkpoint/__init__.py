"""One-file model checkpoints that are safe to open, and import of official Restormer weights.

- ``format``: what a checkpoint file holds, its version, hashing and atomic saving (``save_checkpoint``);
- ``safe``: reading a file without running pickled code, and every weight checked before it is copied;
- ``official``: ``import_restormer`` for swz30/Restormer ``{'params': state_dict}`` files;
- ``load``: ``load_checkpoint``, for our files, shipped models by name and official files alike.

Imports go one way: ``load`` -> ``official`` -> ``safe``; ``load`` and ``official`` also build on ``format``.
"""

from .format import FORMAT, FORMAT_VERSION, Checkpoint, Role, model_hash, package_versions, save_checkpoint
from .load import load_checkpoint, written_by_us
from .official import import_restormer, official_config

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "Role",
    "import_restormer",
    "load_checkpoint",
    "model_hash",
    "official_config",
    "package_versions",
    "save_checkpoint",
    "written_by_us",
]
