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

import weakref
from types import MethodType

from PySide6.QtWidgets import QToolButton, QWidget

MARGIN = 4  # px from the plot's top and right edges

STYLE = ("QToolButton { background: rgba(245, 245, 245, 215); color: black; border: 1px solid grey;"
         " border-radius: 3px; padding: 1px 5px; }")


class ResetView(QToolButton):
    """Over ``host``'s top-right corner, hidden until a watched view box is zoomed or panned by
    hand; a click calls ``reset`` (the owner's method that frames the plots again) and hides the
    button."""

    def __init__(self, host: QWidget, reset: MethodType, text: str = "reset view",
                 tip: str = "Back to the whole plot (the wheel zooms, drag pans)") -> None:
        super().__init__(host)
        # weakly: the owner holds this button, and a cycle through Qt objects is freed whenever the
        # collector runs (widgets/gui_gc.py), not when the owner goes
        self._reset = weakref.WeakMethod(reset)
        self.setText(text)
        self.setToolTip(tip)
        self.setStyleSheet(STYLE)
        self.hide()
        self.clicked.connect(self._clicked)

    def watch(self, vb) -> None:
        """Show the button when ``vb`` (a pyqtgraph ViewBox) is moved by the mouse (not by code);
        keep it in the corner when the plot is resized."""
        vb.sigRangeChangedManually.connect(self._moved)
        vb.sigResized.connect(self._follow)

    def isOffered(self) -> bool:
        """Whether a view is zoomed or panned by hand (the button is offered)."""
        return not self.isHidden()

    def _follow(self, *_) -> None:
        if not self.isHidden():
            self._place()

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
        reset = self._reset()
        if reset is not None:
            reset()
