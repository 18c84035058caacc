"""The bioimage.io model description (format 0.5, ``rdf.yaml``) of the files an export has written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import Checkpoint
from ..models import count_params
from .docs import RESTORMER_CITATION, RESTORMER_DOI, SKD_CITATION, SKD_DOI
from .layout import MULTIPLE, ONNX_FILE, ONNX_OPSET, README_FILE, RECORD_FILE, RTOL, TORCHSCRIPT_FILE, min_input_size
from .processing import norm_span

if TYPE_CHECKING:
    from bioimageio.spec.model.v0_5 import ModelDescr

TAGS = ["denoising", "restoration", "image-restoration", "napari-skd", "knowledge-distillation", "pytorch"]


@dataclass
class PackageFiles:
    """What writing the package files found out, for the description."""

    pre: list
    post: list
    peak: float  # largest test output value (bounds the absolute reproducibility tolerance)
    onnx: bool
    onnx_note: str
    record: dict[str, Any]


def describe_package(ck: Checkpoint, work: Path, files: PackageFiles, *, halo: int, meta: dict[str, Any]) -> ModelDescr:
    """The ``ModelDescr`` (format 0.5) of the files in ``work``; ``meta`` holds name, description, licence, authors."""
    from bioimageio.spec.model import v0_5 as bio  # optional dependency: imported on use

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
                relative_tolerance=RTOL, absolute_tolerance=min(RTOL * norm_span(ck), 0.005 * files.peak)
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
