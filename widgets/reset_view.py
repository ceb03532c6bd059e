"""The way back after a zoom or a pan: a small button over a plot's top-right corner that
appears once the user has moved the plot's view (mouse wheel, drag) and, clicked, frames the
plot as it was drawn and hides again.

The plots have neither pyqtgraph's "A" button nor its context menu (they were clutter and
offered options that fight the app's own framing), so without this a wheel turned over the
curves or the landscape left them zoomed with no way back. It floats over the plot rather than
taking a place in a row of the panel: appearing there, it had widened the Curves dock by 23 px
at 1280x800 (the row's labels cannot shrink).
"""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QToolButton, QWidget

MARGIN = 4  # px from the plot's top and right edges

STYLE = ("QToolButton { background: rgba(245, 245, 245, 215); color: black; border: 1px solid grey;"
         " border-radius: 3px; padding: 1px 5px; }")


class ResetView(QToolButton):
    """Over ``host``'s top-right corner, hidden until a watched view box is zoomed or panned by
    hand; a click calls ``reset`` (which frames the plots again) and hides the button."""

    def __init__(self, host: QWidget, reset: Callable[[], None], text: str = "reset view",
                 tip: str = "Back to the whole plot (the wheel zooms, drag pans)") -> None:
        super().__init__(host)
        self._reset = reset
        self.setText(text)
        self.setToolTip(tip)
        self.setStyleSheet(STYLE)
        self.hide()
        self.clicked.connect(self._clicked)
        host.installEventFilter(self)

    def watch(self, vb) -> None:
        """Show the button when ``vb`` (a pyqtgraph ViewBox) is moved by the mouse (not by code)."""
        vb.sigRangeChangedManually.connect(self._moved)

    def isOffered(self) -> bool:
        """Whether a view is zoomed or panned by hand (the button is offered)."""
        return not self.isHidden()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.Resize and not self.isHidden():
            self._place()
        return False

    def _place(self) -> None:
        host = self.parentWidget()
        self.adjustSize()
        self.move(max(0, host.width() - self.width() - MARGIN), MARGIN)
        self.raise_()

    def _moved(self, *_) -> None:
        if self.isHidden():
            self._place()
            self.show()

    def _clicked(self) -> None:
        self.hide()
        self._reset()
