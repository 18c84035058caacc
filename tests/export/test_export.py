"""bioimage.io export: a valid, offline-validated, pickle-free package that reproduces the checkpoint's model."""

import contextlib
import io
import pickle
import shutil
import socket
import sys
import zipfile
from collections import Counter

import numpy as np
import pytest
import torch
import yaml

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
pytest.importorskip("bioimageio.spec")
pytest.importorskip("onnx")

from conftest import untrained  # noqa: E402
from napari_skd.checkpoint import Checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from napari_skd.errors import CheckpointError, InputError  # noqa: E402
from napari_skd.export import check_package, export_bioimageio, validate_package  # noqa: E402
from napari_skd.export.audit import pickle_globals, unsafe_pickles  # noqa: E402
from napari_skd.export.docs import make_test_input, write_cover  # noqa: E402
from napari_skd.export.privacy import WITHHELD, withhold_paths  # noqa: E402
from napari_skd.models import build_model  # noqa: E402
from napari_skd.normalize import Normalization  # noqa: E402

NORM = Normalization(low=10.0, high=250.0)
RECORD = {"steps": 120, "method": "skd", "metrics": {"psnr": 31.5}, "data": {"degraded": "noisy.tif", "axes": "YX"}}
FILES = {
    "rdf.yaml",
    "weights_torchscript.pt",
    "weights.onnx",
    "test_input.npy",
    "test_output.npy",
    "sample_input.tif",
    "sample_output.tif",
    "cover.png",
    "README.md",
    "training_record.json",
}


@contextlib.contextmanager
def no_network():
    """Fail any DNS lookup or internet connection made inside (bioimageio.spec must validate offline)."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access is disabled in the export tests")

    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            refuse(address)
        return real_connect(sock, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", refuse)
        mp.setattr(socket.socket, "connect", connect)
        yield attempts
    assert not attempts, f"the export tried to reach the network: {attempts}"


@pytest.fixture(autouse=True)
def _offline():
    with no_network():
        yield


def _export(tmp, model, norm=NORM, **kwargs):
    ck = save_checkpoint(tmp / "model.pt", model, role="student", norm=norm, record=RECORD)
    return export_bioimageio(ck, tmp / "model.bioimageio.zip", **kwargs)


@pytest.fixture(scope="module")
def package2d(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("export2d")
    with no_network():
        path = _export(tmp, build_model("student-tiny"))
    return path, load_checkpoint(tmp / "model.pt")


def _rdf(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


def _npy(path, name) -> np.ndarray:
    with zipfile.ZipFile(path) as z:
        return np.load(io.BytesIO(z.read(name)), allow_pickle=False)


def _scale(steps: list[dict], x: np.ndarray) -> np.ndarray:
    """The test's own reading of the RDF processing: scale_linear steps applied in float32."""
    for step in steps:
        if step["id"] == "scale_linear":
            x = x * np.float32(step["kwargs"]["gain"]) + np.float32(step["kwargs"]["offset"])
    return x.astype(np.float32)


def test_2d_package_validates_and_has_every_part(package2d):
    path, _ = package2d
    summary = validate_package(path)
    assert summary.status == "valid-format"  # the best status without bioimageio.core's dynamic test
    assert all(d.status == "passed" for d in summary.details)
    with zipfile.ZipFile(path) as z:
        assert set(z.namelist()) >= FILES
        readme = z.read("README.md").decode()
    rdf = _rdf(path)
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5")
    assert {"denoising", "restoration", "napari-skd", "knowledge-distillation", "2d"} <= set(rdf["tags"])
    assert {c["doi"] for c in rdf["cite"]} == {"10.48550/arXiv.2501.09321", "10.48550/arXiv.2111.09881"}
    assert rdf["authors"] == [{"name": "napari-skd user"}]
    assert rdf["config"]["napari_skd"]["record"]["metrics"] == {"psnr": 31.5}
    for text in ("student", "restormer", "120", "psnr", "2501.09321", "Restormer", "## Validation", WITHHELD):
        assert text in readme
    # the training files' names are withheld by default (clinical file names can be personal data)
    with zipfile.ZipFile(path) as z:
        assert not any(b"noisy.tif" in z.read(n) for n in z.namelist())
    assert rdf["config"]["napari_skd"]["record"]["data"] == {"degraded": WITHHELD, "axes": "YX"}
    assert _npy(path, "test_input.npy").shape == (1, 1, 64, 64)


