"""Real screenshots of the napari-skd widgets in use, for docs/napari.md.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshots.py

Runs the guide's path on the shipped sample data with tiny models: load the sample, distil (teacher first), restore
into OME-Zarr with the QC map (the cursor on its worst block), compare with the clean layer as a panel. Each step is
captured with the canvas rendered (the window is shown).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QDockWidget

from napari_skd._napari._distill import DistillWidget
from napari_skd._napari._models import ModelsWidget
from napari_skd._napari._restore import ZARR, RestoreWidget
from napari_skd._napari._session import SESSION
from napari_skd._napari._view import fit_panels, grid
from napari_skd.checkpoint import load_checkpoint

OUT = Path(__file__).parent / "images"
DOCK_WIDTH = 560  # pixels of the widget column; the canvas gets the rest


def wait(job) -> None:
    """Keep the event loop running until the job's worker has finished."""
    finished: list[bool] = []
    job.worker.finished.connect(lambda: finished.append(True))
    while not finished:
        QApplication.processEvents()
        time.sleep(0.02)  # leave the CPU to the worker
    for _ in range(20):
        QApplication.processEvents()


def shot(viewer, name: str) -> None:
    window = viewer.window._qt_window
    right = Qt.DockWidgetArea.RightDockWidgetArea
    docks = [d for d in window.findChildren(QDockWidget) if d.isVisible() and window.dockWidgetArea(d) == right]
    window.resizeDocks(docks, [DOCK_WIDTH] * len(docks), Qt.Orientation.Horizontal)  # leave the canvas its room
    for _ in range(10):
        QApplication.processEvents()
    if grid(viewer).enabled:  # the docks' new width changed the panels: lay them out again
        fit_panels(viewer, [layer for layer in viewer.layers if layer.visible])
    else:
        viewer.reset_view()  # the image fills the canvas
    for _ in range(10):
        QApplication.processEvents()
    viewer.window.screenshot(str(OUT / name), canvas_only=False)
    print("wrote", OUT / name)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="skd-shots-"))
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open_sample("napari-skd", "nuclei2d")
    image = viewer.layers["nuclei2d"].data.astype(np.float32)
    noisy = image + np.random.default_rng(0).normal(0, 0.08 * image.max(), image.shape).astype(np.float32)
    viewer.add_image(noisy, name="nuclei noisy")

    models = ModelsWidget(viewer)
    distill = DistillWidget(viewer)
    restore = RestoreWidget(viewer)
    models_dock = viewer.window.add_dock_widget(models, name="Models", area="right")
    viewer.window.add_dock_widget(distill, name="Distil", area="right", tabify=True)

    distill.degraded.value, distill.clean.value = "nuclei noisy", "nuclei2d"
    distill.teacher_mode.value = "train a teacher first"
    distill.teacher_preset.value, distill.teacher_steps.value = "teacher-tiny", 60
    distill.student.value, distill.steps.value = "student-tiny", 60
    distill.patch_size.value, distill.batch_size.value = 64, 4
    distill.output.value = work / "student.pt"
    wait(distill.run())
    bar = distill.scroll_area.verticalScrollBar()
    bar.setValue(bar.maximum())  # the form scrolls: show its end, with the live plot
    shot(viewer, "distill_widget.png")

    SESSION.set("teacher", load_checkpoint(work / "student-teacher.pt"))
    models.teacher_file.value = work / "student-teacher.pt"
    models.student_file.value = work / "student.pt"
    models.load("student", work / "student.pt")
    models_dock.raise_()  # the Models tab in front
    shot(viewer, "models_widget.png")
    viewer.window.add_dock_widget(restore, name="Restore", area="right", tabify=True)

    restore.image.value, restore.model.value = "nuclei noisy", "student"
    restore.target.value = ZARR
    restore.path.value = work / "restored.zarr"
    restore.tile.value, restore.chunks.value = 128, 128  # a 4 x 4 grid of blocks for the QC heat map
    restore.qc.value, restore.qc_fraction.value = True, 0.25
    wait(restore.run())
    viewer.layers["nuclei2d"].visible = False
    worst = restore.report.worst(1)[0].position
    centre = [sum(worst[a]) / 2 for a in "YX"]
    viewer.cursor.position = tuple(viewer.layers["nuclei noisy"].data_to_world(centre))  # the legend reads it
    restore.scroll_area.verticalScrollBar().setValue(restore.scroll_area.verticalScrollBar().maximum())
    shot(viewer, "restore_widget.png")

    restore.clean.value = "nuclei2d"
    restore.preview_size.value = 192
    wait(restore.run_compare())
    shot(viewer, "compare.png")
    viewer.close()


if __name__ == "__main__":
    main()
