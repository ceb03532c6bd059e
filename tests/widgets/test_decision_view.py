"""DecisionView: P(class 1) map, 0.5 boundary, labelled points, hover, placeholder."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication

from core.snapshot import Decision
from widgets.decision_view import CLASS_COLORS, PLACEHOLDER, RING_COLORS, DecisionView, diverging_lut

from .keys import shown, wheel


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def make_decision(n: int = 41, n_points: int = 60, shift: float = 0.0, seed: int = 0) -> Decision:
    xs = np.linspace(-2.0, 2.0, n)
    ys = np.linspace(-2.0, 2.0, n)
    x, y = np.meshgrid(xs, ys)
    probs = sigmoid(3.0 * (x - y) + shift).astype(np.float32)
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-1.8, 1.8, size=(n_points, 2))
    labels = (pts[:, 0] > pts[:, 1]).astype(np.int64)  # class 1 below the diagonal
    return Decision(xs=xs, ys=ys, probs=probs, points=pts, labels=labels)


@pytest.fixture
def view(qtbot):
    v = DecisionView()
    shown(qtbot, v, 400, 380)
    return v


def test_lut_is_diverging_through_white():
    t = diverging_lut()
    assert t.shape == (256, 4) and t.dtype == np.ubyte
    assert tuple(t[127, :3]) == (255, 255, 255)  # 0.5 -> white
    assert t[0, 2] > t[0, 0]  # blue end
    assert t[254, 0] > t[254, 2]  # orange end


def test_value_at_returns_the_grid_value(view):
    d = make_decision()
    view.setDecision(d)
    for r, c in [(0, 0), (10, 30), (40, 40), (20, 5)]:
        assert view.valueAt(d.xs[c], d.ys[r]) == pytest.approx(float(d.probs[r, c]))
    assert view.valueAt(d.xs[30] + 0.02, d.ys[10] - 0.02) == pytest.approx(float(d.probs[10, 30]))
    assert view.valueAt(5.0, 0.0) is None
    assert view.valueAt(0.0, -5.0) is None


def test_boundary_lies_on_the_diagonal(view):
    view.setDecision(make_decision())
    x, y = view.boundary.getData()
    assert x is not None and len(x) > 20 and len(x) % 2 == 0
    np.testing.assert_allclose(x, y, atol=0.05)
    assert x.min() < -1.8 and x.max() > 1.8  # crosses the whole map


def test_scatter_has_every_point_with_its_label_colour(view):
    d = make_decision(n_points=57)
    view.setDecision(d)
    data = view.scatter.data
    assert len(data) == 57
    np.testing.assert_allclose(np.c_[data["x"], data["y"]], d.points)
    colours = [b.color().getRgb()[:3] for b in data["brush"]]
    expected = [CLASS_COLORS[int(lab)] for lab in d.labels]
    assert colours == expected
    assert {0, 1} <= set(d.labels.tolist())


def test_validation_points_are_hollow_rings(view):
    d = make_decision()
    vp = np.array([[-1.0, 1.0], [1.0, -1.0], [0.5, -0.5]])
    vl = np.array([0, 1, 1])
    view.setDecision(d, validation=(vp, vl))
    data = view.validation.data
    assert len(data) == 3
    assert [p.color().getRgb()[:3] for p in data["pen"]] == [RING_COLORS[i] for i in vl]
    view.setDecision(make_decision(shift=1.0))  # kept when not given again
    assert len(view.validation.data) == 3
    assert "validation" in view.legend.text()
    view.setValidationPoints(None, None)
    assert len(view.validation.data) == 0


def test_mismatched_points_and_labels_are_refused(view):
    d = make_decision()
    bad = Decision(xs=d.xs, ys=d.ys, probs=d.probs, points=d.points, labels=d.labels[:-1])
    with pytest.raises(ValueError, match="labels"):
        view.setDecision(bad)
    with pytest.raises(ValueError, match="must have shape"):
        view.setDecision(Decision(xs=d.xs, ys=d.ys[:-1], probs=d.probs, points=d.points,
                                  labels=d.labels))


def test_items_are_reused_across_updates(view):
    view.setDecision(make_decision())
    items = (view.image, view.boundary, view.scatter, view.validation)
    children = list(view.plot.getPlotItem().items)
    for k in range(5):
        view.setDecision(make_decision(shift=k * 0.3, n_points=40 + k, seed=k))
    assert (view.image, view.boundary, view.scatter, view.validation) == items
    assert list(view.plot.getPlotItem().items) == children
    assert len(view.scatter.data) == 44


def test_none_shows_the_placeholder(view):
    view.setDecision(None)
    assert view.placeholder.isVisible() and view.placeholder.text() == PLACEHOLDER
    assert not view.plot.isVisible()
    assert view.valueAt(0.0, 0.0) is None
    view.setDecision(make_decision())
    assert view.plot.isVisible() and not view.placeholder.isVisible()
    view.setDecision(None)
    assert view.placeholder.isVisible()
    assert len(view.scatter.data) == 0


def test_hover_text(view):
    d = make_decision()
    view.setDecision(d)
    view.hoverAt(float(d.xs[30]), float(d.ys[10]))
    p = float(d.probs[10, 30])
    assert view.hover.text() == f"({d.xs[30]:.3g}, {d.ys[10]:.3g}): P(class 1) = {p:.2f}"
    view.hoverAt(9.0, 9.0)
    assert view.hover.text() == "(9, 9)"


def test_map_covers_the_grid(view):
    d = make_decision()
    view.setDecision(d)
    rect = view.image.mapRectToView(view.image.boundingRect())
    assert rect.left() < -2.0 < 2.0 < rect.right()
    assert rect.top() < -2.0 < 2.0 < rect.bottom()
    img = view.image.image
    assert img.dtype == np.uint8 and img.shape == d.probs.shape
    assert img[0, -1] > 200 and img[-1, 0] < 50  # x > y is class 1 (high), y up


def test_the_drawn_map_shows_both_classes_the_boundary_and_the_points(view, tmp_path):
    d = make_decision(n=80, n_points=200)
    view.setDecision(d)
    QApplication.processEvents()
    img = view.plot.grab().toImage()
    assert img.save(str(tmp_path / "decision.png"))
    vb = view.plot.getPlotItem().getViewBox()

    def colour_at(x, y):
        p = view.plot.mapFromScene(vb.mapViewToScene(QPointF(x, y)))
        return img.pixelColor(p.x(), p.y())
    below, above = colour_at(1.6, -1.6), colour_at(-1.6, 1.6)  # x > y is class 1 (orange), y up
    assert below.red() > below.blue() + 40 and above.blue() > above.red() + 40
    on_line = colour_at(0.37, 0.37)  # the 0.5 boundary lies on the diagonal: a dark line
    assert on_line.lightness() < 120
    dist = np.hypot(*(d.points[:, None, :] - d.points[None, :, :]).transpose(2, 0, 1))
    alone = (dist + np.eye(len(dist)) * 9).min(axis=1) > 0.15  # no other point drawn over it
    assert alone.sum() > 50
    for (x, y), label in zip(d.points[alone], d.labels[alone]):  # each point filled with its class colour
        got = colour_at(x, y).getRgb()[:3]
        assert max(abs(a - b) for a, b in zip(got, CLASS_COLORS[int(label)])) < 40, (x, y, got)


def test_a_wheel_zoom_over_the_plane_has_a_way_back(view, qtbot):
    view.setDecision(make_decision())
    vb = view.plot.getPlotItem().getViewBox()
    framed = vb.viewRect()
    wheel(qtbot, view.plot.viewport(), view.plot.viewport().rect().center(), 120 * 3)  # in
    qtbot.waitUntil(view.resetButton.isVisible)
    assert vb.viewRect().width() < 0.8 * framed.width()
    view.setDecision(make_decision(shift=0.5))  # the next frame, the same grid: the zoom stays
    assert vb.viewRect().width() < 0.8 * framed.width()
    qtbot.mouseClick(view.resetButton, Qt.MouseButton.LeftButton)
    assert not view.resetButton.isOffered()
    assert abs(vb.viewRect().width() - framed.width()) < 1e-6 * framed.width()