def test_2d_axes_halo_and_processing_follow_the_checkpoint(package2d):
    path, ck = package2d
    rdf = _rdf(path)
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert [a["type"] for a in inp["axes"]] == ["batch", "channel", "space", "space"]
    assert [a["size"] for a in inp["axes"][2:]] == [{"min": 56, "step": 8}] * 2  # 56 - 2 * 24 >= 1
    assert [(a["halo"], a["size"]["axis_id"]) for a in out["axes"][2:]] == [(24, "y"), (24, "x")]
    pre = [p for p in inp["preprocessing"] if p["id"] == "scale_linear"]
    post = [p for p in out["postprocessing"] if p["id"] == "scale_linear"]
    span = ck.norm.high - ck.norm.low
    assert pre[0]["kwargs"] == pytest.approx({"gain": 1 / span, "offset": -ck.norm.low / span})
    assert post[0]["kwargs"] == pytest.approx({"gain": span, "offset": ck.norm.low})
    assert inp["preprocessing"][0] == {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}


def test_torchscript_reproduces_test_output_and_accepts_other_sizes(package2d):
    path, ck = package2d
    rdf = _rdf(path)
    with zipfile.ZipFile(path) as z:
        module = torch.jit.load(io.BytesIO(z.read("weights_torchscript.pt")), map_location="cpu").eval()
    x = _npy(path, "test_input.npy")
    assert x.dtype == np.float32 and ck.norm.low - 1 < np.percentile(x, 1) < ck.norm.low + 1
    with torch.no_grad(), torch.jit.optimized_execution(False):  # skip the optimiser's warm-up runs
        y = module(torch.from_numpy(_scale(rdf["inputs"][0]["preprocessing"], x))).numpy()
        got = _scale(rdf["outputs"][0]["postprocessing"], y)
        np.testing.assert_allclose(got, _npy(path, "test_output.npy"), rtol=1e-4, atol=1e-3)
        other = torch.rand(2, 1, 72, 48)  # another multiple of 8, batch of 2
        np.testing.assert_allclose(module(other).numpy(), ck.model(other).numpy(), rtol=1e-4, atol=1e-5)
    assert check_package(path)["torchscript"] < 1e-3


def test_onnx_weights_match(package2d):
    import onnx

    path, _ = package2d
    with zipfile.ZipFile(path) as z:
        blob = z.read("weights.onnx")
    onnx.checker.check_model(onnx.load_from_string(blob))
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    rdf = _rdf(path)
    x = _scale(rdf["inputs"][0]["preprocessing"], _npy(path, "test_input.npy"))
    got = _scale(rdf["outputs"][0]["postprocessing"], session.run(None, {"input": x})[0])
    np.testing.assert_allclose(got, _npy(path, "test_output.npy"), rtol=1e-3, atol=1e-2)
    assert check_package(path)["onnx"] < 1e-2


def test_package_holds_no_python_pickle(package2d):
    """No member is a pickle stream or has a pickle/PyTorch suffix, except the TorchScript archive, whose internal
    pickles reference only tensor rebuilding, containers and TorchScript classes."""
    path, _ = package2d
    assert unsafe_pickles(path) == []
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            head = z.read(name)[:2]
            assert not (head[:1] == b"\x80" and 2 <= head[1] <= 5), name
        with zipfile.ZipFile(io.BytesIO(z.read("weights_torchscript.pt"))) as ts:
            refs = set().union(*(pickle_globals(ts.read(n)) for n in ts.namelist() if n.endswith(".pkl")))
    assert refs and all(r.startswith(("__torch__.", "torch.", "collections.OrderedDict")) for r in refs)


def test_pickle_audit_flags_pickles(tmp_path):
    bad = tmp_path / "bad.zip"
    state = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, state)
    objects = io.BytesIO()
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("data.bin", pickle.dumps(Counter("ab")))
        z.writestr("weights.onnx", state.getvalue())  # a torch.save zip (not TorchScript), whatever its name
        z.writestr("test_input.npy", objects.getvalue())
        z.writestr("notes.pkl", b"")
        z.writestr("cover.png", b"\x89PNG")
    assert pickle_globals(pickle.dumps(Counter("ab"), protocol=2)) == {"collections.Counter"}
    flagged = unsafe_pickles(bad)
    assert (
        flagged[0] == "data.bin"
        and flagged[1].startswith("weights.onnx: ")
        and flagged[2:]
        == [
            "test_input.npy",
            "notes.pkl",
        ]
    )


