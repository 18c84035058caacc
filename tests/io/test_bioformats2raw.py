"""bioformats2raw containers (an OME-Zarr root with ``bioformats2raw.layout`` and images in ``0/``, ``1/``...): one
image opens, several are named in the message, and a plain group of groups says which to open."""

import numpy as np
import pytest
import zarr

from conftest import untrained
from napari_skd import restore
from napari_skd.checkpoint import save_checkpoint
from napari_skd.errors import InputError
from napari_skd.io import open_image

IMAGES = [np.random.default_rng(i).integers(0, 4000, (6, 16, 24), dtype=np.uint16) for i in range(2)]


def image_group(parent: zarr.Group, name: str, data: np.ndarray, version: str) -> None:
    """An OME-Zarr image (NGFF ``version``) with level 0 only, Z spacing 2."""
    group = parent.create_group(name)
    group.create_array("0", data=data, chunks=data.shape)
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [2.0, 0.5, 0.5]}]}]
    multiscales = [{"version": version, "axes": axes, "datasets": datasets}] if version == "0.4" else [
        {"axes": axes, "datasets": datasets}]  # fmt: skip
    if version == "0.4":
        group.attrs["multiscales"] = multiscales
    else:
        group.attrs["ome"] = {"version": version, "multiscales": multiscales}


def container(path, count: int, version: str = "0.4", series: bool = True) -> str:
    """A bioformats2raw layout: zarr v2 and NGFF 0.4 with an ``OME/series`` list, or zarr v3 and NGFF 0.5."""
    fmt = 2 if version == "0.4" else 3
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    if version == "0.4":
        root.attrs["bioformats2raw.layout"] = 3
    else:
        root.attrs["ome"] = {"version": version, "bioformats2raw.layout": 3}
    for i in range(count):
        image_group(root, str(i), IMAGES[i], version)
    if series:
        root.create_group("OME").attrs["series"] = [str(i) for i in range(count)]
    return str(path)


@pytest.mark.parametrize(("version", "series"), [("0.4", True), ("0.5", False)])
def test_a_container_of_one_image_opens_that_image(tmp_path, version, series):
    img = open_image(container(tmp_path / "one.zarr", 1, version, series))
    assert img.axes == "ZYX" and img.scale == {"Z": 2.0, "Y": 0.5, "X": 0.5}
    np.testing.assert_array_equal(img.data.compute(), IMAGES[0])
    assert img.name == "one"


@pytest.mark.parametrize(("version", "series"), [("0.4", True), ("0.5", False)])
def test_a_container_of_several_images_names_them(tmp_path, version, series):
    path = container(tmp_path / "two.zarr", 2, version, series)
    with pytest.raises(InputError) as info:
        open_image(path)
    assert str(info.value) == (
        f"{path} is a bioformats2raw container holding 2 images (0, 1): napari-skd opens one image at a time; "
        f"open one of them, e.g. '{path}/0'"
    )
    img = open_image(f"{path}/1")  # the path the message gives opens
    np.testing.assert_array_equal(img.data.compute(), IMAGES[1])


def test_a_container_whose_listed_image_is_missing_says_so(tmp_path):
    path = container(tmp_path / "broken.zarr", 1)
    zarr.open_group(f"{path}/OME", mode="a").attrs["series"] = ["0", "7"]
    with pytest.raises(InputError, match=r"bioformats2raw container, but its image group\(s\) 7 are missing"):
        open_image(path)


def test_a_plain_group_of_groups_names_the_groups(tmp_path):
    root = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    image_group(root, "left", IMAGES[0], "0.5")
    image_group(root, "right", IMAGES[1], "0.5")
    with pytest.raises(InputError) as info:
        open_image(tmp_path / "plain.zarr")
    assert "holds 0 arrays (none) but the group(s) left, right and no OME multiscales metadata" in str(info.value)
    assert f"open one group, e.g. '{tmp_path / 'plain.zarr'}/left'" in str(info.value)


def test_a_one_image_container_restores_like_its_image(tmp_path):
    path = container(tmp_path / "one.zarr", 1)
    ck = save_checkpoint(tmp_path / "s.pt", untrained("student-tiny"))
    assert np.array_equal(restore(path, ck, device="cpu"), restore(IMAGES[0], ck, axes="ZYX", device="cpu"))
