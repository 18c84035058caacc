"""Restore widget: restore a layer (or just the current view) with the loaded teacher or student, lazily and
block by block into OME-Zarr, with progress, Stop, a fidelity check of the student against the teacher (a heat map
over the image) and a one-click teacher / student comparison."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, LineEdit, PushButton, SpinBox

from ..checkpoint import Checkpoint
from ..errors import InputError
from ..pretrained import TEACHER, is_pretrained_name
from ..progress import ProgressEvent
from ..restoration.api import run_prepared
from ..restoration.fidelity import FidelityReport
from ..restoration.options import RestoreOptions
from ..restoration.prepare import prepare
from ..restoration.qc import check_result
from ..restoration.target import output_exists, read_output, read_qc
from ._fields import field_widget
from ._layers import NONE, default_axes, layer_array, layer_image, layer_picker
from ._preview import preview_region, quality, region_axes, region_offset
from ._qc import QcLegend, cell_text, heatmap_layer
from ._qt import ScrollingForm, Task, notify, report_error, run_controls, show_progress
from ._session import SESSION, SHIPPED, shipped
from ._view import camera, display_limits, side_by_side

MEMORY, ZARR = "new layer (in memory)", "OME-Zarr file (large data)"
#: The comparison's panels (layer names), in grid order.
COMPARE = {what: f"compare: {what}" for what in ("input", "clean", "teacher", "student")}
DIFF = "compare: |student - teacher|"


class RestoreWidget(ScrollingForm):
    """Layer in, restored layer out; the OME-Zarr output appears at once and fills in as blocks finish."""

    def __init__(self, napari_viewer=None):
        self.viewer = napari_viewer
        self.image = layer_picker(napari_viewer, "image layer")
        self.clean = layer_picker(napari_viewer, "clean layer (optional)", optional=True)
        self.axes = LineEdit(label="axes", value="YX", tooltip="OME letters of the layer's axes, e.g. YX, ZYX, TZYX")
        self.model = ComboBox(
            label="model", choices=["student", "teacher", *SHIPPED], value=self._default_model(),
            tooltip="the loaded student or teacher (Models widget), or a shipped generalist: no training needed",
        )  # fmt: skip
        self.tile = field_widget(RestoreOptions, "tile", max=4096, step=8)
        self.overlap = field_widget(RestoreOptions, "overlap", max=512, step=8)
        self.batch = field_widget(RestoreOptions, "batch_size", label="batch", max=256)
        self.chunks = field_widget(RestoreOptions, "chunks", label="block", max=8192, step=64)
        self.intensities = field_widget(RestoreOptions, "intensities")
        self.target = ComboBox(label="output", choices=[MEMORY, ZARR], value=MEMORY)
        self.path = FileEdit(label="OME-Zarr path", mode="w", value=str(Path.home() / "napari-skd" / "restored.zarr"))
        self.overwrite = CheckBox(text="overwrite an existing output", value=False)
        self.qc = CheckBox(
            text="check the student against the teacher (QC)",
            value=False,
            tooltip="After restoring, the teacher restores a sample of the blocks (always the ones the student "
            "changed most); a heat map shows where the student departs from it",
        )
        self.qc_fraction = field_widget(RestoreOptions, "qc_fraction", label="QC fraction", min=0.001, max=1, step=0.01)
        self.start, self.stop, self.progress, self.status = run_controls("Restore")
        self.preview_size = SpinBox(label="preview size", value=256, min=16, max=4096, step=16)
        self.preview = PushButton(text="Preview current view")
        self.compare = PushButton(text="Compare input / teacher / student")
        self.legend = QcLegend()
        super().__init__(
            widgets=[
                self.image,
                self.clean,
                self.axes,
                self.model,
                self.tile,
                self.overlap,
                self.batch,
                self.chunks,
                self.intensities,
                self.target,
                self.path,
                self.overwrite,
                self.qc,
                self.qc_fraction,
                self.start,
                self.preview_size,
                self.preview,
                self.compare,
                self.stop,
                self.progress,
                self.status,
                *self.legend.widgets,
            ]  # fmt: skip
        )
        self.task: Task | None = None
        self.output_layer = None
        self.report: FidelityReport | None = None  # the last fidelity check
        self.qc_layer: str | None = None  # the name of its map layer, read under the cursor
        self._last_refresh = 0.0
        self.image.changed.connect(self._guess_axes)
        self.start.changed.connect(self.run)
        self.preview.changed.connect(self.run_preview)
        self.compare.changed.connect(self.run_compare)
        self.stop.changed.connect(lambda: self.task.stop() if self.task else None)
        self._guess_axes(self.image.value)

    # --- helpers ---------------------------------------------------------------------------------------------
    def _guess_axes(self, name: str) -> None:
        if self.viewer is not None and name in self.viewer.layers:
            layer = self.viewer.layers[name]
            self.axes.value = default_axes(layer.ndim, getattr(layer, "rgb", False))

    @staticmethod
    def _default_model() -> str:
        """The loaded student, else the loaded teacher, else the shipped generalist student (zero-shot)."""
        if SESSION.get("student") is not None:
            return "student"
        return "teacher" if SESSION.get("teacher") is not None else SHIPPED[0]

    def _checkpoint(self, role: str):
        if is_pretrained_name(role):
            return shipped(role)
        ck = SESSION.get(role)
        if ck is None:
            raise InputError(
                f"load a {role} in the Models widget first, or choose {SHIPPED[0]} to restore with no training"
            )
        return ck

    def _options(self, axes: str | None, qc_teacher: Checkpoint | None = None) -> RestoreOptions:
        """The form's options (0 = automatic) for an image with ``axes``."""
        return RestoreOptions.of(axes=axes, tile=self.tile.value or None, overlap=self.overlap.value or None,
                                 batch_size=self.batch.value or None, chunks=self.chunks.value or None,
                                 intensities=self.intensities.value,
                                 qc_teacher=qc_teacher, qc_fraction=self.qc_fraction.value)  # fmt: skip

    def _qc_teacher(self, role: str) -> Checkpoint | None:
        """The teacher to check the student against, when QC is ticked."""
        if not self.qc.value:
            return None
        if role not in ("student", SHIPPED[0]):
            raise InputError("QC checks the student against the teacher: choose the model 'student', or untick QC")
        if role == SHIPPED[0] and SESSION.get("teacher") is None:
            return shipped(TEACHER)
        return self._checkpoint("teacher")

    def _begin(self, fn, on_done) -> Task:
        self.task = Task(fn, self._on_event, on_done, self._on_finally)
        self.start.enabled = self.preview.enabled = self.compare.enabled = False
        self.stop.enabled = True
        self.status.value = "starting..."
        self.task.start()
        return self.task

    def _on_event(self, e: ProgressEvent) -> None:
        show_progress(self.progress, self.status, e, "QC: residual of block " if e.phase == "qc" else "block ")
        if self.target.value == ZARR and self.task is not None and getattr(self, "_to_store", False):
            self._show_zarr(force=e.step == e.total)

    def _on_finally(self) -> None:
        self.start.enabled = self.preview.enabled = self.compare.enabled = True
        self.stop.enabled = False
        self.task = None

    def _add(self, data, source_name: str, name: str, offset: list[int] | None = None, axes_kept: str | None = None):
        """Add a result layer with the source layer's scale and translate (shifted by ``offset`` voxels)."""
        src = self.viewer.layers[source_name]
        scale, translate = np.asarray(src.scale), np.asarray(src.translate, dtype=float)
        if offset is not None and axes_kept is not None:
            translate = translate + np.asarray(offset) * scale
            keep = [i for i, a in enumerate(self.axes.value) if a in axes_kept]
            scale, translate = scale[keep], translate[keep]
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data, layer.scale, layer.translate = data, scale, translate
            return layer
        return self.viewer.add_image(data, name=name, scale=scale, translate=translate,
                                     contrast_limits=display_limits(data))  # fmt: skip

    # --- whole layer -----------------------------------------------------------------------------------------
    def run(self) -> Task | None:
        try:
            role, name = self.model.value, self.image.value
            ck = self._checkpoint(role)
            if layer_array(self.viewer, name) is None:
                raise InputError("pick an image layer to restore")
            data = layer_image(self.viewer, name, self.axes.value or "")
            teacher = self._qc_teacher(role)
            output = Path(self.path.value) if self.target.value == ZARR else None
            options = self._options(data.axes, teacher if output is not None else None)
        except InputError as exc:
            report_error(exc)
            return None
        self._to_store = output is not None
        self.output_layer = None
        title = f"{name} restored ({role})"
        overwrite = self.overwrite.value

        fraction = self.qc_fraction.value

        def work(progress, cancel):
            job = prepare(data, ck, options)
            result = run_prepared(job, output, options, overwrite=overwrite, progress=progress, cancel=cancel)
            if teacher is None or (cancel is not None and cancel.is_set()):
                return result, None
            if output is None:
                return result, check_result(job, result, teacher, fraction, progress=progress, cancel=cancel)
            return result, read_qc(output)

        def done(got):
            result, self.report = got
            if output is None:
                self._add(result, name, title)
            else:
                self._show_zarr(force=True)
            if self.report is not None:
                self._show_qc(self.report, name, f"{title} QC: PSNR vs teacher (dB)", data.axes)
            notify(f"restored {name} with the {role}" + (f" into {output}" if output else ""))

        self._zarr = (output, name, title, data.axes)  # the layer's axes when the job started
        return self._begin(work, done)

    def _show_zarr(self, force: bool = False) -> None:
        """Show (or refresh) the OME-Zarr output as a lazy layer in the input's axis order: multiscale when it has a
        pyramid, whose levels fill in with level 0 as blocks finish."""
        output, source, title, axes = self._zarr
        if not force and time.monotonic() - self._last_refresh < 1.0:
            return
        if not output_exists(output):
            return
        levels, _ = read_output(output, axes)
        data = levels if len(levels) > 1 else levels[0]  # a pyramid: one multiscale layer, read at the zoom shown
        self._last_refresh = time.monotonic()
        if self.output_layer is None or title not in self.viewer.layers:
            src = self.viewer.layers[source]
            self.output_layer = self.viewer.add_image(data, name=title, scale=src.scale, translate=src.translate,
                                                      contrast_limits=src.contrast_limits,
                                                      multiscale=len(levels) > 1)  # fmt: skip
        else:
            self.output_layer.data = data

    def _show_qc(self, report: FidelityReport, source: str, title: str, axes: str) -> None:
        """The fidelity map over the restored image with its colour bar, its legend in the dock (which then follows
        the cursor), and the summary in the status line."""
        src = self.viewer.layers[source]
        grid, kwargs = heatmap_layer(report, axes, src.scale, src.translate)
        if title in self.viewer.layers:
            self.viewer.layers.remove(title)
        self.viewer.add_image(grid, name=title, **kwargs).colorbar.visible = True
        if self.qc_layer is None:  # first map: start following the cursor
            self.viewer.cursor.events.position.connect(self._on_cursor)
            self.native.destroyed.connect(lambda *_: self.viewer.cursor.events.position.disconnect(self._on_cursor))
        self.qc_layer = title
        self.legend.show()
        self.legend.cursor.value = "point at a block to read its PSNR here"
        self.status.value = report.lines(worst=0)[0]

    def _on_cursor(self, *_) -> None:
        """The QC map's block under the cursor, in the legend (which goes when the map is deleted)."""
        if self.qc_layer not in self.viewer.layers:
            self.legend.show(False)
        elif self.viewer.layers[self.qc_layer].visible:
            text = cell_text(self.viewer.layers[self.qc_layer], self.viewer.cursor.position)
            self.legend.cursor.value = text or "outside the QC map"

    # --- preview and comparison ------------------------------------------------------------------------------
    def _region(self, name: str):
        layer = self.viewer.layers[name]
        data = layer_array(self.viewer, name)
        current = tuple(int(round(v)) for v in layer.world_to_data(self.viewer.dims.point))
        center_world = list(self.viewer.dims.point)
        center_world[-2:] = camera(self.viewer).center[-2:]
        center = layer.world_to_data(center_world)
        axes = self.axes.value
        y, x = center[axes.index("Y")], center[axes.index("X")]
        region = preview_region(tuple(data.shape), axes, current, (y, x), self.preview_size.value)
        return data, region

    def run_preview(self, roles: tuple[str, ...] | None = None) -> Task | None:
        roles = roles or (self.model.value,)
        try:
            name = self.image.value
            if layer_array(self.viewer, name) is None:
                raise InputError("pick an image layer to preview")
            cks = {role: self._checkpoint(role) for role in roles}
            data, region = self._region(name)
            crop = np.asarray(data[region])
            kept = region_axes(self.axes.value, region)
            options = self._options(kept)
        except InputError as exc:
            report_error(exc)
            return None
        clean = layer_array(self.viewer, self.clean.value)
        reference = np.asarray(clean[region]) if clean is not None and self.clean.value != NONE else None

        def work(progress, cancel):
            return {role: run_prepared(prepare(crop, ck, options), None, options, progress=progress, cancel=cancel)
                    for role, ck in cks.items()}  # fmt: skip

        def done(results):
            offset = [o for o, r in zip(region_offset(region), region, strict=True) if isinstance(r, slice)]
            lines = []
            for role, out in results.items():
                self._add(out, name, f"preview: {role}" if len(roles) == 1 else f"compare: {role}", offset, kept)
                if reference is not None:
                    lines.append(f"{role}: " + quality(reference, out, cks[role].norm, kept))
            if len(roles) > 1:
                self._show_comparison(name, crop, reference, results, offset, kept)
            self.status.value = "; ".join(lines) if lines else f"preview of {kept} region at {offset}"

        return self._begin(work, done)

    def _show_comparison(self, name, crop, reference, results, offset, kept) -> None:
        """Input, the clean layer (when chosen), teacher, student and |student - teacher| (with its colour bar, on
        its own contrast from 0), labelled, in a grid."""
        self._add(crop, name, COMPARE["input"], offset, kept)
        panels = [COMPARE["input"]]
        if reference is not None:
            self._add(reference, name, COMPARE["clean"], offset, kept)
            panels.append(COMPARE["clean"])
        panels += [COMPARE["teacher"], COMPARE["student"], DIFF]
        diff = np.abs(results["student"].astype(np.float32) - results["teacher"].astype(np.float32))
        layer = self._add(diff, name, DIFF, offset, kept)
        layer.colormap = "inferno"
        layer.contrast_limits = (0.0, float(np.percentile(diff, 99.5)) or float(diff.max()) or 1.0)
        layer.colorbar.visible = True  # the difference's scale, in the image's intensity units
        layer.colorbar.position = "middle_right"  # clear of the panel's label (top left) and napari's messages
        side_by_side(self.viewer, panels, self.viewer.layers[name].contrast_limits, own_contrast=(DIFF,))

    def run_compare(self) -> Task | None:
        """Restore the current view with the teacher and the student and show input (and the clean layer when one
        is chosen), teacher, student and their difference side by side (grid mode), with PSNR/SSIM against the clean
        layer."""
        return self.run_preview(("teacher", "student"))
