"""The output target (``restoration/target/``): one interface for an OME-Zarr store and a single file, the only way
from ``restore`` to an output path, going down to ``io/`` and never back."""

import numpy as np
import pytest

from conftest import untrained
from napari_skd.checkpoint import save_checkpoint
from napari_skd.errors import InputError
from napari_skd.normalize import Normalization
from napari_skd.restoration.options import RestoreOptions
from napari_skd.restoration.prepare import prepare
from napari_skd.restoration.target import FileTarget, ZarrTarget, complete_for, kind_of, output_target, read_record
from test_structure import import_graph

GRID = dict(tile=16, overlap=4, chunks=16)
RESTORATION = "napari_skd.restoration"


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    ckpt = save_checkpoint(
        tmp_path_factory.mktemp("ck") / "s.pt", untrained("unet-xs"), norm=Normalization(low=0, high=255)
    )
    data = (np.random.default_rng(0).random((40, 48)) * 255).astype(np.float32)
    return prepare(data, ckpt, RestoreOptions.of(axes="YX", **GRID))


def restored(job, target):
    """Restore every pending block of ``job`` into an open target (zeros stand in for the restorer)."""
    for item in target.pending(job.items):
        target.write(item, np.zeros((1, *(s.stop - s.start for s in item.block.out)), np.float32))


def test_the_kind_follows_the_name():
    assert kind_of("a.ome.zarr") is ZarrTarget and kind_of("a") is ZarrTarget
    assert kind_of("a.tif") is FileTarget and kind_of("a.nii.gz") is FileTarget
    with pytest.raises(InputError, match="an extension napari-skd does not write"):
        kind_of("a.png")


def test_a_store_is_new_then_resumed_then_complete_then_only_checked(job, tmp_path):
    out = tmp_path / "out.ome.zarr"
    target = output_target(out, job, False)
    assert target.verdict == "new" and not out.exists()  # inspecting writes nothing
    with target.open() as t:
        t.write(job.items[0], np.zeros((1, 16, 16), np.float32))
    assert output_target(out, job, False).verdict == "resume"
    with output_target(out, job, False).open() as t:
        assert t.pending(job.items) == job.items[1:]
        restored(job, t)
        t.finish()
    assert t.complete and complete_for(out, job.description()) and read_record(out)["complete"]
    with pytest.raises(InputError, match="already complete for this same job"):
        output_target(out, job, False)
    assert output_target(out, job, False, qc=True).verdict == "add-qc"
    assert output_target(out, job, True).verdict == "clear"


def test_a_file_waits_for_its_qc_report_and_a_stopped_check_writes_nothing(job, tmp_path):
    out = tmp_path / "out.tif"
    with output_target(out, job, False, qc=True).open() as t:
        restored(job, t)
        t.finish()
    assert not t.complete and not out.exists()
    with output_target(out, job, False, qc=True).open() as t:
        restored(job, t)
        t.finish()
        t.set_qc({"blocks": []})
    assert t.complete and complete_for(out, job.description()) and FileTarget.qc_at(out) == {"blocks": []}
    with pytest.raises(InputError, match="adding fidelity QC to a tiff file rewrites it"):
        output_target(out, job, False, qc=True)
    with pytest.raises(InputError, match="writes OME-Zarr .* not tiff"):
        output_target(out, job, True, distributed=True)


def test_the_target_refuses_what_napari_skd_did_not_write(job, tmp_path):
    (tmp_path / "user.tif").write_bytes(b"not ours")
    (tmp_path / "folder.tif").mkdir()
    (tmp_path / "user.zarr").mkdir()
    (tmp_path / "user.zarr" / "notes.txt").write_text("mine")
    for name, what in [("user.tif", "exists"), ("folder.tif", "is a folder"), ("user.zarr", "exists")]:
        with pytest.raises(InputError, match=f"{what} and was not written by napari-skd"):
            output_target(tmp_path / name, job, True)


def test_restore_reaches_output_paths_only_through_the_target_and_io_never_calls_back():
    graph = import_graph()
    low_level = {"napari_skd.io.writers", "napari_skd.io.file_writers"}
    users = {m for m, targets in graph.items() if m.startswith(RESTORATION) and targets & low_level}
    assert users and all(m.startswith(f"{RESTORATION}.target") for m in users), users
    io_up = {
        m: t for m, t in graph.items() if m.startswith("napari_skd.io") and any(x.startswith(RESTORATION) for x in t)
    }
    assert not io_up
    target_up = {
        m: {t for t in targets if t.startswith(RESTORATION) and not t.startswith(f"{RESTORATION}.target")}
        for m, targets in graph.items()
        if m.startswith(f"{RESTORATION}.target")
    }  # below the target: only what describes a job (layout, prepare) and the QC report's data
    allowed = {f"{RESTORATION}.{m}" for m in ("layout", "prepare", "fidelity")}
    assert all(up <= allowed for up in target_up.values()), target_up
    for caller in ("restoration.api", "restoration.job", "restoration.distributed", "_napari._restore"):
        assert f"{RESTORATION}.target" in graph[f"napari_skd.{caller}"], caller  # QC's report goes through api
