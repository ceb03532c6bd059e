"""The mouse wheel changes a combo box or spin box only when it has the focus (Qt's
convention: Qt.StrongFocus plus a wheel filter). Unfocused, the wheel scrolls the form
that holds it, so scrolling a panel never edits a value on the way (a gradient "once"
turned into "every step" restarted the run).
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QScrollArea, QWidget


def scroll_enclosing(widget: QWidget | None, event: QWheelEvent) -> None:
    """Scroll the nearest QScrollArea holding ``widget`` as ``event`` would (handed over
    explicitly: Qt does not pass synthetic wheel events to the parents)."""
    while widget is not None and not isinstance(widget, QScrollArea):
        widget = widget.parentWidget()
    if widget is None:
        return
    bar = widget.verticalScrollBar() if event.angleDelta().y() else widget.horizontalScrollBar()
    QApplication.sendEvent(bar, QWheelEvent(
        event.position(), event.globalPosition(), event.pixelDelta(), event.angleDelta(),
        event.buttons(), event.modifiers(), event.phase(), event.inverted()))


class _WheelGuard(QObject):
    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.Wheel and not obj.hasFocus():
            scroll_enclosing(obj.parentWidget(), event)
            return True
        return False


class PlotWheel(QObject):
    """On a plot's viewport: the wheel scrolls the scroll area that holds the plot (the
    column of tensors), as the wheel does everywhere else; Ctrl+wheel zooms the plot."""

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if event.type() != QEvent.Type.Wheel or event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            return False
        plot = obj.parentWidget()  # the plot is a scroll area itself: start above it
        scroll_enclosing(plot.parentWidget() if plot is not None else None, event)
        return True


_guard: _WheelGuard | None = None


def guard(*widgets: QWidget) -> None:
    """Combo and spin boxes in ``widgets`` take the wheel only when focused (click or Tab)."""
    global _guard
    if _guard is None:
        _guard = _WheelGuard(QApplication.instance())
    for w in widgets:
        w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        w.installEventFilter(_guard)


def guard_all(root: QWidget) -> None:
    """``guard`` every combo box and spin box under ``root``."""
    guard(*root.findChildren(QComboBox), *root.findChildren(QAbstractSpinBox))
