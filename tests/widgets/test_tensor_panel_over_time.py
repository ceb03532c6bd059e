"""The tensor panel's "over time" view: each entry's distribution over the steps, in its place."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from widgets.tensor_panel import TensorPanel

from .keys import shown
from .test_density_strip import edges
from .test_tensor_view import av, snapshot


def dist(n_steps: int, bin_: int = 40):
    counts = np.zeros((n_steps, len(edges()) + 2))
    counts[:, bin_] = 6
    return np.arange(1.0, n_steps + 1), edges(), counts


@pytest.fixture
def panel(qtbot):
    p = TensorPanel()
    shown(qtbot, p, 700, 600)
    m = av(np.ones((2, 3), np.float32))
    p.setTensor(snapshot({"exp_avg": m, "exp_avg_sq": m}))
    return p


def test_over_time_puts_a_strip_in_place_of_every_entry_and_back(panel, qtbot):
    assert panel.strips() == {}
    size = panel.viewSizes()["value"]
    with qtbot.waitSignal(panel.overTimeChanged) as sig:
        qtbot.mouseClick(panel.overTimeButton, Qt.MouseButton.LeftButton)
    assert sig.args == [True]
    strips = panel.strips()
    assert list(strips) == ["value", "grad", "exp_avg", "exp_avg_sq"]
    assert all(s.isVisible() for s in strips.values())
    assert not any(v.isVisible() for v in panel.views().values())
    assert all(s.note.isVisible() for s in strips.values())  # nothing measured yet, and it says so
    qtbot.waitUntil(lambda: (strips["value"].width(), strips["value"].height()) == size)  # the same room

    panel.setDistributions("fc.weight", {"value": dist(5), "exp_avg": dist(5, 60)})
    assert strips["value"].image.image.shape == (len(edges()) + 2, 5)
    assert not strips["exp_avg"].note.isVisible() and strips["grad"].note.isVisible()
    assert panel.distribution("exp_avg")[0][-1] == 5

    qtbot.mouseClick(panel.overTimeButton, Qt.MouseButton.LeftButton)
    assert panel.strips() == {}
    assert all(v.isVisible() for v in panel.views().values())
    assert not any(s.isVisible() for s in strips.values())


def test_another_tensors_histories_never_show_under_this_ones_name(panel):
    panel.setOverTime(True)
    panel.setDistributions("other.bias", {"value": dist(3)})  # an answer that came too late
    assert panel.distribution("value") is None and panel.strips()["value"].note.isVisible()
    panel.setDistributions("fc.weight", {"value": dist(3)})
    assert panel.distribution("value") is not None
    ts = snapshot({"exp_avg": av(np.ones((2, 3), np.float32))})
    panel.setTensor(ts.__class__(**{**ts.__dict__, "name": "fc.bias"}))
    assert panel.distribution("value") is None and panel.strips()["value"].note.isVisible()
    assert list(panel.strips()) == ["value", "grad", "exp_avg"]  # the vanished entry's strip went too


def test_new_entries_never_flash_as_windows_of_their_own(qtbot):
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QApplication, QWidget

    class Windows(QObject):
        shown: list = []

        def eventFilter(self, obj, ev):  # noqa: N802 (Qt name)
            if ev.type() == QEvent.Type.Show and isinstance(obj, QWidget) and obj.isWindow():
                self.shown.append(type(obj).__name__)
            return False
    p = TensorPanel()
    shown(qtbot, p, 700, 600)
    spy = Windows()
    QApplication.instance().installEventFilter(spy)
    try:
        p.setTensor(snapshot({}))
        p.setTensor(snapshot({"exp_avg": av(np.ones((2, 3), np.float32))}))  # the first step's state
        p.setOverTime(True)
        p.setOverTime(False)
    finally:
        QApplication.instance().removeEventFilter(spy)
    assert spy.shown == []  # a window shown took the focus from the main window (its shortcuts went dead)
    assert all(v.isVisible() for v in p.views().values())


def test_where_nothing_feeds_the_strips_over_time_is_not_offered(panel):
    panel.offerOverTime(False)
    assert not panel.overTimeButton.isVisible() and not panel.overTime()
    panel.setTensor(snapshot({}))
    assert not panel.overTimeButton.isVisible()
