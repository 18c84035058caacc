"""The lazy reader layer: every input kind, axes handling, laziness, and the errors users see."""

import logging
import shutil
import sys
import tempfile
from pathlib import Path

import dask.array as da
import nibabel
import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tifffile.zarr import ZarrTiffStore

from conftest import file_digest
from napari_skd.axes import AXES_LETTERS, canonical_order, resolve_axes, validate_axes
from napari_skd.errors import InputError
from napari_skd.io import Image, expand_sources, open_image
from napari_skd.samples import sample_dir

RNG = np.random.default_rng(0)
VOLUME = RNG.integers(0, 4000, (5, 32, 48), dtype=np.uint16)
CT_FILE = sample_dir() / "ct_dicom" / "CT_small.dcm"


# ---------------------------------------------------------------- axes


def test_validate_axes_upper_cases_and_accepts_any_order():
    assert validate_axes("zyx", 3) == "ZYX"
    assert validate_axes("YXC", 3) == "YXC"
    assert AXES_LETTERS == "TCZYX"


@pytest.mark.parametrize(
    ("axes", "ndim", "expected"),
    [
        ("ZYX", 2, ["3 letter", "2 dimension", "'YX'"]),
        ("ZQX", 3, ["unknown letter", "Q", "T, C, Z, Y, X"]),
        ("ZZYX", 4, ["repeats Z"]),
        ("CZY", 3, ["lacks X", "Y and an X"]),
        ("TCZ", 3, ["lacks Y and X"]),
    ],
)
def test_validate_axes_explains_what_is_wrong(axes, ndim, expected):
    with pytest.raises(InputError) as info:
        validate_axes(axes, ndim)
    for text in expected:
        assert text in str(info.value)


def test_resolve_axes_prefers_explicit_then_metadata_and_only_guesses_2d():
    assert resolve_axes((5, 64, 64), "cyx", metadata_axes="ZYX") == "CYX"
    assert resolve_axes((5, 64, 64), metadata_axes="ZYX") == "ZYX"
    assert resolve_axes((64, 64)) == "YX"
    with pytest.raises(InputError, match="metadata cannot be used.*pass axes"):
        resolve_axes((5, 64, 64), metadata_axes="YX")


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (
            (5, 64, 64),
            "a 3-D image of shape (5, 64, 64) is ambiguous: pass axes, e.g. 'ZYX' (a volume), "
            "'CYX' (channels) or 'TYX' (a time series)",
        ),
        ((2, 5, 64, 64), "'CZYX'"),
        ((2, 2, 5, 64, 64), "'TCZYX'"),
        ((64,), "not an image"),
        ((1, 1, 1, 1, 1, 1), "more dimensions"),
    ],
)
def test_ambiguous_shapes_name_the_choices(shape, expected):
    with pytest.raises(InputError) as info:
        resolve_axes(shape)
    assert expected in str(info.value)


def test_canonical_order_sorts_into_tczyx():
    assert canonical_order("YXC") == (2, 0, 1)
    assert canonical_order("ZCYX") == (1, 0, 2, 3)
    assert canonical_order("XYT") == (2, 1, 0)
    img = Image(da.zeros((4, 5, 3)), "YXC", scale={"Y": 0.5, "X": 0.5})
    canon = img.to_canonical()
    assert canon.axes == "CYX" and canon.shape == (3, 4, 5) and canon.scale == img.scale
    assert isinstance(canon.data, da.Array)


# ---------------------------------------------------------------- arrays


def test_numpy_array_opens_lazily_without_copying_the_input():
    img = open_image(VOLUME, axes="ZYX")
    assert isinstance(img.data, da.Array) and img.axes == "ZYX" and img.source == "<array>"
    np.testing.assert_array_equal(img.data.compute(), VOLUME)
    assert open_image(VOLUME[0]).axes == "YX"


def test_dask_array_is_kept_as_is():
    data = da.from_array(VOLUME, chunks=(1, 16, 16))
    img = open_image(data, axes="tyx")
    assert img.data is data and img.axes == "TYX" and img.scale == {}


