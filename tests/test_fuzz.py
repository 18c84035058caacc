"""Fuzzing: whatever the bytes of a file or the tiling options, napari-skd works or raises its own error.

Any exception that is not a :class:`SkdError` fails these tests: a user must never see a traceback from a damaged
file or an odd option. Inputs are drawn by hypothesis with a fixed seed (``derandomize``), so runs repeat exactly.
``tests/io/test_io.py`` already mutates a stripped TIFF; here: a tiled BigTIFF, NIfTI, DICOM, zarr
chunks and metadata, valid but odd images (1-pixel axes, int8 to float64), and the planner behind ``restore``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import untrained
from napari_skd import restore
from napari_skd.checkpoint import save_checkpoint
from napari_skd.errors import SkdError
from napari_skd.io import open_image
from napari_skd.restoration.options import RestoreOptions, resolve_options
from napari_skd.restoration.plan import plan_blocks

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
RNG = np.random.default_rng(11)
DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]


def read_or_refuse(path: Path, axes: str | None = None) -> np.ndarray | None:
    """The pixels of ``path``, or None when napari-skd refuses it with its own error; anything else propagates."""
    try:
        return np.asarray(open_image(path, axes).data.compute())
    except SkdError:
        return None


def mutations(template: bytes, max_edits: int = 6) -> st.SearchStrategy[bytes]:
    """``template`` cut short and/or with a few byte runs overwritten (most edits land in the header)."""
    n = len(template)
    head = min(n - 1, 512)
    edit = st.tuples(st.one_of(st.integers(0, head), st.integers(0, n - 1)), st.binary(min_size=1, max_size=8))
    cut = st.one_of(st.just(n), st.integers(0, n))

    def apply(args: tuple[int, list[tuple[int, bytes]]]) -> bytes:
        length, edits = args
        out = bytearray(template)
        for at, new in edits:
            out[at : at + len(new)] = new
        return bytes(out[:length])

    return st.tuples(cut, st.lists(edit, max_size=max_edits)).map(apply)


def _template(write) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write(Path(folder)).read_bytes()


def _tiff(folder: Path) -> Path:
    path = folder / "t.tif"
    data = RNG.integers(0, 4000, (2, 32, 32), dtype=np.uint16)
    tifffile.imwrite(path, data, bigtiff=True, tile=(16, 16), compression="zlib", photometric="minisblack")
    return path


def _nifti(folder: Path) -> Path:
    import nibabel as nib

    path = folder / "t.nii"
    nib.save(nib.Nifti1Image(RNG.integers(0, 900, (6, 5, 4), dtype=np.int16), np.diag([0.5, 0.5, 2.0, 1.0])), path)
    return path


def _dicom(folder: Path) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "CT", "1.2.3", 1
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 5.0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.Rows, ds.Columns = [0.7, 0.7], 8, 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = RNG.integers(0, 2000, (8, 8), dtype=np.uint16).tobytes()
    path = folder / "t.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


TIFF, NIFTI, DICOM = _template(_tiff), _template(_nifti), _template(_dicom)


# ---------------------------------------------------------------- bytes


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutations(TIFF)))
def test_bytes_as_tiled_bigtiff(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.tif"
        path.write_bytes(content)
        read_or_refuse(path)


@FUZZ
@given(st.one_of(st.binary(max_size=400), mutations(NIFTI)), st.sampled_from(["x.nii", "x.nii.gz"]))
def test_bytes_as_nifti(content, name):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        read_or_refuse(path)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about each invalid value it meets
@FUZZ
@given(st.one_of(st.binary(max_size=400), mutations(DICOM)), st.booleans())
def test_bytes_as_dicom_file_or_series(content, as_folder):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.dcm"
        path.write_bytes(content)
        if as_folder:  # a series folder: the damaged slice next to a good one
            (Path(folder) / "good.dcm").write_bytes(DICOM)
        read_or_refuse(Path(folder) if as_folder else path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A zarr v3 array (zstd) and a v2 array (blosc), 16 x 16 in 8 x 8 chunks, and their pristine bytes."""
    root = tmp_path_factory.mktemp("zarr")
    data = RNG.integers(0, 1000, (16, 16), dtype=np.uint16)
    zarr.create_array(str(root / "v3.zarr"), data=data, chunks=(8, 8), zarr_format=3)
    zarr.create_array(str(root / "v2.zarr"), data=data, chunks=(8, 8), zarr_format=2)
    return root, data


@FUZZ
@given(st.data())
def test_bytes_as_a_zarr_chunk(store, data):
    root, pixels = store
    version = data.draw(st.sampled_from(["v3", "v2"]))
    chunk = "c/1/1" if version == "v3" else "1.1"
    pristine = (root / f"{version}.zarr" / chunk).read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / f"{version}.zarr"
        shutil.copytree(root / f"{version}.zarr", copy)
        (copy / chunk).write_bytes(data.draw(st.one_of(st.binary(max_size=200), mutations(pristine))))
        out = read_or_refuse(copy)
        if out is not None:  # a chunk that happens to decode must at least keep the other chunks intact
            assert np.array_equal(out[:8], pixels[:8])


