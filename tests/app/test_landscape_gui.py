"""The Landscape tab follows the session: its objective now, or why there is none; a click sets the start."""
from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt

from core.spec import GradientSpec, SessionSpec, TensorSpec

from .conftest import manual_spec, wait_idle

LEFT = Qt.MouseButton.LeftButton


def rosenbrock_spec():
    return SessionSpec(optimizer="Adam", hparams={"lr": 0.05},
                       tensors=(TensorSpec("xy", (2,), init="values", values=[-1.5, 2.0]),),
                       gradient=GradientSpec("objective", objective="rosenbrock"))


def himmelblau(x, y):
    return (x * x + y - 11.0) ** 2 + (x + y * y - 7.0) ** 2


def test_switching_objective_redraws_the_map_at_once_and_no_objective_says_so(make_window, qtbot):
    win = make_window(rosenbrock_spec())
    win.landscape_dock.raise_()
    land = win.landscape
    qtbot.waitUntil(land.isShowingMap)
    assert land.valueAt(1.0, 1.0) < 0.1  # Rosenbrock's minimum

    win.problem_dock.raise_()
    win.problem.objective.setCurrentText("himmelblau")  # no step afterwards
    qtbot.waitUntil(lambda: win.spec.gradient.objective == "himmelblau")
    win.landscape_dock.raise_()
    qtbot.waitUntil(lambda: land.isShowingMap() and land.valueAt(3.0, 2.0) is not None
                    and land.valueAt(3.0, 2.0) < 1.0)
    assert land.valueAt(0.0, 0.0) > 100  # himmelblau(0, 0) = 170, not Rosenbrock's 1
    assert abs(land.valueAt(0.0, 0.0) - himmelblau(0.0, 0.0)) < 15  # the nearest grid point

    win.problem_dock.raise_()
    win.problem_mode.setCurrentIndex(1)  # a training task: no 2-number objective
    qtbot.waitUntil(lambda: win.spec.gradient.kind == "task")
    win.landscape_dock.raise_()
    qtbot.waitUntil(lambda: not land.isShowingMap() and land.message.isVisible())
    assert land.message.text().startswith("No landscape")
    assert land.valueAt(1.0, 1.0) is None  # nothing of Rosenbrock is left behind


def test_a_manual_problem_has_no_landscape_and_says_why(make_window, qtbot):
    win = make_window(manual_spec())
    win.landscape_dock.raise_()
    qtbot.waitUntil(lambda: win.landscape.message.isVisible())
    assert "objective of 2 numbers" in win.landscape.message.text()


def test_clicking_the_map_restarts_the_run_from_there(make_window, qtbot):
    win = make_window(rosenbrock_spec())
    win.landscape_dock.raise_()
    win.step(5)
    qtbot.waitUntil(lambda: win.snapshot.step == 5 and win.landscape.isShowingMap())
    vb = win.landscape.plot.getPlotItem().getViewBox()
    scene = vb.mapViewToScene(QPointF(0.5, -0.5))
    at = win.landscape.plot.mapFromScene(scene)
    qtbot.mouseClick(win.landscape.plot.viewport(), LEFT, pos=QPoint(at.x(), at.y()))
    qtbot.waitUntil(lambda: win.snapshot.step == 0 and win.spec.tensors[0].init == "values"
                    and win.spec.tensors[0].values != [-1.5, 2.0])
    wait_idle(qtbot, win)
    x, y = win.snapshot.tensor("xy").value.values
    assert abs(x - 0.5) < 0.05 and abs(y + 0.5) < 0.05  # where the click was, within a pixel or two
    cx, cy = win.landscape.current.getData()  # the current point is drawn there, before any step
    assert [list(cx), list(cy)] == [[x], [y]]
    assert win.dirty
