"""Text that must not mislead: defaults shown once in --help, and only the degradation settings that apply."""

import re

from napari_skd.checkpoint import Checkpoint
from napari_skd.cli.app import build_parser
from napari_skd.describe import training_record
from napari_skd.models import build_model


def test_each_default_appears_once_in_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("export", "restore", "convert", "bench", "info"):
        text = " ".join(sub[name].format_help().split())
        assert not re.search(r"default[^()]*\) \(default:", text), name  # never two defaults in a row
    export = " ".join(sub["export"].format_help().split())
    assert "(default: from the checkpoint)" in export and "(default: BSD-3-Clause)" in export
    assert "model.zip (default: None)" not in export


def record(kind: str) -> dict:
    deg = {"kind": kind, "sigma": 0.05, "peak": 20.0, "blur_sigma": 1.0}
    return {"data": {"clean": "x.tif", "axes": "YX", "degradation": deg}}


def test_the_record_names_blur_only_when_the_degradation_blurs():
    model = build_model("unet-xs")
    text = training_record(Checkpoint(model, model.config, "teacher", record=record("poisson_gaussian")))["data"]
    assert "degraded with poisson_gaussian (peak 20.0, sigma 0.05)" in text and "blur" not in text
    text = training_record(Checkpoint(model, model.config, "teacher", record=record("blur_noise")))["data"]
    assert "blur_noise (blur_sigma 1.0, sigma 0.05)" in text
