"""GUI: every dock napari.yaml declares fits a 1366 x 768 screen; a form taller than that scrolls."""

import pytest
from npe2 import PluginManifest

from napari_skd._napari._qt import ScrollingForm

MANIFEST = PluginManifest.from_distribution("napari-skd")
DOCKS = [w.display_name for w in MANIFEST.contributions.widgets]
#: Room for a dock on a 1366 x 768 screen, below napari's menu and title bars and above its status bar.
FITS = 700


def test_the_manifest_declares_the_three_docks():
    assert DOCKS == ["Models", "Distil", "Restore"]


@pytest.mark.parametrize("name", DOCKS)
def test_dock_fits_a_laptop_screen(make_napari_viewer_proxy, name):
    viewer = make_napari_viewer_proxy()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-skd", name)
    assert widget.native.minimumSizeHint().height() <= FITS
    assert dock.minimumSizeHint().height() <= FITS
    assert isinstance(widget, ScrollingForm) and widget.scroll_area.widget() is widget.body.native  # all reachable


def test_the_distil_form_is_taller_than_the_screen_and_scrolls(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("napari-skd", "Distil")
    assert widget.body.native.minimumSizeHint().height() > FITS  # with its live plot: 1095 px before it scrolled
    assert widget.plot.native.parent() is widget.body.native  # the plot scrolls with the form
