"""Export a napari-skd checkpoint as a bioimage.io model package (model description format 0.5).

The package (a ``.zip``) holds ``rdf.yaml`` (built with ``bioimageio.spec``'s Python descriptors and written by its
packaging function), TorchScript weights, ONNX weights where export succeeds, a test input and output (``.npy``),
``cover.png``, ``README.md`` and the training record (``training_record.json``, also under ``config.napari_skd``).

Decisions:

- **No Python pickle.** No PyTorch state dict is packaged. The TorchScript archive does contain ``data.pkl`` /
  ``constants.pkl``, but ``torch.jit.load`` reads them with TorchScript's own restricted unpickler: they may only
  rebuild tensors, containers and TorchScript classes, never import or call arbitrary Python. Every export is
  audited for this (``audit.unsafe_pickles``), so TorchScript is accepted.
- **Input sizes.** The weights are traced at a multiple of 8, where the model's padding is a no-op, so they accept
  spatial sizes that are multiples of 8 only: the RDF declares ``min + n * 8``. The reloaded archive is checked
  against the PyTorch model on the test input and on a second shape (batch 2, other sizes along every axis).
- **Halo.** The spec needs ``min_size - 2 * halo >= 1``, so the minimum size is the smallest multiple of 8 above
  ``2 * halo``. Default halo: 24 px in 2D, 12 voxels in 3D, the largest multiples of 4 the default 64 px / 32 voxel
  test tensors allow. Measured on randomly initialised presets, a tile's output 24 px inside its border differs from
  the whole-image output by < 1e-5 of the output range for U-Nets and by 1-4 % for Restormers, whose channel
  attention pools over the whole tile, so tiling a Restormer is never exact.
- **Normalisation.** The checkpoint's dataset-wide percentiles become fixed ``scale_linear`` pre-processing
  (gain ``1 / (high - low)``, offset ``-low / (high - low)``) and its inverse as post-processing, so the package takes
  and returns raw intensity units. Identity normalisation adds no scaling.
- **Offline.** Validation runs with file checks on (hashes, test tensor shapes) but the description holds no URL
  (citations use DOIs) and no GitHub user names, the only fields bioimageio.spec would look up online.

Modules: ``package`` (the export flow), ``options`` (argument checks), ``weights`` (TorchScript, ONNX), ``docs``
(test input, cover, README), ``processing`` (normalisation steps), ``rdf`` (the model description), ``check``
(validation, re-running the weights), ``audit`` (the no-pickle audit), ``layout`` (shared names and limits).
"""

from .check import check_package, validate_package
from .layout import ExportError, min_input_size
from .package import export_bioimageio
from .processing import apply_processing

__all__ = [
    "ExportError",
    "apply_processing",
    "check_package",
    "export_bioimageio",
    "min_input_size",
    "validate_package",
]
