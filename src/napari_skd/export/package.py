"""The export flow: check the arguments, write the package files, save the zip, then validate, re-run and audit it."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from ..checkpoint import Checkpoint, load_checkpoint
from ..io import Image, open_image
from ..progress import Cancel, ProgressEvent, ProgressFn, emit
from .audit import unsafe_pickles
from .check import check_package, validate_package, validation_context
from .docs import make_test_input, write_cover, write_readme
from .layout import (
    MULTIPLE,
    ONNX_FILE,
    ONNX_OPSET,
    README_FILE,
    RECORD_FILE,
    TORCHSCRIPT_FILE,
    ExportError,
    min_input_size,
)
from .options import check_halo, check_metadata, check_output, check_test_size, require_packages
from .privacy import withhold_paths
from .processing import apply_processing, as_steps, norm_text, processing_descrs
from .rdf import PackageFiles, describe_package
from .weights import Reference, export_onnx, export_torchscript

if TYPE_CHECKING:
    from bioimageio.spec.model.v0_5 import ModelDescr

log = logging.getLogger(__name__)

#: The export's stages, reported as progress steps 0 .. 4 of 4 (cancel is honoured before each).
STAGES = (
    "writing the test data, TorchScript and ONNX weights",
    "saving the package",
    "validating the package with bioimageio.spec",
    "re-running the weights on the test input",
    "package checked; moving it into place",
)


def export_bioimageio(
    checkpoint: str | os.PathLike | Checkpoint,
    output: str | os.PathLike,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str | Mapping[str, str]] | None = None,
    license: str = "BSD-3-Clause",
    test_size: int | None = None,
    onnx: bool = True,
    halo: int | None = None,
    overwrite: bool = False,
    include_paths: bool = False,
    test_image: Any = None,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
) -> Path | None:
    """Write a validated bioimage.io model package (``.zip``) for a checkpoint and return its path.

    ``authors``: names or dicts with ``name`` (and optionally ``affiliation``, ``email``, ``orcid``); default
    ``napari-skd user``. ``test_size``: side of the test input, a multiple of 8 (default 64 in 2D, 32 in 3D, raised
    to the minimum input size). ``halo``: pixels to crop from each side of an output tile (default 24 in 2D,
    12 in 3D; 0 for none). ``onnx=False`` skips ONNX weights; a failing ONNX export is skipped with its reason
    recorded in the README and ``config.napari_skd.onnx``. An existing ``output`` is refused unless ``overwrite``
    (and then only a package napari-skd wrote is replaced). The training files' names are withheld from the README
    and the attached record unless ``include_paths`` (they can be personal data). ``test_image``: an image (path or
    ``io.Image``; what ``open_image`` reads) whose centre crop, in its own intensity units, becomes the test input
    instead of a sample. ``progress`` receives one ``"prepare"`` event per stage; ``cancel`` stops between stages
    (nothing is written, None is returned).
    """
    require_packages(onnx)
    output = check_output(output, overwrite)
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if not include_paths:
        ck = dataclasses.replace(ck, record=withhold_paths(ck.record))
    dims = ck.config.spatial_dims
    halo = check_halo(halo, dims)
    side = check_test_size(test_size, dims, halo)
    meta = check_metadata(ck, name, description, authors, license)
    image = None if test_image is None else open_image(test_image)
    stages = enumerate(STAGES)

    def stage() -> None:
        """Report the next stage, or stop here when cancelled."""
        if cancel is not None and cancel.is_set():
            raise _Stopped
        step, message = next(stages)
        emit(progress, ProgressEvent("prepare", step, len(STAGES) - 1, message=message))

    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory(prefix="napari-skd-export-") as work:
            stage()
            with validation_context():
                files = _write_files(ck, Path(work), side=side, halo=halo, onnx=onnx, name=meta["name"], image=image)
                descr = describe_package(ck, Path(work), files, halo=halo, meta=meta)
            stage()
            _save(descr, Path(tmp))
        stage()
        validate_package(tmp)
        stage()
        check_package(tmp)
        unsafe = unsafe_pickles(tmp)
        if unsafe:
            raise ExportError(f"the package would contain Python pickles: {', '.join(unsafe)}")
        stage()
        os.replace(tmp, output)
    except _Stopped:
        emit(progress, ProgressEvent("stopped", 0, len(STAGES) - 1, message="export stopped; nothing written"))
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("wrote bioimage.io package %s", output)
    return output


class _Stopped(Exception):
    """Raised between stages when the export is cancelled."""


def _write_files(
    ck: Checkpoint, work: Path, *, side: int, halo: int, onnx: bool, name: str, image: Image | None = None
) -> PackageFiles:
    """Test tensors, cover, TorchScript and ONNX weights (each checked against the model), record and README."""
    model = copy.deepcopy(ck.model).float().cpu().eval()
    pre, post = processing_descrs(ck)
    raw, source = make_test_input(ck, side, image)
    ref = Reference(model, apply_processing(as_steps(pre), raw))
    expected = apply_processing(as_steps(post), ref.outputs[0])
    np.save(work / "test_input.npy", raw, allow_pickle=False)
    np.save(work / "test_output.npy", expected, allow_pickle=False)
    tifffile.imwrite(work / "sample_input.tif", raw[0])  # the same images for people (Fiji, napari)
    tifffile.imwrite(work / "sample_output.tif", expected[0])
    write_cover(raw, expected, work / "cover.png")

    try:
        ts, scripted = export_torchscript(model, ref, work / TORCHSCRIPT_FILE)
    except (RuntimeError, ValueError) as err:
        raise ExportError(f"tracing the model to TorchScript failed: {err}") from err
    shape = "x".join(map(str, ts.other_shape))
    details: dict[str, Any] = {
        "torchscript_max_abs_error_vs_pytorch": {"test input": ts.test_error, shape: ts.other_error}
    }
    ok, note = False, "not requested (onnx=False)"
    if onnx:
        try:
            oc = export_onnx(scripted, ref, work / ONNX_FILE)
        except Exception as err:  # any exporter or runtime failure skips ONNX only  # noqa: BLE001
            note = f"skipped: ONNX export failed ({type(err).__name__}: {str(err).strip().splitlines()[0][:300]})"
            log.warning("bioimage.io export of %s: %s", name, note)
        else:
            ok = True
            note = f"opset {ONNX_OPSET}, " + ("checked with onnxruntime" if oc else "checked with onnx.checker only")
            if oc:
                details["onnx_max_abs_error_vs_pytorch"] = {"test input": oc.test_error, shape: oc.other_error}

    record = json.loads(json.dumps(ck.record, default=str))
    (work / RECORD_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    facts = {
        "test input": source,
        "input size": f"{min_input_size(halo)} + n * {MULTIPLE} along every spatial axis (traced at multiples of 8)",
        "halo": f"{halo} px cropped from each side of an output tile" if halo else "none",
        "weights": f"TorchScript (torch.jit.trace); ONNX: {note}",
        "normalisation": norm_text(ck),
    }
    write_readme(work / README_FILE, ck=ck, name=name, side=side, facts=facts, details=details)
    return PackageFiles(pre, post, float(np.max(expected)), ok, note, record)


def _save(descr: ModelDescr, path: Path) -> None:
    """Write the package zip with bioimage.io's packaging function."""
    from bioimageio.spec import save_bioimageio_package  # optional dependency: imported on use

    try:
        with validation_context(), warnings.catch_warnings():
            # the spec's cache pre-pass resolves package-relative names against the working folder; harmless
            warnings.filterwarnings("ignore", message="Found mapping with 'source'", category=UserWarning)
            save_bioimageio_package(descr, output_path=path)
    except ValueError as err:
        raise ExportError(f"bioimageio.spec refused the package: {err}") from err
