"""bioimage.io export with a chosen test image, stage progress and Stop (what the Models widget relies on)."""

import io
import threading
import zipfile

import numpy as np
import pytest

from napari_skd.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from napari_skd.errors import InputError
from napari_skd.export import check_package, export_bioimageio
from napari_skd.export.docs import crop_test_image
from napari_skd.io import open_image
from napari_skd.models import build_model
from napari_skd.normalize import Normalization


@pytest.fixture
def student(tmp_path):
    norm = Normalization(low=5.0, high=300.0)
    return load_checkpoint(save_checkpoint(tmp_path / "s.pt", build_model("student-tiny"), role="student", norm=norm))


def test_the_test_input_is_the_images_centre_crop_in_its_own_units(tmp_path, student):
    image = np.random.default_rng(1).uniform(5, 300, (3, 100, 90)).astype(np.float32)  # a ZYX stack, 2D model
    events = []
    path = export_bioimageio(student, tmp_path / "p.zip", test_image=open_image(image, axes="ZYX"), onnx=False,
                             progress=events.append)  # fmt: skip
    assert check_package(path)["torchscript"] < 1e-3
    with zipfile.ZipFile(path) as z:
        test_input = np.load(io.BytesIO(z.read("test_input.npy")))
        readme = z.read("README.md").decode()
    np.testing.assert_array_equal(test_input, image[None, None, 1, 18:82, 13:77])  # middle Z, centre 64 x 64
    assert "crop of the image chosen at export" in readme
    assert [e.step for e in events] == [0, 1, 2, 3, 4] and {e.total for e in events} == {4}
    assert all(e.phase == "prepare" and e.message for e in events)


@pytest.mark.parametrize(
    ("shape", "axes", "dims", "message"),
    [
        ((40, 200), "YX", 2, "too small (Y 40 pixels)"),
        ((2, 80, 80), "CYX", 2, "has 2 channel(s)"),
        ((80, 80), "YX", 3, "has no Z axis"),
    ],
)
def test_unusable_test_images_are_explained(shape, axes, dims, message):
    model = build_model("unet-xs", spatial_dims=dims)
    ck = Checkpoint(model=model, config=model.config, role="student")
    with pytest.raises(InputError, match="test image") as err:
        crop_test_image(ck, 64 if dims == 2 else 32, open_image(np.ones(shape), axes=axes))
    assert message in str(err.value) and "choose" in str(err.value)


def test_stop_between_stages_writes_nothing(tmp_path, student):
    cancel, events = threading.Event(), []

    def progress(e):
        events.append(e)
        if e.step == 1:
            cancel.set()

    output = tmp_path / "p.zip"
    assert export_bioimageio(student, output, onnx=False, progress=progress, cancel=cancel) is None
    assert not output.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["s.pt"]  # no temporary file left
    assert events[-1].phase == "stopped" and "nothing written" in events[-1].message
