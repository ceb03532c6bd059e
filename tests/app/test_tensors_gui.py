"""The tensor views in the window: exact values on hover (fetched from the runner process), zoom."""
from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF

from . import probes
from .conftest import on_runner, quadratic_spec, wait_step


def test_hover_over_a_previewed_heatmap_shows_the_exact_value_and_follows_steps(make_window, qtbot):
    win = make_window(quadratic_spec(optimizer="SGD", hparams={"lr": 0.1}, shape=(512, 512)))
    view = win.tensor_panel.views()["value"]
    assert not view.view().exact and view.view().stride == (2, 2)  # a preview: exact values are fetched
    plot = view.pages.currentWidget()
    vb = plot.getPlotItem().getViewBox()
    qtbot.waitUntil(lambda: vb.viewRect().contains(QPointF(100.5, 201.5)))
    at = plot.mapFromScene(vb.mapViewToScene(QPointF(100.5, 201.5)))
    qtbot.mouseMove(plot.viewport(), QPoint(at.x(), at.y()))
    qtbot.waitUntil(lambda: view.hover.text().endswith("(exact)"))
    exact = on_runner(win, probes.value_at, "weight", (200, 100))
    assert view.hover.text() == f"[200, 100] = {exact:.8g} (exact)"

    win.step(1)  # the mouse rests: the read-out follows the new value
    wait_step(qtbot, win, 1)
    after = on_runner(win, probes.value_at, "weight", (200, 100))
    assert after != exact
    qtbot.waitUntil(lambda: view.hover.text() == f"[200, 100] = {after:.8g} (exact)")


def test_a_zoom_does_not_survive_an_optimizer_switch(make_window, qtbot):
    win = make_window(quadratic_spec(optimizer="SGD", hparams={"lr": 0.1}, shape=(8, 8)))
    view = win.tensor_panel.views()["value"]
    vb = view.pages.currentWidget().getPlotItem().getViewBox()
    vb.scaleBy((0.3, 0.3))  # as Ctrl+wheel does
    vb.sigRangeChangedManually.emit(vb.state["mouseEnabled"])
    qtbot.waitUntil(view.isZoomed)
    win.optimizer_panel.combo.setCurrentText("Adam")
    qtbot.waitUntil(lambda: win.snapshot.optimizer == "Adam")
    qtbot.waitUntil(lambda: not view.isZoomed())
    (x0, x1), (y0, y1) = vb.viewRange()
    assert x0 <= 0 and x1 >= 8 and y0 <= 0 and y1 >= 8