def test_zarr_array_object_opens():
    array = zarr.create_array(store=zarr.storage.MemoryStore(), shape=VOLUME.shape, chunks=(1, 32, 48), dtype="u2")
    array[:] = VOLUME
    img = open_image(array, axes="ZYX")
    assert img.data.chunksize == (1, 32, 48)
    np.testing.assert_array_equal(img.data.compute(), VOLUME)


def test_image_can_be_reopened_with_other_axes():
    img = open_image(VOLUME, axes="ZYX")
    img.scale = {"Z": 2.0, "Y": 0.5, "X": 0.5}
    again = open_image(img, axes="TYX")
    assert again.axes == "TYX" and again.scale == {"Y": 0.5, "X": 0.5}


# ---------------------------------------------------------------- TIFF


def test_plain_tiff_2d_and_3d(tmp_path):
    tifffile.imwrite(tmp_path / "plane.tif", VOLUME[0])
    tifffile.imwrite(tmp_path / "stack.tiff", VOLUME, compression="zlib")
    plane = open_image(tmp_path / "plane.tif")
    assert plane.axes == "YX" and plane.name == "plane" and plane.source == str(tmp_path / "plane.tif")
    np.testing.assert_array_equal(plane.data.compute(), VOLUME[0])
    with pytest.raises(InputError, match=r"3-D image of shape \(5, 32, 48\) is ambiguous: pass axes"):
        open_image(tmp_path / "stack.tiff")
    np.testing.assert_array_equal(open_image(tmp_path / "stack.tiff", axes="ZYX").data.compute(), VOLUME)


