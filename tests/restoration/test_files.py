"""Outputs by name: OME-TIFF and NIfTI files for results that fit in memory (atomic, marked as ours, skipped only for
the same job), and geometry kept: NIfTI affine and origin, DICOM position, OME channel names and colours."""

import re
import threading

import nibabel
import numpy as np
import pytest
import tifffile
import zarr

from conftest import file_digest, untrained
from napari_skd import restore
from napari_skd.checkpoint import save_checkpoint
from napari_skd.errors import InputError
from napari_skd.io import open_image
from napari_skd.io.writers import create_ome_zarr
from napari_skd.normalize import Normalization
from napari_skd.restoration.job import run_restore_job

GRID = dict(tile=16, overlap=4, chunks=16)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    model = untrained("unet-xs")
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "s.pt", model, norm=Normalization(low=0, high=255))


@pytest.fixture
def image(tmp_path):
    data = (np.random.default_rng(0).random((3, 40, 48)) * 255).astype(np.float32)
    path = tmp_path / "in.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                                                     "PhysicalSizeZ": 2.0})  # fmt: skip
    return path


def test_a_tif_name_writes_an_ome_tiff_with_the_voxel_size(image, ckpt, tmp_path):
    out = restore(image, ckpt, tmp_path / "out.tif", **GRID)
    written = open_image(out)
    assert written.axes == "ZYX" and written.scale == {"Z": 2.0, "Y": 0.5, "X": 0.5}
    np.testing.assert_array_equal(np.asarray(written.data), restore(image, ckpt, None, **GRID))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.tif", "out.tif"]  # no temporary file left


def test_an_ome_tiff_output_keeps_the_inputs_origin(ckpt, tmp_path):
    src = tmp_path / "in.ome.zarr"
    array = create_ome_zarr(src, shape=(3, 40, 48), dtype="float32", chunks=(1, 40, 48), axes="ZYX",
                            scale={"Z": 2.0, "Y": 0.5, "X": 0.5}, units={"Z": "micrometer", "Y": "micrometer",
                            "X": "micrometer"}, translation={"Z": -4.0, "Y": 10.0, "X": 20.5})  # fmt: skip
    array[:] = (np.random.default_rng(0).random((3, 40, 48)) * 255).astype(np.float32)
    written = open_image(restore(src, ckpt, tmp_path / "out.ome.tif", **GRID))
    assert written.translation == {"Z": -4.0, "Y": 10.0, "X": 20.5} and written.scale == {"Z": 2.0, "Y": 0.5, "X": 0.5}
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:  # every plane is placed, each Z plane one step further
        assert [float(v) for v in re.findall(r'PositionZ="([-\d.]+)"', tif.ome_metadata)] == [-4.0, -2.0, 0.0]


def test_a_file_output_is_skipped_only_for_the_same_job_and_replaced_only_when_ours(image, ckpt, tmp_path):
    out = tmp_path / "out.tif"
    job = {"input": [str(image)], "checkpoint": str(ckpt), "output": str(out), **GRID}
    assert [o.status for o in run_restore_job(job)] == ["restored"]
    before = file_digest(out)
    assert [(o.status, o.reason) for o in run_restore_job(job)] == [("skipped", "already complete")]
    with pytest.raises(InputError, match="different job"):  # another tile size: a stale result is never passed off
        run_restore_job(job | {"tile": 24})
    assert file_digest(out) == before
    assert [o.status for o in run_restore_job(job | {"tile": 24, "overwrite": True})] == ["restored"]
    foreign = tmp_path / "foreign.tif"
    tifffile.imwrite(foreign, np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="not written by napari-skd"):
        restore(image, ckpt, foreign, overwrite=True, **GRID)
    assert np.asarray(tifffile.imread(foreign)).sum() == 0


def test_a_stopped_file_restore_writes_nothing(image, ckpt, tmp_path):
    cancel = threading.Event()

    def stop_after_first(event):
        if event.phase == "restore" and event.step >= 1:
            cancel.set()

    out = restore(image, ckpt, tmp_path / "out.nii.gz", progress=stop_after_first, cancel=cancel, **GRID)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.tif"]


def test_a_nifti_output_keeps_the_input_affine(ckpt, tmp_path):
    affine = np.array([[-0.8, 0, 0, 90.0], [0, 0.9, 0, -120.0], [0, 0, 2.5, -60.0], [0, 0, 0, 1]])
    volume = (np.random.default_rng(1).random((24, 20, 4)) * 255).astype(np.float32)  # X, Y, Z
    src = tmp_path / "in.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, affine), str(src))
    image = open_image(src)
    assert image.axes == "ZYX" and image.translation == {"Z": -60.0, "Y": -120.0, "X": 90.0}
    out = restore(src, ckpt, tmp_path / "out.nii.gz", **GRID)
    written = nibabel.load(str(out))
    np.testing.assert_allclose(written.affine, affine)
    np.testing.assert_allclose(written.get_fdata(), restore(src, ckpt, None, **GRID).transpose(2, 1, 0), rtol=1e-6)


def test_dicom_position_becomes_the_translation():
    image = open_image("sample_data/ct_dicom")
    assert image.translation == pytest.approx({"Y": -179.035797, "X": -158.135803})  # ImagePositionPatient, mm


def test_ome_channel_names_and_colours_go_through_restore(ckpt, tmp_path):
    two = save_checkpoint(tmp_path / "two.pt", untrained("unet-xs", in_channels=2, out_channels=2))
    src = tmp_path / "in.ome.zarr"
    channels = [{"label": "DAPI", "color": "0000FF"}, {"label": "GFP", "color": "00FF00"}]
    array = create_ome_zarr(src, shape=(2, 32, 32), dtype="float32", chunks=(1, 32, 32), axes="CYX", channels=channels)
    array[:] = np.random.default_rng(2).random((2, 32, 32)).astype(np.float32)
    assert open_image(src).channels == channels
    out = restore(src, two, tmp_path / "out.ome.zarr", **GRID)
    assert zarr.open_group(str(out)).attrs["ome"]["omero"]["channels"][1] == {"label": "GFP", "color": "00FF00"}
    assert open_image(out).channels[0]["label"] == "DAPI"
