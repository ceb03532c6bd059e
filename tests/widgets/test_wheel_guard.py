"""The wheel changes a combo box or spin box only when it has the focus; unfocused, it scrolls the form."""
from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QScrollArea

from core.hparams import BOOL, CHOICE, FLOAT, HyperParam, OptimizerInfo
from core.spec import SessionSpec, TensorSpec
from widgets.hparam_form import HparamForm
from widgets.problem_editor import ProblemEditor
from widgets.run_controls import RunControls

from .keys import shown


def wheel(widget, dy: int = -120) -> None:
    """One notch of the wheel over the middle of ``widget``."""
    pos = widget.rect().center()
    ev = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, dy),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


def test_wheel_over_an_unfocused_combo_changes_nothing_and_scrolls_the_panel(qtbot):
    editor = shown(qtbot, ProblemEditor(), 340, 300)  # short: the panel scrolls
    editor.setSpec(SessionSpec(tensors=(TensorSpec("w", (2, 2)),)))
    when = editor.when
    assert when.focusPolicy() == Qt.FocusPolicy.StrongFocus
    editor.kind.setFocus()
    scroll = editor.findChild(QScrollArea)
    before = when.currentText()
    with qtbot.assertNotEmitted(editor.specEdited):
        wheel(when)
        wheel(editor.objective)
        wheel(editor.seed)
    assert when.currentText() == before and editor.seed.value() == 0
    assert scroll.verticalScrollBar().value() > 0  # the wheel scrolled the panel instead

    when.setFocus()  # clicked or tabbed into: now the wheel is the user's way to choose
    qtbot.waitUntil(when.hasFocus)
    with qtbot.waitSignal(editor.specEdited):
        wheel(when)
    assert when.currentText() != before


def test_wheel_over_unfocused_form_and_control_boxes_changes_nothing(qtbot):
    form = shown(qtbot, HparamForm(), 300, 200)
    form.setOptimizer(OptimizerInfo("Lab", "", (HyperParam("lr", FLOAT, 0.1, ""),
                                                HyperParam("nesterov", BOOL, False, ""),
                                                HyperParam("fn", CHOICE, None, "", choices=(None, "a"),
                                                           optional=True))))
    combo = form.editor("fn")
    with qtbot.assertNotEmitted(form.valueChanged):
        wheel(combo)
    assert combo.currentIndex() == 0
    controls = shown(qtbot, RunControls(), 360, 160)
    with qtbot.assertNotEmitted(controls.speedLimitChanged):
        wheel(controls.speedBox, 120)
    wheel(controls.stepCountBox, 120)
    assert controls.speedLimit() == 0 and controls.stepCount() == 50
