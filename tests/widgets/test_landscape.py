"""LandscapeView: map of f(x, y), contours, the optimizer's path."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from widgets.landscape import LandscapeView, contour_segments, log_scaled

from .keys import shown, wheel


def bowl(nx: int = 41, ny: int = 31):
    xs = np.linspace(-2.0, 2.0, nx)
    ys = np.linspace(-1.0, 2.0, ny)
    x, y = np.meshgrid(xs, ys)
    return xs, ys, (x - 0.5) ** 2 + 2 * (y - 1.0) ** 2


@pytest.fixture
def land(qtbot):
    lv = LandscapeView()
    shown(qtbot, lv, 420, 380)
    return lv


def test_contour_of_a_cone_is_a_circle():
    r = np.hypot(*np.meshgrid(np.arange(21.0) - 10, np.arange(21.0) - 10))
    pts = contour_segments(r, 6.0)
    assert len(pts) > 20 and len(pts) % 2 == 0
    dist = np.hypot(pts[:, 0] - 10, pts[:, 1] - 10)
    np.testing.assert_allclose(dist, 6.0, atol=0.2)


def test_contours_skip_nan_cells():
    z = np.arange(16.0).reshape(4, 4)
    z[1, 1] = np.nan
    assert np.isfinite(contour_segments(z, 7.5)).all()


def test_log_scale_keeps_detail_near_the_minimum():
    lz = log_scaled(np.array([[0.0, 1.0, 10.0], [100.0, 1e3, np.nan]])).ravel()
    assert np.all(np.diff(lz[:5]) > 0.9)  # each decade gets its own colour band
    assert lz[0] == pytest.approx(-1.0)  # the floor: 4 decades below the range
    assert np.isnan(lz[5])


def test_wrong_shape_is_refused(land):
    xs, ys, z = bowl()
    with pytest.raises(ValueError, match="must have shape"):
        land.setLandscape(xs, ys, z.T)


def test_map_covers_the_grid_and_marks_the_minimum(land):
    xs, ys, z = bowl()
    land.setLandscape(xs, ys, z)
    rect = land.image.mapRectToView(land.image.boundingRect())
    assert rect.left() < -2.0 < 2.0 < rect.right()
    assert rect.top() < -1.0 < 2.0 < rect.bottom()
    mx, my = land.minimum.getData()
    assert (mx[0], my[0]) == (0.5, 1.0)
    cx, cy = land.contours.getData()
    assert len(cx) > 0 and np.all((cx >= -2) & (cx <= 2)) and np.all((cy >= -1) & (cy <= 2))


def test_path_draws_line_and_current_point(land):
    land.setLandscape(*bowl())
    path = np.array([[-1.5, 0.0], [-0.5, 0.5], [0.2, 0.9]])
    land.setPath(path)
    x, y = land.path.getData()
    np.testing.assert_array_equal(np.c_[x, y], path)
    cx, cy = land.current.getData()
    assert (cx[0], cy[0]) == (0.2, 0.9)
    sx, sy = land.start.getData()
    assert (sx[0], sy[0]) == (-1.5, 0.0)


def test_diverging_path_keeps_the_view_on_the_map(land):
    land.setLandscape(*bowl())
    before = land.plot.getPlotItem().getViewBox().viewRect()
    land.setPath(np.array([[0.0, 0.0], [1e6, -1e6], [np.inf, np.nan]]))
    assert land.plot.getPlotItem().getViewBox().viewRect() == before
    assert len(land.current.getData()[0]) == 0  # no finite current point to mark
    land.setPath(None)
    assert len(land.path.getData()[0] if land.path.getData()[0] is not None else []) == 0


def test_hover_shows_position_and_value(land, qtbot):
    land.setLandscape(*bowl())
    vb = land.plot.getPlotItem().getViewBox()
    land._on_mouse_moved(vb.mapViewToScene(QPointF(0.5, 1.0)))
    text = land.hover.text()
    assert text.startswith("x = 0.5") and "y = 1" in text and "f ≈ 0" in text
    land.hoverAt(5.0, 5.0)  # off the map: position only
    assert land.hover.text() == "x = 5, y = 5"


def test_widget_renders_something(land, tmp_path):
    land.setLandscape(*bowl())
    land.setPath(np.array([[-1.5, 0.0], [0.2, 0.9]]))
    img = land.grab().toImage()
    assert img.save(str(tmp_path / "landscape.png"))
    colours = {img.pixel(x, y) for x in range(0, img.width(), 5) for y in range(0, img.height(), 5)}
    assert len(colours) > 20


def test_a_wheel_zoom_over_the_map_has_a_way_back(land, qtbot):
    land.setLandscape(*bowl())
    vb = land.plot.getPlotItem().getViewBox()
    framed = vb.viewRect()
    assert not land.resetButton.isOffered()
    wheel(qtbot, land.plot.viewport(), land.plot.viewport().rect().center(), -120 * 3)
    qtbot.waitUntil(land.resetButton.isVisible)
    assert vb.viewRect().width() > 1.3 * framed.width()
    land.setPath(np.array([[-1.5, 0.0], [0.2, 0.9]]))  # steps go on: the zoom stays
    assert vb.viewRect().width() > 1.3 * framed.width()
    qtbot.mouseClick(land.resetButton, Qt.MouseButton.LeftButton)
    assert not land.resetButton.isOffered()
    r = vb.viewRect()
    assert r.left() <= -2.0 and r.right() >= 2.0 and r.top() <= -1.0 and r.bottom() >= 2.0  # the whole map
    assert r.width() < 1.2 * framed.width()
    land.setMessage("No landscape")
    assert not land.resetButton.isOffered()


def test_hovering_the_map_never_widens_the_view(land, qtbot):
    """The hover line wraps within two lines: one long line had widened the dock (and shrunk the
    window's other panels) while the mouse moved over the map."""
    land.setLandscape(*bowl())
    land.CLICK_STARTS = True  # the main window's map: "· click to start here" makes the line longest
    land._set_hint()
    qtbot.wait(20)  # layouts follow a changed text at the next turn of the event loop
    idle = land.minimumSizeHint().width()
    land.hoverAt(-0.123456, 1.234567)
    qtbot.wait(20)
    assert "f ≈" in land.hover.text() and "click" in land.hover.text()
    assert land.minimumSizeHint().width() == idle
    assert land.minimumSizeHint().width() < land.hover.fontMetrics().horizontalAdvance(land.hover.text())
