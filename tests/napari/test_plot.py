"""GUI: the Distil widget's live plot, fed the progress events of a real (tiny) teacher + student run."""

import threading

import numpy as np
import pytest

from napari_skd._napari._distill import TEACHER_MODES, _run, build_jobs
from napari_skd._napari._plot import LossPlot, gradient_shares
from napari_skd.samples import load_sample


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """Every event of a 3-step teacher and a 4-step skd student, validated (with diagnostics) every 2 steps."""
    image, _ = load_sample("nuclei2d")
    form = {"axes": "YX", "degradation": "gaussian", "noise": 0.1, "teacher_mode": TEACHER_MODES[1],
            "teacher_preset": "student-tiny", "teacher_steps": 3, "student": "student-tiny", "method": "skd",
            "steps": 4, "patch_size": 32, "batch_size": 2, "lr": 1e-3, "val_fraction": 0.2, "alpha1": 1.0,
            "alpha2": 0.1, "alpha3": 0.0, "sigma": 0.0, "levels": "enc1, dec1",
            "output": str(tmp_path_factory.mktemp("plot") / "s.pt"), "overwrite": False}  # fmt: skip
    teacher_job, distill_job = build_jobs(form, None, image[:128, :128].astype(np.float32), None)
    teacher_job.train.val_every = distill_job.train.val_every = 2
    out = []
    _run(teacher_job, distill_job, out.append, threading.Event())  # what the widget's worker runs
    return out


def test_gradient_shares_are_norms_over_their_sum():
    shares = gradient_shares({"rec": 0.1, "rec_grad": 3.0, "gk": 0.01, "gk_grad": 1.0, "gk_cos": 0.2})
    assert shares == {"rec": 0.75, "gk": 0.25}
    assert gradient_shares({"rec": 0.1}) == {} and gradient_shares({"rec_grad": 0.0}) == {}


def test_loss_psnr_and_gradient_shares_on_three_panels(qtbot, events):
    plot = LossPlot()
    for e in events:
        plot.add(e)
    plot.draw()
    plot.figure.canvas.draw()
    assert len(plot.figure.axes) == 3  # stacked panels, no twin axes
    loss_ax, psnr_ax, share_ax = plot.loss_ax, plot.psnr_ax, plot.share_ax
    assert loss_ax.get_position().y0 > psnr_ax.get_position().y1 > share_ax.get_position().y1  # top to bottom
    assert loss_ax.get_shared_x_axes().joined(loss_ax, share_ax)

    loss_labels = {line.get_label() for line in loss_ax.get_lines()}
    assert loss_labels == {"teacher loss", "student loss", "student rec", "student gk"}  # the teacher's l1 is its loss
    assert loss_ax.get_yscale() == "log"
    student_loss = next(line for line in loss_ax.get_lines() if line.get_label() == "student loss")
    assert list(student_loss.get_xdata()) == [4, 5, 6, 7]  # after the teacher's 3 steps

    psnr_lines = {line.get_label(): line for line in psnr_ax.get_lines()}
    assert set(psnr_lines) == {"teacher val PSNR", "student val PSNR"}
    validations = [e for e in events if e.phase == "train" and "psnr" in e.metrics]
    assert len(validations) == 2
    student_psnr = psnr_lines["student val PSNR"]
    assert student_psnr.get_marker() not in (None, "None", "", " ")  # validations drawn as markers
    np.testing.assert_allclose(student_psnr.get_ydata(), [e.metrics["psnr"] for e in validations])

    # each validation's bars: one per loss term, the share of the summed gradient norms, stacked to 1
    diagnosed = [e for e in events if e.diagnostics]
    assert len(diagnosed) == 2 and len(plot.shares) == 2
    for (step, shares), e in zip(plot.shares, diagnosed, strict=True):
        norms = {k[:-5]: v for k, v in e.diagnostics.items() if k.endswith("_grad")}
        assert set(shares) == set(norms) == {"rec", "gk"}
        assert shares["gk"] == pytest.approx(norms["gk"] / sum(norms.values()))
        assert sum(shares.values()) == pytest.approx(1.0)
        bars = [p for p in share_ax.patches if abs(p.get_x() + p.get_width() / 2 - step) < 1e-9]
        assert len(bars) == 2 and sum(p.get_height() for p in bars) == pytest.approx(1.0)
        assert max(p.get_y() + p.get_height() for p in bars) == pytest.approx(1.0)
    assert {t.get_text() for t in share_ax.get_legend().get_texts()} == {"rec", "gk"}

    # every legend sits outside its panel's data area
    renderer = plot.figure.canvas.get_renderer()
    for ax in (loss_ax, psnr_ax, share_ax):
        legend = ax.get_legend()
        assert legend is not None
        box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert not box.overlaps(area), (ax.get_ylabel(), box, area)


def test_clear_empties_every_panel(qtbot, events):
    plot = LossPlot()
    for e in events:
        plot.add(e)
    plot.clear()
    assert not plot.series and not plot.psnr and not plot.shares
    assert not plot.loss_ax.get_lines() and not plot.share_ax.patches and plot.loss_ax.get_legend() is None
