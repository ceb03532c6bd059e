"""Typing into a line edit as a user does: focus, select all, type, Enter."""
from PySide6.QtCore import Qt


def type_into(qtbot, line, text):
    line.setFocus()
    line.selectAll()
    qtbot.keyClicks(line, text)
    qtbot.keyClick(line, Qt.Key.Key_Return)