def test_3d_unet_identity_norm_and_overwrite(tmp_path, package2d):
    ours, _ = package2d
    foreign = tmp_path / "model.bioimageio.zip"
    foreign.write_bytes(b"a user's file")
    with pytest.raises(InputError, match="not a bioimage.io package napari-skd exported"):  # whatever overwrite says
        _export(tmp_path, untrained("unet-xs", spatial_dims=3), norm=None, overwrite=True)
    assert foreign.read_bytes() == b"a user's file"
    shutil.copy(ours, foreign)  # a package napari-skd wrote: replaced with overwrite
    path = _export(tmp_path, untrained("unet-xs", spatial_dims=3), norm=None, overwrite=True)
    assert validate_package(path).status == "valid-format"
    rdf = _rdf(path)
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert [a["id"] for a in inp["axes"][2:]] == ["z", "y", "x"]
    assert inp["axes"][2]["size"] == {"min": 32, "step": 8} and out["axes"][2]["halo"] == 12
    assert all(p["id"] == "ensure_dtype" for p in inp["preprocessing"] + out["postprocessing"])
    assert _npy(path, "test_input.npy").shape == (1, 1, 32, 32, 32)
    assert "3d" in rdf["tags"] and "unet" in rdf["tags"]
    assert set(check_package(path)) == {"torchscript", "onnx"}
    assert unsafe_pickles(path) == []


def test_failing_onnx_export_is_skipped_with_a_reason(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("operator not supported")

    monkeypatch.setattr(torch.onnx, "export", broken)
    path = _export(tmp_path, untrained("unet-xs"), halo=0, test_size=32)
    rdf = _rdf(path)
    assert "onnx" not in rdf["weights"] and "torchscript" in rdf["weights"]
    assert rdf["config"]["napari_skd"]["onnx"].startswith("skipped: ONNX export failed (RuntimeError")
    assert "halo" not in rdf["outputs"][0]["axes"][2] and rdf["inputs"][0]["axes"][2]["size"]["min"] == 8
    with zipfile.ZipFile(path) as z:
        assert "weights.onnx" not in z.namelist()
        assert "operator not supported" in z.read("README.md").decode()


def test_existing_output_is_refused(tmp_path):
    out = tmp_path / "model.bioimageio.zip"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match="exists"):
        export_bioimageio(tmp_path / "whatever.pt", out)
    assert out.read_bytes() == b"keep me"


def test_bad_checkpoint_gives_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        export_bioimageio(tmp_path / "missing.pt", tmp_path / "out.zip")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        export_bioimageio(tmp_path / "junk.pt", tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"output": "model.tif"}, r"\.zip"),
        ({"test_size": 60}, "multiple of 8"),
        ({"test_size": 48, "halo": 24}, "at least 56"),
        ({"halo": -1}, "halo"),
        ({"name": "bad/name"}, "invalid package name"),
        ({"authors": [{"name": "A", "github_user": "a"}]}, "github_user"),
        ({"license": "not-a-licence"}, "SPDX"),
    ],
)
def test_bad_arguments_are_explained(tmp_path, kwargs, message):
    model = untrained("unet-xs")
    ck = Checkpoint(model=model, config=model.config, role="student")
    output = tmp_path / kwargs.pop("output", "out.zip")
    with pytest.raises(InputError, match=message):
        export_bioimageio(ck, output, **kwargs)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="cannot write to the folder"):
        export_bioimageio(tmp_path / "missing.pt", tmp_path / "file" / "out.zip")


def test_missing_bioimageio_spec_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(InputError, match=r"install the export extra"):
        export_bioimageio(tmp_path / "model.pt", tmp_path / "out.zip")


def test_test_image_and_cover_for_rgb(tmp_path):
    model = untrained("unet-xs", in_channels=3, out_channels=3, spatial_dims=3)
    ck = Checkpoint(model=model, config=model.config, role="student", norm=Normalization(low=-1000, high=2000))
    image, source = make_test_input(ck, 16)
    assert image.shape == (1, 3, 16, 16, 16) and image.dtype == np.float32 and "random" in source
    assert np.percentile(image, 1) == pytest.approx(-1000, abs=1) and np.percentile(image, 99.8) == pytest.approx(2000)
    write_cover(image, image, tmp_path / "cover.png")
    from PIL import Image

    assert Image.open(tmp_path / "cover.png").size == (512, 256)


def test_paths_are_withheld_wherever_the_record_names_files():
    record = {"data": {"degraded": ["a.tif", "b.tif"], "clean": "c/*.tif", "unlabelled": "<array>", "axes": "ZYX"},
              "teacher_path": "/clinic/patient-042/teacher.pt", "metrics": {"psnr": 30.0}, "steps": 5}  # fmt: skip
    out = withhold_paths(record)
    assert out["data"] == {"degraded": "<2 paths withheld: export with include_paths to keep file names>",
                           "clean": WITHHELD, "unlabelled": "<array>", "axes": "ZYX"}  # fmt: skip
    assert out["teacher_path"] == WITHHELD and out["metrics"] == {"psnr": 30.0} and out["steps"] == 5
    assert record["data"]["clean"] == "c/*.tif"  # the checkpoint's own record is not changed