@pytest.mark.filterwarnings("ignore::UserWarning")  # zarr warns about some odd values before refusing them
@FUZZ
@given(st.data())
def test_edited_zarr_metadata(store, data):
    root, _ = store
    version = data.draw(st.sampled_from(["v3", "v2"]))
    name = "zarr.json" if version == "v3" else ".zarray"
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / f"{version}.zarr"
        shutil.copytree(root / f"{version}.zarr", copy)
        meta = json.loads((copy / name).read_text())
        key = data.draw(st.sampled_from(sorted(meta)))
        meta[key] = data.draw(
            st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=5), st.lists(st.integers(-2, 40), max_size=3))
        )
        (copy / name).write_text(json.dumps(meta))
        read_or_refuse(copy)


# ---------------------------------------------------------------- valid but odd images


odd_shapes = st.one_of(
    st.tuples(st.integers(1, 20), st.integers(1, 20)),
    st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)),
)


def _pixels(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    kind = np.dtype(dtype)
    if kind.kind == "f":
        return RNG.normal(100, 50, shape).astype(dtype)
    info = np.iinfo(kind)
    return RNG.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "unet.pt", untrained("unet-xs"))


@settings(FUZZ, max_examples=40)
@given(odd_shapes, st.sampled_from(DTYPES), st.sampled_from(["tiff", "zarr2", "zarr3"]))
def test_odd_but_valid_images_read_back_and_restore(model, shape, dtype, kind):
    pixels = _pixels(shape, dtype)
    axes = "ZYX"[-len(shape) :]
    with tempfile.TemporaryDirectory() as folder:
        if kind == "tiff":
            path = Path(folder) / "x.tif"
            tifffile.imwrite(path, pixels, photometric="minisblack", metadata={"axes": axes})
        else:
            path = Path(folder) / "x.zarr"
            chunks = tuple(max(1, n // 2) for n in shape)
            zarr.create_array(str(path), data=pixels, chunks=chunks, zarr_format=int(kind[-1]))
        image = open_image(path, axes)
        assert image.data.dtype == pixels.dtype
        assert np.array_equal(np.asarray(image.data.compute()), pixels)
        out = restore(path, model, axes=axes, tile=16, overlap=4, chunks=8, dtype="input")
        assert out.shape == pixels.shape and out.dtype == pixels.dtype


# ---------------------------------------------------------------- the tile planner


def _option(positive: int) -> st.SearchStrategy:
    """An option value as a user might give it: None, whole numbers (also <= 0), per-axis lists, or wrong types."""
    number = st.integers(-4, positive)
    return st.one_of(
        st.none(),
        number,
        st.lists(number, min_size=1, max_size=4),
        st.lists(number, min_size=1, max_size=4).map(tuple),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=3),
        st.booleans(),
    )


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.lists(st.integers(1, 40), min_size=2, max_size=2), st.lists(st.integers(1, 10), min_size=3, max_size=3)
    ),
    _option(70),
    _option(40),
    _option(48),
    st.one_of(st.sampled_from(["cosine", "gaussian", "box", ""]), st.none(), st.integers(), st.lists(st.integers())),
    st.one_of(
        st.sampled_from(["float32", "input", "uint8", "float16", "complex64", "bool", "nonsense"]), st.integers()
    ),
    st.one_of(st.none(), st.integers(-2, 9), st.floats()),
)
def test_any_tiling_options_plan_or_are_refused(shape, tile, overlap, chunks, window, dtype, batch_size):
    try:
        options = RestoreOptions.of(tile=tile, overlap=overlap, chunks=chunks, window=window, dtype=dtype,
                                    batch_size=batch_size)  # fmt: skip
        opts = resolve_options(shape, options, multiple=8, input_dtype=np.uint16, device_type="cpu")
    except SkdError:
        return
    blocks = plan_blocks(shape, opts.chunks, opts.tile, opts.overlap, opts.overlap, 8)
    covered = np.zeros(shape, np.int32)
    for b in blocks:
        covered[b.out] += 1
        padded = b.padded_shape
        assert all(t % 8 == 0 and t <= max(8, math.ceil(c / 8) * 8) for t, c in zip(b.tile, opts.tile, strict=True))
        for starts, t, p in zip(b.tile_starts, b.tile, padded, strict=True):
            assert starts[0] == 0 and starts[-1] + t == p  # tiles cover the padded region exactly
            assert all(b2 - a2 <= t - opts.overlap for a2, b2 in zip(starts, starts[1:], strict=False))
    assert (covered == 1).all()  # every output voxel is written by exactly one block
