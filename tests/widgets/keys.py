"""Helpers for the widget tests: a widget shown on screen, typing into a line edit as a user
does (focus, select all, type, Enter), and a turn of the mouse wheel."""
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication


def type_into(qtbot, line, text):
    line.setFocus()
    line.selectAll()
    qtbot.keyClicks(line, text)
    qtbot.keyClick(line, Qt.Key.Key_Return)


def shown(qtbot, widget, width: int, height: int):
    """``widget`` at ``width`` x ``height``, shown and exposed (closed by qtbot at the end)."""
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def wheel(qtbot, widget, pos, dy: int, ctrl: bool = False):
    """A real wheel event at ``pos`` of ``widget`` (what a mouse wheel sends)."""
    mods = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    ev = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, dy),
                     Qt.MouseButton.NoButton, mods, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)
