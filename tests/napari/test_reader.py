"""The npe2 reader: NIfTI, DICOM and OME-Zarr open as lazy layers with their spacing, origin and channel names;
paths it cannot read are left to other readers."""

from pathlib import Path

import dask.array as da
import nibabel as nib
import numpy as np
import pydicom
import pytest
import zarr
from npe2 import PluginManifest

from napari_skd._napari._reader import napari_get_reader
from napari_skd.errors import InputError
from napari_skd.io.writers import create_ome_zarr

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_data"
NIFTI = SAMPLES / "mri_t1_mni152.nii.gz"
DICOM = SAMPLES / "ct_dicom"


def read(path) -> list[tuple]:
    reader = napari_get_reader(str(path))
    assert reader is not None, f"napari-skd does not claim {path}"
    return reader(str(path))


def dicom_origin(ds) -> tuple[float, float, float]:
    """The first voxel's position along the slice normal, the columns and the rows (Z, Y, X), from the header."""
    o = np.array([float(v) for v in ds.ImageOrientationPatient])
    row, col = o[:3], o[3:]
    p = np.array([float(v) for v in ds.ImagePositionPatient])
    return float(p @ np.cross(row, col)), float(p @ col), float(p @ row)


def test_manifest_declares_the_reader():
    manifest = PluginManifest.from_file(ROOT / "src" / "napari_skd" / "napari.yaml")
    (reader,) = manifest.contributions.readers
    assert reader.accepts_directories
    assert {"*.nii", "*.nii.gz", "*.dcm", "*.zarr"} <= set(reader.filename_patterns)
    assert not any("tif" in p or p == "*" for p in reader.filename_patterns)  # TIFF stays with napari
    (command,) = [c for c in manifest.contributions.commands if c.id == reader.command]
    assert command.python_name == "napari_skd._napari._reader:napari_get_reader"


def test_nifti_sample_opens_with_its_voxel_size_origin_and_affine():
    header = nib.load(NIFTI)
    (layer,) = read(NIFTI)
    data, kwargs, kind = layer
    assert kind == "image" and isinstance(data, da.Array)  # lazy: nothing read yet
    assert data.shape == header.shape[::-1]  # nibabel's X, Y, Z as napari's Z, Y, X
    np.testing.assert_allclose(kwargs["scale"], header.header.get_zooms()[::-1])
    np.testing.assert_allclose(kwargs["translate"], header.affine[:3, 3][::-1])
    meta = kwargs["metadata"]["napari_skd"]
    np.testing.assert_allclose(meta["affine"], header.affine)
    assert meta["axes"] == "ZYX" and meta["units"] == dict.fromkeys("ZYX", "millimeter")
    assert kwargs["units"] == ("millimeter",) * 3
    assert kwargs["name"] == "mri_t1_mni152"
    np.testing.assert_array_equal(np.asarray(data[90]), np.asarray(header.dataobj)[:, :, 90].T)


@pytest.mark.parametrize("path", [DICOM, DICOM / "CT_small.dcm"], ids=["folder", "file"])
def test_dicom_sample_opens_with_its_pixel_spacing_origin_and_hounsfield_units(path):
    ds = pydicom.dcmread(DICOM / "CT_small.dcm")
    ((data, kwargs, _),) = read(path)
    assert isinstance(data, da.Array) and data.shape == (ds.Rows, ds.Columns)
    np.testing.assert_allclose(kwargs["scale"], [float(v) for v in ds.PixelSpacing])
    np.testing.assert_allclose(kwargs["translate"], dicom_origin(ds)[1:])
    assert kwargs["metadata"]["napari_skd"]["intensity_unit"] == "HU"
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(np.asarray(data), hu)


def test_dicom_series_folder_opens_as_a_volume_in_slice_order(tmp_path):
    ds = pydicom.dcmread(DICOM / "CT_small.dcm")
    normal = np.cross(*np.reshape([float(v) for v in ds.ImageOrientationPatient], (2, 3)))
    step = 2.5
    series = tmp_path / "series"  # a folder name without an extension, as PACS exports are
    series.mkdir()
    for k, file in zip([2, 0, 1], ["a.dcm", "b.dcm", "c.dcm"], strict=True):  # file names not in slice order
        s = pydicom.dcmread(DICOM / "CT_small.dcm")
        s.ImagePositionPatient = [float(v) + k * step * n for v, n in zip(ds.ImagePositionPatient, normal, strict=True)]
        s.PixelData = (s.pixel_array + 100 * k).astype(s.pixel_array.dtype).tobytes()
        s.save_as(series / file)
    ((data, kwargs, _),) = read(series)
    assert data.shape == (3, ds.Rows, ds.Columns)
    np.testing.assert_allclose(kwargs["scale"], [step, *(float(v) for v in ds.PixelSpacing)])
    np.testing.assert_allclose(kwargs["translate"], dicom_origin(ds))
    means = np.asarray(data.mean(axis=(1, 2)))
    np.testing.assert_allclose(np.diff(means), [100, 100])