def test_ome_tiff_axes_and_pixel_size_come_from_metadata(tmp_path):
    data = RNG.integers(0, 255, (2, 3, 16, 24), dtype=np.uint8)
    meta = {"axes": "CZYX", "PhysicalSizeZ": 2.0, "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.25}
    tifffile.imwrite(tmp_path / "cells.ome.tif", data, metadata=meta)
    img = open_image(tmp_path / "cells.ome.tif")
    assert img.axes == "CZYX" and img.name == "cells"
    assert img.scale == {"Z": 2.0, "Y": 0.5, "X": 0.25}
    assert img.units == {"Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
    np.testing.assert_array_equal(img.to_canonical().data.compute(), data)


def test_imagej_hyperstack_axes_and_calibration(tmp_path):
    data = RNG.integers(0, 255, (3, 2, 16, 24), dtype=np.uint8)
    meta = {"axes": "ZCYX", "unit": "um", "spacing": 2.5}
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, metadata=meta, resolution=(1 / 0.3, 1 / 0.3))
    img = open_image(tmp_path / "ij.tif")
    assert img.axes == "ZCYX" and img.scale == pytest.approx({"Z": 2.5, "Y": 0.3, "X": 0.3})
    assert img.units["X"] == "micrometer"


def test_rgb_tiff_samples_become_channels(tmp_path):
    rgb = RNG.integers(0, 255, (16, 24, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    img = open_image(tmp_path / "rgb.tif")
    assert img.axes == "YXC" and img.to_canonical().shape == (3, 16, 24)


def test_tiff_is_read_lazily_one_page_at_a_time(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "big.tif", VOLUME)
    reads = []
    original = ZarrTiffStore.get

    async def counting_get(self, key, *args, **kwargs):
        if not key.endswith(("zarr.json", ".zarray", ".zattrs", ".zgroup")):
            reads.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(ZarrTiffStore, "get", counting_get)
    img = open_image(tmp_path / "big.tif", axes="ZYX")
    assert isinstance(img.data, da.Array) and reads == []  # opening reads no pixels
    np.testing.assert_array_equal(img.data[3, :4, :4].compute(), VOLUME[3, :4, :4])
    assert 0 < len(reads) < VOLUME.shape[0]  # a small slice reads only its own page


# ---------------------------------------------------------------- zarr and OME-Zarr


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_plain_zarr_arrays(tmp_path, zarr_format):
    path = tmp_path / f"v{zarr_format}.zarr"
    array = zarr.create_array(store=path, shape=VOLUME.shape, chunks=(1, 16, 16), dtype="u2", zarr_format=zarr_format)
    array[:] = VOLUME
    img = open_image(path, axes="ZYX")
    assert img.axes == "ZYX" and img.name == f"v{zarr_format}" and img.data.chunksize == (1, 16, 16)
    np.testing.assert_array_equal(img.data.compute(), VOLUME)


def _write_ome_zarr(path, data, axes, scale, version):
    """A two-level OME-Zarr written by hand: level 1 halves Y and X."""
    group = zarr.open_group(path, mode="w", zarr_format=2 if version == "0.4" else 3)
    kinds = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
    axes_meta = [{"name": a.lower(), "type": kinds[a]} | ({"unit": "micrometer"} if a in "ZYX" else {}) for a in axes]
    datasets = []
    for level in (0, 1):
        level_scale = [s * 2**level if a in "YX" else s for s, a in zip(scale, axes, strict=True)]
        translation = [0.0] * (len(axes) - 1) + [3.0]
        transforms = [{"type": "scale", "scale": level_scale}, {"type": "translation", "translation": translation}]
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
        chunks = (1,) * (data.ndim - 2) + (16, 16)
        group.create_array(str(level), data=data[..., :: 2**level, :: 2**level], chunks=chunks)
    multiscales = [{"axes": axes_meta, "datasets": datasets}]
    if version == "0.4":
        group.attrs["multiscales"] = [{"version": "0.4", **multiscales[0]}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}


def test_ome_zarr_04_level0_axes_scale_units_translation(tmp_path):
    path = tmp_path / "cells.ome.zarr"
    _write_ome_zarr(path, VOLUME, "ZYX", [2.0, 0.5, 0.5], "0.4")
    assert (path / ".zattrs").exists()
    img = open_image(path)
    assert img.axes == "ZYX" and img.shape == VOLUME.shape and img.name == "cells"
    assert img.scale == {"Z": 2.0, "Y": 0.5, "X": 0.5}
    assert img.units == {"Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
    assert img.translation == {"Z": 0.0, "Y": 0.0, "X": 3.0}
    np.testing.assert_array_equal(img.data.compute(), VOLUME)
    relabelled = open_image(path, axes="TYX")  # explicit axes win; Z's size does not move to T
    assert relabelled.axes == "TYX" and relabelled.scale == {"Y": 0.5, "X": 0.5}


def test_ome_zarr_05_reads_metadata_under_ome(tmp_path):
    data = RNG.integers(0, 255, (2, 32, 32), dtype=np.uint8)
    path = tmp_path / "two.zarr"
    _write_ome_zarr(path, data, "CYX", [1.0, 0.3, 0.3], "0.5")
    assert (path / "zarr.json").exists()
    img = open_image(path)
    assert img.axes == "CYX" and img.scale == {"Y": 0.3, "X": 0.3}
    np.testing.assert_array_equal(img.data.compute(), data)


# ---------------------------------------------------------------- NIfTI


def test_nifti_is_zyx_with_voxel_size(tmp_path):
    nib = pytest.importorskip("nibabel")
    xyz = RNG.integers(0, 1000, (20, 24, 16), dtype=np.int16)
    image = nib.Nifti1Image(xyz, np.diag([0.5, 0.75, 2.0, 1.0]))
    image.header.set_xyzt_units("mm")
    nib.save(image, tmp_path / "head.nii.gz")
    img = open_image(tmp_path / "head.nii.gz")
    assert img.axes == "ZYX" and img.shape == (16, 24, 20) and img.name == "head"
    assert img.scale == {"Z": 2.0, "Y": 0.75, "X": 0.5}
    assert img.units == {"Z": "millimeter", "Y": "millimeter", "X": "millimeter"}
    np.testing.assert_array_equal(img.data.compute(), xyz.transpose(2, 1, 0))


def test_nifti_4d_is_tzyx_and_scaling_is_applied(tmp_path):
    nib = pytest.importorskip("nibabel")
    xyzt = RNG.integers(0, 100, (16, 18, 4, 3), dtype=np.int16)
    image = nib.Nifti1Image(xyzt, np.eye(4))
    image.header.set_slope_inter(2.0, 10.0)
    nib.save(image, tmp_path / "fmri.nii")
    img = open_image(tmp_path / "fmri.nii")
    assert img.axes == "TZYX" and img.shape == (3, 4, 18, 16) and img.data.dtype == np.float32
    np.testing.assert_allclose(img.data.compute(), xyzt.transpose(3, 2, 1, 0) * 2.0 + 10.0)


# ---------------------------------------------------------------- DICOM


def _write_ct_slice(path, pixels, z, instance, syntax, series_uid="1.2.3.4"):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "CT", series_uid, instance
    ds.ImagePositionPatient = [-10.0, -20.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [0.8, 0.6], 3.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def ct_series(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    raw = RNG.integers(0, 2000, (3, 16, 24), dtype=np.uint16)
    folder = tmp_path / "ct"
    folder.mkdir()
    syntaxes = [pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian] * 2
    # File names and instance numbers run against the slice positions: sorting must follow the positions.
    for k, z in enumerate([10.0, 12.5, 15.0]):
        _write_ct_slice(folder / f"slice{2 - k}.dcm", raw[k], z, instance=3 - k, syntax=syntaxes[k])
    return folder, raw


def test_dicom_series_in_hounsfield_units_with_slice_spacing(ct_series):
    folder, raw = ct_series
    img = open_image(folder)
    assert img.axes == "ZYX" and img.shape == (3, 16, 24) and img.name == "ct"
    assert img.intensity_unit == "HU" and img.data.dtype == np.float32
    assert img.scale == {"Z": 2.5, "Y": 0.8, "X": 0.6} and img.units["Z"] == "millimeter"
    np.testing.assert_array_equal(img.data.compute(), raw.astype(np.float32) - 1024)


def test_single_dicom_file_is_yx(ct_series):
    folder, raw = ct_series
    img = open_image(folder / "slice0.dcm")
    assert img.axes == "YX" and img.scale == {"Y": 0.8, "X": 0.6}
    np.testing.assert_array_equal(img.data.compute(), raw[2].astype(np.float32) - 1024)


def test_dicom_folder_with_two_series_is_refused(ct_series):
    folder, raw = ct_series
    _write_ct_slice(folder / "other.dcm", raw[0], 0.0, 1, "1.2.840.10008.1.2", series_uid="9.9")
    with pytest.raises(InputError, match="2 DICOM series"):
        open_image(folder)


def test_damaged_dicom_pixels_raise_input_error_when_read(ct_series):
    folder, _ = ct_series
    path = folder / "slice1.dcm"
    path.write_bytes(path.read_bytes()[:-100])  # pixel data shorter than Rows x Columns
    img = open_image(folder)
    with pytest.raises(InputError, match="cannot decode the pixels"):
        img.data.compute()


# ---------------------------------------------------------------- shipped samples


def test_sample_mri_is_zyx_in_millimetres():
    img = open_image(sample_dir() / "mri_t1_mni152.nii.gz")
    assert img.axes == "ZYX" and img.shape == (189, 233, 197)
    assert img.scale == {"Z": 1.0, "Y": 1.0, "X": 1.0} and img.units["Z"] == "millimeter"


def test_sample_ct_is_yx_in_hounsfield_units():
    img = open_image(sample_dir() / "ct_dicom")
    assert img.axes == "YX" and img.intensity_unit == "HU" and img.shape == (128, 128)
    assert img.scale == pytest.approx({"Y": 0.661468, "X": 0.661468})
    pixels = img.data.compute()
    assert pixels.min() < -500 < 500 < pixels.max()


# ---------------------------------------------------------------- errors


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="file not found: .*nothing.tif"):
        open_image(tmp_path / "nothing.tif")


def test_folder_that_is_no_image(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="neither a zarr store nor a DICOM series"):
        open_image(tmp_path)


def test_unknown_extension_lists_supported_ones(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG....")
    with pytest.raises(InputError) as info:
        open_image(tmp_path / "photo.png")
    assert "unsupported file type" in str(info.value)
    for ext in (".tif", ".zarr", ".nii.gz", "DICOM"):
        assert ext in str(info.value)


def test_foreign_bytes_named_tif(tmp_path):
    (tmp_path / "fake.tif").write_bytes(b"this is not a TIFF file at all" * 10)
    with pytest.raises(InputError, match="cannot read the TIFF file"):
        open_image(tmp_path / "fake.tif")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
@pytest.mark.parametrize("options", [{}, {"compression": "zlib"}, {"metadata": None}, {"ome": True}])
def test_truncated_tiff_is_refused_not_silently_shortened(tmp_path, keep, options):
    tifffile.imwrite(tmp_path / "full.tif", VOLUME, **options)
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError) as info:
        open_image(tmp_path / "cut.tif", axes="ZYX").data.compute()
    assert "truncated" in str(info.value)


def test_corrupt_compressed_tiff_pixels_raise_input_error_when_read(tmp_path):
    path = tmp_path / "bad.tif"
    tifffile.imwrite(path, VOLUME, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[2].dataoffsets[0]
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    img = open_image(path, axes="ZYX")  # opening is lazy: only reading the damaged page fails
    np.testing.assert_array_equal(img.data[0].compute(), VOLUME[0])
    with pytest.raises(InputError, match="cannot read pixels from .*bad.tif"):
        img.data[2].compute()


def test_zarr_with_broken_metadata(tmp_path):
    broken = tmp_path / "broken.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text("{ this is not json")
    with pytest.raises(InputError, match="cannot read the zarr store .*broken.zarr"):
        open_image(broken)
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    with pytest.raises(InputError, match="cannot read the zarr store"):
        open_image(empty)


def test_ome_zarr_with_malformed_multiscales(tmp_path):
    group = zarr.open_group(tmp_path / "bad.zarr", mode="w", zarr_format=2)
    group.attrs["multiscales"] = [{"axes": ["z", "y", "x"]}]  # no datasets
    group.create_array("0", data=VOLUME)
    with pytest.raises(InputError, match="OME-Zarr metadata .* is malformed"):
        open_image(tmp_path / "bad.zarr")


def test_zarr_group_with_several_arrays_names_them(tmp_path):
    group = zarr.open_group(tmp_path / "many.zarr", mode="w")
    group.create_array("raw", data=VOLUME)
    group.create_array("mask", data=VOLUME > 0)
    with pytest.raises(InputError, match=r"2 arrays \(mask, raw\)"):
        open_image(tmp_path / "many.zarr")
    assert open_image(tmp_path / "many.zarr" / "raw", axes="ZYX").shape == VOLUME.shape


@pytest.mark.parametrize(("module", "path"), [("nibabel", "mri_t1_mni152.nii.gz"), ("pydicom", "ct_dicom")])
def test_missing_medical_packages(monkeypatch, module, path):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(InputError, match=r"install the medical extra"):
        open_image(sample_dir() / path)


@pytest.mark.parametrize("dtype", [bool, np.complex64])
def test_boolean_and_complex_images_are_refused(dtype):
    with pytest.raises(InputError, match="convert to a real-valued image"):
        open_image(np.zeros((16, 16), dtype=dtype))


def test_empty_images_are_refused(tmp_path):
    with pytest.raises(InputError, match="zero-size axis"):
        open_image(np.zeros((0, 16)))
    zarr.create_array(store=tmp_path / "empty.zarr", shape=(3, 0, 16), dtype="f4")
    with pytest.raises(InputError, match="zero-size axis"):
        open_image(tmp_path / "empty.zarr", axes="ZYX")


def test_unsupported_object_type():
    with pytest.raises(InputError, match="cannot open an object of type list"):
        open_image([[1, 2], [3, 4]])


def test_reading_never_modifies_inputs(tmp_path, ct_series):
    folder, _ = ct_series
    tifffile.imwrite(tmp_path / "a.tif", VOLUME)
    _write_ome_zarr(tmp_path / "a.zarr", VOLUME, "ZYX", [1.0, 1.0, 1.0], "0.4")
    for path, axes in ((tmp_path / "a.tif", "ZYX"), (tmp_path / "a.zarr", None), (folder, None)):
        before = file_digest(path)
        open_image(path, axes=axes).data.compute()
        assert file_digest(path) == before


# ---------------------------------------------------------------- expand_sources


def test_expand_sources_single_list_glob_and_folder(tmp_path):
    for name in ("b.tif", "a.tif", "c.tiff"):
        tifffile.imwrite(tmp_path / name, VOLUME[0])
    (tmp_path / "notes.txt").write_text("skip me")
    zarr.create_array(store=tmp_path / "d.zarr", shape=(16, 16), dtype="u1")
    files = [str(tmp_path / n) for n in ("a.tif", "b.tif", "c.tiff")]
    assert expand_sources(tmp_path / "a.tif") == files[:1]
    assert expand_sources(str(tmp_path / "*.tif")) == files[:2]
    assert expand_sources(tmp_path) == [*files, str(tmp_path / "d.zarr")]
    assert expand_sources([tmp_path / "b.tif", VOLUME])[0] == files[1]
    assert expand_sources(tmp_path / "d.zarr") == [str(tmp_path / "d.zarr")]  # a store is one source


def test_expand_sources_keeps_arrays_and_dicom_folders(ct_series):
    folder, _ = ct_series
    sources = expand_sources([VOLUME, folder])
    assert sources[0] is VOLUME and sources[1] == str(folder)


def test_expand_sources_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder .*empty holds no supported images"):
        expand_sources(tmp_path / "empty")
    with pytest.raises(InputError, match=r"no supported images match '.*\*\.tif'"):
        expand_sources(str(tmp_path / "*.tif"))
    with pytest.raises(InputError, match="file not found"):
        expand_sources(tmp_path / "missing.tif")
    with pytest.raises(InputError, match="no input given"):
        expand_sources([])


# ---------------------------------------------------------------- robustness


def _small_tiff() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        tifffile.imwrite(
            Path(folder) / "t.tif",
            VOLUME[:3, :16, :16],
            compression="zlib",
            photometric="minisblack",
            metadata={"axes": "ZYX"},
        )
        return (Path(folder) / "t.tif").read_bytes()


SMALL_TIFF = _small_tiff()
mutated_tiffs = st.tuples(
    st.one_of(st.just(len(SMALL_TIFF)), st.integers(0, len(SMALL_TIFF))),  # kept whole or cut short
    st.lists(st.tuples(st.integers(0, len(SMALL_TIFF) - 1), st.binary(min_size=1, max_size=4)), max_size=4),
).map(lambda cut_edits: _mutate(SMALL_TIFF, *cut_edits))


def _mutate(data: bytes, cut: int, edits: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(data)
    for at, new in edits:
        out[at : at + len(new)] = new
    return bytes(out[:cut])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), st.binary(max_size=512).map(lambda b: b"II*\x00" + b), mutated_tiffs))
def test_any_bytes_named_tif_open_and_read_or_raise_input_error(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.tif"
        path.write_bytes(content)
        try:
            img = open_image(path)
            assert isinstance(img.data, da.Array) and img.data.size > 0
            img.data.compute()  # damage found only when pixels are read is an InputError too
        except InputError:
            pass


def test_a_mixed_folder_is_its_images_not_a_dicom_series(tmp_path, caplog):
    """3 TIFFs, a NIfTI, a DICOM file and a text file: five images, and the text file named as skipped."""
    for name in ("a.tif", "b.tif", "c.tif"):
        tifffile.imwrite(tmp_path / name, VOLUME[0])
    nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8, 2), np.float32), np.eye(4)), str(tmp_path / "d.nii.gz"))
    shutil.copy(CT_FILE, tmp_path / "e.dcm")
    (tmp_path / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="napari_skd"):
        sources = expand_sources(tmp_path)
    assert [Path(s).name for s in sources] == ["a.tif", "b.tif", "c.tif", "d.nii.gz", "e.dcm"]
    assert "skipped notes.txt (not an image napari-skd reads)" in caplog.text
    assert [open_image(s).shape for s in sources][3:] == [(2, 8, 8), (128, 128)]
    with pytest.raises(InputError, match="neither a zarr store nor a DICOM series"):
        open_image(tmp_path)
    series = tmp_path / "series"  # a folder whose images are all DICOM stays one series, whatever lies beside them
    series.mkdir()
    shutil.copy(CT_FILE, series / "1.dcm")
    (series / "README.txt").write_text("acquisition notes")
    assert expand_sources(series) == [str(series)] and open_image(series).shape == (128, 128)
