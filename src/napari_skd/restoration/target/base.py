"""What every output target answers, and which kind an output's name asks for.

``.ome.zarr`` / ``.zarr`` (or a name without extension) is an OME-Zarr store, written block by block at any size;
``.tif`` / ``.tiff`` an OME-TIFF and ``.nii`` / ``.nii.gz`` a NIfTI file, for results that fit in memory. Any other
name is refused.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ...errors import InputError
from ...io.writers import is_zarr_name
from ..layout import Layout, OutputBlock, place
from ..prepare import PreparedRestore
from .record import Verdict

OutputFormat = Literal["ome-zarr", "tiff", "nifti"]
TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def output_format(path: str | os.PathLike) -> OutputFormat:
    """The format an output's name asks for; a name with another extension is refused."""
    name = Path(path).name.lower()
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if is_zarr_name(path):
        return "ome-zarr"
    raise InputError(
        f"the output {path} has an extension napari-skd does not write: expected a name ending .ome.zarr or .zarr "
        "(OME-Zarr, any size, written block by block), or .tif / .tiff (OME-TIFF) or .nii / .nii.gz (NIfTI) for "
        "results that fit in memory"
    )


def write_block(array: Any, layout: Layout, item: OutputBlock, values: np.ndarray) -> None:
    """Write one restored block into an output array (a store's level 0, a worker's view of it, or memory)."""
    array[layout.index(item.outer, item.block.out)] = place(layout, values)


class Target(ABC):
    """One output of one restoration job, from the first look to the last write.

    The life, the same for every kind: :meth:`inspect` (what is there and whether this job may use it: the
    :attr:`verdict`, or an InputError saying why not); :meth:`open` (create, clear or resume it, for the time of a
    ``with`` block); :meth:`pending` blocks; :meth:`write` each; :meth:`note_run`; :meth:`finish`; :meth:`set_qc`.
    :attr:`complete` says when the result is all written.
    """

    #: the result is held whole in memory and written at the end (a single file), not block by block (a store)
    held_in_memory: ClassVar[bool]

    def __init__(
        self,
        path: Path,
        job: PreparedRestore,
        verdict: Verdict,
        *,
        overwrite: bool = False,
        expects_qc: bool = False,
    ):
        self.path, self.job, self.verdict, self.overwrite = path, job, verdict, overwrite
        self.expects_qc = expects_qc  # a QC report will follow ``finish``
        self.array: Any = None  # once open: the result in canonical (TCZYX) order, for QC to read back
        self.complete = False

    @classmethod
    def inspect(
        cls, path: Path, job: PreparedRestore, overwrite: bool, *, qc: bool = False, distributed: bool = False
    ) -> Target:
        """The target at ``path`` for ``job`` (not opened yet), or an InputError saying why this job may not use it.
        ``qc``: a QC report will be added; ``distributed``: dask workers will write the blocks."""
        verdict = cls.judge_path(path, job, overwrite, qc, distributed)
        return cls(path, job, verdict, overwrite=overwrite, expects_qc=qc)

    @classmethod
    @abstractmethod
    def judge_path(cls, path: Path, job: PreparedRestore, overwrite: bool, qc: bool, distributed: bool) -> Verdict:
        """What ``job`` may do with what is at ``path`` (:meth:`inspect`), or an InputError saying why not."""

    @property
    def check_only(self) -> bool:
        """A finished output of this same job, to which only a QC report is added."""
        return self.verdict == "add-qc"

    @classmethod
    @abstractmethod
    def record_at(cls, path: Path) -> dict[str, Any] | None:
        """napari-skd's restoration record of the output at ``path``, or None."""

    @classmethod
    @abstractmethod
    def qc_at(cls, path: Path) -> Any:
        """The QC report stored with the output at ``path`` (as JSON data), or None."""

    @abstractmethod
    def open(self) -> AbstractContextManager[Target]:
        """Create, clear or resume the output; yields this target, ready for blocks, until the ``with`` ends."""

    @abstractmethod
    def pending(self, items: list[OutputBlock]) -> list[OutputBlock]:
        """The blocks of ``items`` not written yet, in order."""

    @abstractmethod
    def write(self, item: OutputBlock, values: np.ndarray) -> None:
        """Write one restored block."""

    def written(self, item: OutputBlock) -> None:
        """A block a dask worker wrote into the output itself (only a store takes those)."""
        raise NotImplementedError(f"{type(self).__name__} takes no blocks written elsewhere")

    @abstractmethod
    def note_run(self, run: dict[str, Any]) -> str:
        """Record how this run executes; a note for the user when an earlier run of the output differed."""

    @abstractmethod
    def finish(self) -> None:
        """Every block is written: complete the output (a single file waits for its QC report when one follows)."""

    @abstractmethod
    def set_qc(self, report: dict[str, Any]) -> None:
        """Store a fidelity report (``qc``) with the output."""