def test_four_dimensional_nifti_keeps_time_unscaled(tmp_path):
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = [10.0, 20.0, 30.0]
    img = nib.Nifti1Image(np.arange(5 * 6 * 7 * 2, dtype=np.int16).reshape(5, 6, 7, 2), affine)
    img.header.set_zooms((2.0, 3.0, 4.0, 0.5))
    nib.save(img, tmp_path / "bold.nii")
    ((data, kwargs, _),) = read(tmp_path / "bold.nii")
    assert data.shape == (2, 7, 6, 5) and kwargs["metadata"]["napari_skd"]["axes"] == "TZYX"
    np.testing.assert_allclose(kwargs["scale"], [1.0, 4.0, 3.0, 2.0])
    np.testing.assert_allclose(kwargs["translate"], [0.0, 30.0, 20.0, 10.0])
    assert kwargs["units"] == (None, "millimeter", "millimeter", "millimeter")  # None: napari's pixels


def channel_store(path: Path) -> np.ndarray:
    """A 2-channel ZYX OME-Zarr written by napari-skd's writer; returns its pixels (CZYX)."""
    values = np.arange(2 * 4 * 6 * 8, dtype=np.uint16).reshape(2, 4, 6, 8)
    array = create_ome_zarr(
        path,
        shape=values.shape,
        dtype=values.dtype,
        chunks=(1, 2, 6, 8),
        axes="CZYX",
        scale={"Z": 2.0, "Y": 0.5, "X": 0.25},
        units=dict.fromkeys("ZYX", "micrometer"),
        translation={"Z": 1.0, "Y": -3.0, "X": 7.5},
        channels=[{"label": "DAPI", "color": "0000FF"}, {"label": "GFP", "color": "00FF00"}],
    )
    array[...] = values
    return values


def test_ome_zarr_channels_become_named_layers_with_scale_and_translate(tmp_path):
    values = channel_store(tmp_path / "cells.ome.zarr")
    ((data, kwargs, kind),) = read(tmp_path / "cells.ome.zarr")
    assert kind == "image" and isinstance(data, da.Array)
    assert kwargs["channel_axis"] == 0 and kwargs["name"] == ["DAPI", "GFP"]
    assert kwargs["scale"] == (2.0, 0.5, 0.25) and kwargs["translate"] == (1.0, -3.0, 7.5)
    assert kwargs["colormap"] == ["#0000FF", "#00FF00"]
    assert [m["napari_skd"]["channel"]["label"] for m in kwargs["metadata"]] == ["DAPI", "GFP"]
    np.testing.assert_array_equal(np.asarray(data), values)


def test_rgb_ome_zarr_opens_as_one_rgb_layer(tmp_path):
    values = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    array = create_ome_zarr(tmp_path / "photo.zarr", shape=values.shape, dtype="uint8", chunks=values.shape, axes="YXC")
    array[...] = values
    ((data, kwargs, _),) = read(tmp_path / "photo.zarr")
    assert kwargs["rgb"] is True and "channel_axis" not in kwargs
    np.testing.assert_array_equal(np.asarray(data), values)


def test_paths_it_cannot_read_are_left_to_other_readers(tmp_path):
    zarr.create_array(str(tmp_path / "plain.zarr"), shape=(4, 4), dtype="uint8")  # a zarr array, not OME
    zarr.open_group(str(tmp_path / "group.zarr"), mode="w").create_array("a", shape=(4, 4), dtype="uint8")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not an image")
    (tmp_path / "broken.zarr").mkdir()
    for path in ["plain.zarr", "group.zarr", "notes", "broken.zarr"]:
        assert napari_get_reader(str(tmp_path / path)) is None, path
    assert napari_get_reader(str(SAMPLES / "cell.tif")) is None
    assert napari_get_reader([str(NIFTI), str(NIFTI)]) is None  # a stack of files: not ours


def test_a_damaged_file_it_claimed_raises_a_clear_error(tmp_path):
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(b"not a nifti file at all")
    reader = napari_get_reader(str(bad))
    assert reader is not None
    with pytest.raises(InputError, match=r"cannot read the NIfTI file .*scan\.nii\.gz"):
        reader(str(bad))


def test_viewer_opens_nifti_and_ome_zarr_with_the_plugin(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    header = nib.load(NIFTI)
    (mri,) = viewer.open(str(NIFTI), plugin="napari-skd")
    np.testing.assert_allclose(mri.scale, header.header.get_zooms()[::-1])
    np.testing.assert_allclose(mri.translate, header.affine[:3, 3][::-1])
    assert [str(u) for u in mri.units] == ["millimeter"] * 3

    channel_store(tmp_path / "cells.ome.zarr")
    layers = viewer.open(str(tmp_path / "cells.ome.zarr"), plugin="napari-skd")
    assert [layer.name for layer in layers] == ["DAPI", "GFP"]
    for layer in layers:
        np.testing.assert_allclose(layer.scale, [2.0, 0.5, 0.25])
        np.testing.assert_allclose(layer.translate, [1.0, -3.0, 7.5])
        assert [str(u) for u in layer.units] == ["micrometer"] * 3
    assert layers[1].metadata["napari_skd"]["channel"] == {"label": "GFP", "color": "00FF00", "index": 1}
