"""Export a napari-skd checkpoint as a bioimage.io model package (model description format 0.5).

The package (a ``.zip``) holds ``rdf.yaml`` (built with ``bioimageio.spec``'s Python descriptors and written by its
packaging function), TorchScript weights, ONNX weights where export succeeds, a test input and output (``.npy``),
``cover.png``, ``README.md`` and the training record (``training_record.json``, also under ``config.napari_skd``).

Decisions:

- **No Python pickle.** No PyTorch state dict is packaged. The TorchScript archive does contain ``data.pkl`` /
  ``constants.pkl``, but ``torch.jit.load`` reads them with TorchScript's own restricted unpickler: they may only
  rebuild tensors, containers and TorchScript classes, never import or call arbitrary Python. Every export is
  audited for this (``export_weights.unsafe_pickles``), so TorchScript is accepted.
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
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .checkpoint import Checkpoint, load_checkpoint
from .errors import InputError, SkdError

if TYPE_CHECKING:
    from bioimageio.spec import ValidationSummary

log = logging.getLogger(__name__)

DEFAULT_HALO = {2: 24, 3: 12}
DEFAULT_TEST_SIZE = {2: 64, 3: 32}
MULTIPLE = 8
TAGS = ["denoising", "restoration", "image-restoration", "napari-skd", "knowledge-distillation", "pytorch"]
AUTHOR_KEYS = {"name", "affiliation", "email", "orcid"}
RTOL = 1e-3  # reproducibility tolerance declared in the package and used by check_package
TORCHSCRIPT_FILE, ONNX_FILE = "weights_torchscript.pt", "weights.onnx"
README_FILE, RECORD_FILE = "README.md", "training_record.json"


class ExportError(SkdError):
    """The export produced an invalid package or weights that do not reproduce the model (an internal failure)."""


def _require_packages(onnx: bool) -> None:
    try:
        import bioimageio.spec  # noqa: F401

        if onnx:
            import onnx as _onnx  # noqa: F401
    except ImportError as err:
        raise InputError(
            f"exporting bioimage.io packages needs the {err.name} package, which is not installed; "
            "install napari-skd[export] (pip install 'napari-skd[export]')"
        ) from err


def min_input_size(halo: int) -> int:
    """Smallest valid input side: a multiple of 8 leaving at least 1 pixel after cropping ``halo`` from both sides."""
    return -(-(2 * halo + 1) // MULTIPLE) * MULTIPLE


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
) -> Path:
    """Write a validated bioimage.io model package (``.zip``) for a checkpoint and return its path.

    ``authors``: names or dicts with ``name`` (and optionally ``affiliation``, ``email``, ``orcid``); default
    ``napari-skd user``. ``test_size``: side of the test input, a multiple of 8 (default 64 in 2D, 32 in 3D, raised
    to the minimum input size). ``halo``: pixels to crop from each side of an output tile (default 24 in 2D,
    12 in 3D; 0 for none). ``onnx=False`` skips ONNX weights; a failing ONNX export is skipped with its reason
    recorded in the README and ``config.napari_skd.onnx``. An existing ``output`` is refused unless ``overwrite``.
    """
    _require_packages(onnx)
    output = _check_output(output, overwrite)
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    dims = ck.config.spatial_dims
    halo = DEFAULT_HALO[dims] if halo is None else halo
    if not isinstance(halo, int) or halo < 0:
        raise InputError(f"halo must be a whole number of pixels >= 0, got {halo!r}")
    side = _test_side(test_size, dims, halo)
    meta = _check_metadata(ck, name, description, authors, license)

    from .export_weights import unsafe_pickles

    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory(prefix="napari-skd-export-") as work:
            with _context():
                descr = _build_package(ck, Path(work), side=side, halo=halo, onnx=onnx, meta=meta)
            _save(descr, Path(tmp))
        validate_package(tmp)
        check_package(tmp)
        unsafe = unsafe_pickles(tmp)
        if unsafe:
            raise ExportError(f"the package would contain Python pickles: {', '.join(unsafe)}")
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("wrote bioimage.io package %s", output)
    return output


# --- argument checks ------------------------------------------------------------------------------------------


def _check_output(output: str | os.PathLike, overwrite: bool) -> Path:
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise InputError(f"the package must be a .zip file, got {output}; e.g. use {output.stem}.bioimageio.zip")
    if output.is_dir():
        raise InputError(f"{output} is a folder; give the path of the .zip file to write")
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists; choose another path or overwrite it (overwrite=True, --overwrite)")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as err:
        raise InputError(
            f"cannot write to the folder {output.parent} ({err.strerror or err}); choose an output folder you can "
            "write to"
        ) from err
    return output


def _test_side(test_size: int | None, dims: int, halo: int) -> int:
    smallest = min_input_size(halo)
    if test_size is None:
        return max(DEFAULT_TEST_SIZE[dims], smallest)
    if not isinstance(test_size, int) or test_size % MULTIPLE or test_size < smallest:
        raise InputError(
            f"test_size must be a multiple of {MULTIPLE} and at least {smallest} (the smallest input allowed with "
            f"halo {halo}), got {test_size!r}"
        )
    return test_size


def _check_metadata(
    ck: Checkpoint,
    name: str | None,
    description: str | None,
    authors: Sequence[str | Mapping[str, str]] | None,
    license: str,
) -> dict[str, Any]:
    from bioimageio.spec.model.v0_5 import Author, LicenseId
    from pydantic import ValidationError

    cfg = ck.config
    name = name or f"napari-skd {ck.role} {cfg.arch} {cfg.spatial_dims}D"
    if not re.fullmatch(r"[A-Za-z0-9_+\- ()]{5,128}", name):
        raise InputError(f"invalid package name {name!r}: use 5 to 128 letters, digits, spaces and _ + - ( ) only")
    description = description or (
        f"{cfg.arch.capitalize()} {ck.role} ({cfg.spatial_dims}D, {cfg.in_channels}->{cfg.out_channels} channels) "
        "for image denoising and restoration, trained with napari-skd (soft knowledge distillation of a Restormer)."
    )
    if len(description) > 1024:
        raise InputError(f"the description has {len(description)} characters; at most 1024 are allowed")
    try:
        license_id = LicenseId(license)
    except ValidationError as err:
        raise InputError(
            f"unknown licence {license!r}: use an SPDX identifier such as BSD-3-Clause, MIT, CC-BY-4.0"
        ) from err
    people = []
    for author in authors or [{"name": "napari-skd user"}]:
        entry = {"name": author} if isinstance(author, str) else dict(author)
        extra = set(entry) - AUTHOR_KEYS
        if extra or "name" not in entry:
            raise InputError(
                f"invalid author {author!r}: give a name, or a dict with 'name' and optionally "
                f"{', '.join(sorted(AUTHOR_KEYS - {'name'}))} (github_user is not supported: checking it needs the "
                "internet)"
            )
        try:
            people.append(Author(**entry))
        except ValidationError as err:
            raise InputError(f"invalid author {author!r}: {_first_error(err)}") from err
    return {"name": name, "description": description, "license": license_id, "authors": people}


def _first_error(err: Any) -> str:
    e = err.errors()[0]
    return f"{'.'.join(map(str, e['loc']))}: {e['msg']}"


# --- processing (shared by the export and by check_package) ----------------------------------------------------


def _scaling(ck: Checkpoint) -> tuple[float, float] | None:
    """(gain, offset) of the pre-processing ``x * gain + offset``; None for identity normalisation."""
    if ck.norm is None:
        return None
    span = ck.norm.high - ck.norm.low
    gain, offset = 1.0 / span, -ck.norm.low / span
    return None if (gain, offset) == (1.0, 0.0) else (gain, offset)


def apply_processing(steps: Sequence[tuple[str, Mapping[str, Any]]], x: np.ndarray) -> np.ndarray:
    """Apply bioimage.io ``ensure_dtype`` / ``scale_linear`` steps (``(id, kwargs)``) as consumers do, in float32."""
    for op, kw in steps:
        if op == "ensure_dtype":
            x = x.astype(kw["dtype"])
        elif op == "scale_linear" and kw.get("axis") is None:
            x = x * np.float32(kw["gain"]) + np.float32(kw["offset"])
        else:
            raise ExportError(f"check_package does not implement the processing step {op!r} {dict(kw)}")
    return x


def _steps(descrs: Sequence[Any]) -> list[tuple[str, dict]]:
    return [(d.id, d.kwargs.model_dump(mode="json", exclude_none=True)) for d in descrs]


# --- building the package -------------------------------------------------------------------------------------


@dataclass
class _Files:
    """What writing the package files found out, for the description."""

    pre: list
    post: list
    peak: float  # largest test output value (bounds the absolute reproducibility tolerance)
    onnx: bool
    onnx_note: str
    record: dict[str, Any]


def _build_package(ck: Checkpoint, work: Path, *, side: int, halo: int, onnx: bool, meta: dict[str, Any]):
    """Write every package file into ``work`` and return the ``ModelDescr`` that references them."""
    files = _write_files(ck, work, side=side, halo=halo, onnx=onnx, name=meta["name"])
    return _describe(ck, work, files, halo=halo, meta=meta)


def _write_files(ck: Checkpoint, work: Path, *, side: int, halo: int, onnx: bool, name: str) -> _Files:
    """Test tensors, cover, TorchScript and ONNX weights (each checked against the model), record and README."""
    import tifffile

    from .export_docs import make_test_input, write_cover, write_readme
    from .export_weights import ONNX_OPSET, Reference, export_onnx, export_torchscript

    model = copy.deepcopy(ck.model).float().cpu().eval()
    pre, post = _processing(ck)
    raw, source = make_test_input(ck, side)
    ref = Reference(model, apply_processing(_steps(pre), raw))
    expected = apply_processing(_steps(post), ref.outputs[0])
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
        "normalisation": _norm_text(ck),
    }
    write_readme(work / README_FILE, ck=ck, name=name, side=side, facts=facts, details=details)
    return _Files(pre, post, float(np.max(expected)), ok, note, record)


def _describe(ck: Checkpoint, work: Path, files: _Files, *, halo: int, meta: dict[str, Any]):
    """The ``ModelDescr`` (format 0.5) of the files in ``work``."""
    import torch
    from bioimageio.spec.model import v0_5 as bio

    from .export_docs import RESTORMER_CITATION, RESTORMER_DOI, SKD_CITATION, SKD_DOI
    from .export_weights import ONNX_OPSET
    from .models import count_params

    cfg = ck.config
    space = [bio.AxisId(a) for a in "zyx"[3 - cfg.spatial_dims :]]
    smallest = min_input_size(halo)

    def channels(n: int) -> bio.ChannelAxis:
        return bio.ChannelAxis(channel_names=[f"channel{i}" for i in range(n)])

    def out_axis(a: bio.AxisId) -> Any:
        size = bio.SizeReference(tensor_id=bio.TensorId("input"), axis_id=a)
        if halo:
            return bio.SpaceOutputAxisWithHalo(id=a, size=size, halo=halo)
        return bio.SpaceOutputAxis(id=a, size=size)

    inputs = bio.InputTensorDescr(
        id=bio.TensorId("input"),
        description="raw intensities, in the units of the training data",
        axes=[
            bio.BatchAxis(),
            channels(cfg.in_channels),
            *(bio.SpaceInputAxis(id=a, size=bio.ParameterizedSize(min=smallest, step=MULTIPLE)) for a in space),
        ],
        test_tensor=bio.FileDescr(source=work / "test_input.npy"),
        sample_tensor=bio.FileDescr(source=work / "sample_input.tif"),
        data=bio.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=files.pre,
    )
    outputs = bio.OutputTensorDescr(
        id=bio.TensorId("output"),
        description="restored image, in the input's intensity units",
        axes=[bio.BatchAxis(), channels(cfg.out_channels), *(out_axis(a) for a in space)],
        test_tensor=bio.FileDescr(source=work / "test_output.npy"),
        sample_tensor=bio.FileDescr(source=work / "sample_output.tif"),
        data=bio.IntervalOrRatioDataDescr(type="float32"),
        postprocessing=files.post,
    )
    formats: dict[str, Any] = {
        "torchscript": bio.TorchscriptWeightsDescr(
            source=work / TORCHSCRIPT_FILE,
            pytorch_version=bio.Version(torch.__version__.split("+")[0]),
            comment="torch.jit.trace of the napari-skd model; spatial sizes must be multiples of 8",
        )
    }
    if files.onnx:
        formats["onnx"] = bio.OnnxWeightsDescr(
            source=work / ONNX_FILE,
            opset_version=ONNX_OPSET,
            parent="torchscript",
            comment="torch.onnx export (TorchScript-based exporter) of the TorchScript weights",
        )
    # The spec caps the absolute tolerance at 1 % of the test output's maximum and so rejects any tolerance when
    # that maximum is <= 0 (data that are all negative, e.g. some CT): declare none then (consumers use defaults).
    tolerance = (
        [
            bio.ReproducibilityTolerance(
                relative_tolerance=RTOL, absolute_tolerance=min(RTOL * _span(ck), 0.005 * files.peak)
            )
        ]
        if files.peak > 0
        else []
    )
    config = bio.Config(
        bioimageio=bio.BioimageioConfig(
            reproducibility_tolerance=tolerance,
            architecture_type="U-Net" if cfg.arch == "unet" else "Restormer (transformer)",
            task="denoising",
            model_parameter_count=count_params(ck.model),
        ),
        napari_skd={
            "role": ck.role,
            "checkpoint_hash": ck.hash,
            "teacher_hash": ck.teacher_hash,
            "architecture": cfg.model_dump(mode="json"),
            "normalization": ck.norm.model_dump(mode="json") if ck.norm else None,
            "halo": halo,
            "onnx": files.onnx_note,
            "record": files.record,
        },
    )
    return bio.ModelDescr(
        name=meta["name"],
        description=meta["description"],
        authors=meta["authors"],
        license=meta["license"],
        cite=[
            bio.CiteEntry(text=SKD_CITATION, doi=bio.Doi(SKD_DOI)),
            bio.CiteEntry(text=RESTORMER_CITATION, doi=bio.Doi(RESTORMER_DOI)),
        ],
        tags=[*TAGS, f"{cfg.spatial_dims}d", *(["unet"] if cfg.arch == "unet" else [])],
        documentation=bio.FileDescr(source=work / README_FILE),
        covers=[bio.FileDescr(source=work / "cover.png")],
        attachments=[bio.FileDescr(source=work / RECORD_FILE)],
        inputs=[inputs],
        outputs=[outputs],
        weights=bio.WeightsDescr(**formats),
        config=config,
        timestamp=bio.Datetime(datetime.now(UTC)),
    )


def _processing(ck: Checkpoint) -> tuple[list, list]:
    from bioimageio.spec.model import v0_5 as bio

    f32 = bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32"))
    scale = _scaling(ck)
    if scale is None:
        return [f32], [f32]
    gain, offset = scale
    assert ck.norm is not None
    return (
        [f32, bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=gain, offset=offset))],
        [
            bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=_span(ck), offset=ck.norm.low)),
            bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32")),
        ],
    )


def _span(ck: Checkpoint) -> float:
    return ck.norm.high - ck.norm.low if ck.norm else 1.0


def _norm_text(ck: Checkpoint) -> str:
    if ck.norm is None:
        return "identity: the network sees intensities as they are (no scale_linear)"
    n = ck.norm
    return (
        f"percentiles {n.pmin} / {n.pmax} of the training data: low {n.low:.6g}, high {n.high:.6g}; "
        f"pre-processing scale_linear(gain=1/(high-low), offset=-low/(high-low)), post-processing its inverse "
        f"scale_linear(gain=high-low, offset=low)"
    )


# --- saving, validating, checking -------------------------------------------------------------------------------


def _context():
    from bioimageio.spec import ValidationContext

    return ValidationContext(perform_io_checks=True, log_warnings=False, progressbar=False)


def _save(descr: Any, path: Path) -> None:
    from bioimageio.spec import save_bioimageio_package

    try:
        with _context(), warnings.catch_warnings():
            # the spec's cache pre-pass resolves package-relative names against the working folder; harmless
            warnings.filterwarnings("ignore", message="Found mapping with 'source'", category=UserWarning)
            save_bioimageio_package(descr, output_path=path)
    except ValueError as err:
        raise ExportError(f"bioimageio.spec refused the package: {err}") from err


def validate_package(package: str | os.PathLike) -> ValidationSummary:
    """Validate a package with bioimageio.spec (files, hashes, test tensor shapes; offline) and return its summary.

    Raises ``ExportError`` with the validator's messages when it fails. The best status without running the model
    in bioimageio.core is ``"valid-format"``.
    """
    from bioimageio.spec import InvalidDescr, load_description

    with _context():
        descr = load_description(package, perform_io_checks=True, progressbar=False)
    summary = descr.validation_summary
    if isinstance(descr, InvalidDescr) or summary.status == "failed":
        messages = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in summary.errors)
        raise ExportError(f"the bioimage.io package {package} is invalid: {messages}")
    return summary


def check_package(package: str | os.PathLike) -> dict[str, float]:
    """Reproduce the package's test output from its test input with each weights format and return the max errors.

    Applies the RDF's pre-processing, runs TorchScript (``torch.jit.load``) and ONNX (with onnxruntime, when
    installed), applies the post-processing and compares with the test output within the declared tolerance.
    """
    import io

    from bioimageio.spec import load_model_description
    from bioimageio.spec.utils import get_reader, load_array

    from .export_weights import load_torchscript, run_torchscript

    with _context():
        descr = load_model_description(package, perform_io_checks=False, progressbar=False)
        x = load_array(descr.inputs[0].test_tensor)
        expected = load_array(descr.outputs[0].test_tensor)
        weights = {"torchscript": get_reader(descr.weights.torchscript).read()}
        if descr.weights.onnx is not None:
            weights["onnx"] = get_reader(descr.weights.onnx).read()
    declared = descr.config.bioimageio.reproducibility_tolerance
    rtol, atol = (
        (declared[0].relative_tolerance, declared[0].absolute_tolerance)
        if declared
        else (RTOL, RTOL * float(np.abs(expected).max()))
    )
    pre = apply_processing(_steps(descr.inputs[0].preprocessing), x)
    errors = {}
    for fmt, blob in weights.items():
        if fmt == "torchscript":
            y = run_torchscript(load_torchscript(io.BytesIO(blob)), pre)
        else:
            try:
                import onnxruntime
            except ImportError:
                continue
            session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
            y = session.run(None, {session.get_inputs()[0].name: pre})[0]
        got = apply_processing(_steps(descr.outputs[0].postprocessing), y)
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=rtol, atol=atol):
            raise ExportError(f"the {fmt} weights in {package} do not reproduce the test output")
        errors[fmt] = float(np.abs(got - expected).max())
    return errors
