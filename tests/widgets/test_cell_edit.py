"""Edit while paused in a tensor view: a double-click opens an editor for the cell under the mouse."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from core.snapshot import TensorSnapshot
from widgets.tensor_panel import TensorPanel
from widgets.tensor_view import TensorView

from .keys import shown, type_into
from .test_tensor_view import av


@pytest.fixture
def view(qtbot):
    return shown(qtbot, TensorView(), 420, 380)


def double_click_cell(qtbot, tv: TensorView, x: float, y: float) -> None:
    """A real double-click at data point (x, y) of the drawn tensor."""
    pw = tv.pages.currentWidget()
    vb = pw.getPlotItem().getViewBox()
    qtbot.waitUntil(lambda: vb.viewRect().contains(QPointF(x, y)))
    pos = pw.mapFromScene(vb.mapViewToScene(QPointF(x, y)))
    QTest.mouseDClick(pw.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_double_click_edits_the_cell_under_the_mouse(view, qtbot):
    view.setView(av(np.arange(12, dtype=np.float32).reshape(3, 4)), "weight")
    double_click_cell(qtbot, view, 2.5, 1.5)  # row 1, column 2
    qtbot.waitUntil(view.isEditing)
    assert view.editPrompt.text() == "weight[1, 2] ="
    assert view.editField.text() == "6"
    with qtbot.waitSignal(view.valueEdited) as sig:
        type_into(qtbot, view.editField, "-2.5")
    assert sig.args == [(1, 2), -2.5]
    assert not view.isEditing()


def test_a_preview_cell_edits_the_element_it_stands_for(view, qtbot):
    full = np.arange(600 * 10, dtype=np.float32).reshape(600, 10)
    view.setView(av(full, stride=(3, 1)), "big")
    view.editAt(5, 7)
    assert view.editPrompt.text() == "big[15, 7] ="
    assert float(view.editField.text()) == full[15, 7]


def test_fill_sets_every_element_and_bad_text_is_refused_in_one_line(view, qtbot):
    view.setView(av(np.zeros(5, np.float32)), "bias")
    qtbot.mouseClick(view.fillButton, Qt.MouseButton.LeftButton)
    assert view.isEditing() and view.editPrompt.text() == "fill all 5 of bias with"
    type_into(qtbot, view.editField, "abc")
    assert view.isEditing() and view.editNote.text() == "abc is not a number"
    type_into(qtbot, view.editField, "inf")
    assert view.editNote.text() == "the value must be a finite number"
    with qtbot.waitSignal(view.valueEdited) as sig:
        type_into(qtbot, view.editField, "0.5")
    assert sig.args == [None, 0.5]


def test_escape_cancels_and_nothing_is_asked(view, qtbot):
    view.setView(av(np.ones((2, 2), np.float32)), "w")
    view.editAt(0, 1)
    with qtbot.assertNotEmitted(view.valueEdited):
        QTest.keyClick(view.editField, Qt.Key.Key_Escape)
    assert not view.isEditing()


def test_while_not_editable_a_double_click_says_why(view, qtbot):
    view.setView(av(np.ones((2, 2), np.float32)), "w")
    view.setEditable(False, "pause the run to edit values")
    assert not view.fillButton.isEnabled()
    with qtbot.assertNotEmitted(view.valueEdited):
        double_click_cell(qtbot, view, 0.5, 0.5)
        qtbot.waitUntil(lambda: "pause the run" in view.hover.text())
    assert not view.isEditing()


def test_the_panel_names_the_tensor_and_the_entry_edited(qtbot):
    panel = shown(qtbot, TensorPanel(), 800, 500)
    ts = TensorSnapshot("fc.weight", 0, 0, av(np.zeros((2, 2), np.float32)), av(np.ones((2, 2), np.float32)),
                        state={"exp_avg": av(np.full((2, 2), 3.0, np.float32))})
    panel.setTensor(ts)
    view = panel.views()["exp_avg"]
    view.editAt(1, 0)
    assert view.editField.text() == "3"
    with qtbot.waitSignal(panel.valueEdited) as sig:
        type_into(qtbot, view.editField, "7")
    assert sig.args == ["fc.weight", "exp_avg", (1, 0), 7.0]
    panel.setEditable(False, "pause the run to edit values")
    assert not any(v.fillButton.isEnabled() for v in panel.views().values())


def test_a_double_click_edits_and_explains_nothing_while_a_single_click_explains(view, qtbot):
    from PySide6.QtWidgets import QApplication

    from .test_tensor_view import click_on
    view.setView(av(np.arange(12, dtype=np.float32).reshape(3, 4)), "weight")
    with qtbot.assertNotEmitted(view.elementClicked, wait=QApplication.doubleClickInterval() + 300):
        click_on(view, 2.5, 1.5, qtbot)  # a double-click's first click...
        double_click_cell(qtbot, view, 2.5, 1.5)  # ...and its second
    assert view.isEditing() and view.editPrompt.text() == "weight[1, 2] ="
    view.cancelEdit()
    with qtbot.waitSignal(view.elementClicked) as sig:
        click_on(view, 2.5, 1.5, qtbot)  # one click, nothing after it: explain
    assert sig.args == [(1, 2)] and not view.isEditing()
