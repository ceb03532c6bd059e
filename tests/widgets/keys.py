"""Helpers for the widget tests: a widget shown on screen, and typing into a line edit as a user
does (focus, select all, type, Enter)."""
from PySide6.QtCore import Qt


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
