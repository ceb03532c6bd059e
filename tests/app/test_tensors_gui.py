"""The tensor views in the window: exact values on hover (fetched from the runner process), zoom."""
from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF

from . import probes
from .conftest import on_runner, quadratic_spec, wait_step


def test_hover_over_a_previewed_heatmap_shows_the_exact_value_and_follows_steps(make_window, qtbot):
    win = make_window(quadratic_spec(optimizer="SGD", hparams={"lr": 0.1}, shape=(512, 512)))
    view = win.tensor_panel.views()["value"]
    qtbot.waitUntil(lambda: view.view() is not None)  # the first frame (a loaded machine builds it late)
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


def test_while_running_frames_carry_the_shown_tensors_values_and_paused_every_tensors(make_window, qtbot):
    """Frames copied every tensor's values; the window shows one tensor (and the state dict
    the rest). While running only the shown tensor's values (and small tensors') travel,
    the others as statistics; switching tensors brings its values; paused, all of them."""
    from core.spec import GradientSpec, SessionSpec, TensorSpec
    spec = SessionSpec(optimizer="Adam", tensors=(TensorSpec("big", (40, 40)), TensorSpec("other", (40, 40)),
                                                   TensorSpec("bias", (8,))),
                       gradient=GradientSpec(kind="objective", objective="quadratic"), zero_grad_each_step=True)
    win = make_window(spec)
    win.bridge.set_rate_limit(300)

    def carried(s):
        return {t.name for t in s.tensors if t.value.shown and t.state["exp_avg"].shown}
    win.run()
    qtbot.waitUntil(lambda: win.snapshot.running and win.snapshot.step > 5 and carried(win.snapshot) == {"big", "bias"})
    other = win.snapshot.tensor("other").state["exp_avg"]
    assert other.values.size == 0 and other.max > other.min  # its statistics still travel
    win.tensor_combo.setCurrentText("other")  # this frame has its statistics only: the views say so
    view = win.tensor_panel.views()["value"]
    assert view.placeholder.text() == "values come with the next frame" or carried(win.snapshot) >= {"other"}
    qtbot.waitUntil(lambda: win.snapshot.running and carried(win.snapshot) == {"other", "bias"})
    win.pause()
    qtbot.waitUntil(lambda: not win.snapshot.running and carried(win.snapshot) == {"big", "other", "bias"})
