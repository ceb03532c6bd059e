"""The timeline strip: the current branch's steps 0..head as a scrubber, and a "go to step" field.

Dragging the handle or typing a step asks for that step (``gotoRequested``); the app answers by
rewinding the session and pushing the new position back with ``setPosition``. While the
handle is held, or a request is still being answered, the position shown is the one asked
for, never an older frame's. A line under the scrubber says where the session stands, and
says plainly when it is rewound (stepping from there forks a new branch).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QProxyStyle, QSlider, QSpinBox, QStyle, QToolButton,
                               QVBoxLayout, QWidget)

from widgets.wheel_guard import guard

REWOUND_COLOR = "#e65100"  # orange: not an error, but not where the run left off either


def position_text(step: int, head: int, branch: int, at_head: bool) -> str:
    """One line: where the session stands on its branch."""
    if at_head:
        return f"step {step:,} of branch {branch} (its last)"
    return f"rewound to step {step:,} of branch {branch} (of {head:,}) — stepping forks a new branch"


class _ClickJumps(QProxyStyle):
    """A click on the groove puts the handle where it was clicked (a plain QSlider moves it one
    page towards the click: clicking step 600 of 1,900 went back 10 steps)."""

    def styleHint(self, hint, option=None, widget=None, returnData=None):
        if hint == QStyle.StyleHint.SH_Slider_AbsoluteSetButtons:
            return Qt.MouseButton.LeftButton.value
        return super().styleHint(hint, option, widget, returnData)


class TimelineStrip(QWidget):
    """A slider over steps 0..head of the current branch, a step field and a "latest" button.

    ``gotoRequested(step)``: the user dragged to or typed ``step``; ``headRequested()``: back to
    the branch's last step. The app pushes the session's position in with ``setPosition``.
    """

    gotoRequested = Signal(int)
    headRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._step = 0
        self._head = 0
        self._held = False  # a request is being answered: frames must not move the handle back
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        # no base given: the proxy follows the application's style without taking ownership of it
        self._style = _ClickJumps()
        self._style.setParent(self.slider)  # the slider does not own a style set on it
        self.slider.setStyle(self._style)
        self.slider.setToolTip("The current branch's steps: drag to rewind to any of them "
                               "(exactly as the run was there)")
        guard(self.slider)  # the wheel over an unfocused slider scrolls the dock, never rewinds
        self.stepBox = QSpinBox()
        self.stepBox.setRange(0, 0)
        self.stepBox.setGroupSeparatorShown(True)
        self.stepBox.setKeyboardTracking(False)  # one request when the number is typed, not per digit
        self.stepBox.setToolTip("Go to this step of the current branch (Enter)")
        self.stepBox.setMinimumWidth(72)
        guard(self.stepBox)
        self.headButton = QToolButton()
        self.headButton.setText("latest")
        self.headButton.setToolTip("Back to the branch's last step")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addWidget(QLabel("step"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.stepBox)
        row.addWidget(self.headButton)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(row)
        lay.addWidget(self.label)

        self.slider.valueChanged.connect(self._on_slider)
        self.slider.sliderReleased.connect(lambda: self._ask(self.slider.value()))
        self.stepBox.valueChanged.connect(self._ask)
        self.headButton.clicked.connect(self.headRequested)
        self.setPosition(0, 0, 0, True)

    # ----------------------------------------------------------------- public
    def setPosition(self, step: int, head: int, branch: int, at_head: bool, start: int = 0) -> None:
        """Show ``step`` of ``branch`` (whose last step is ``head``, first ``start``: a session resumed
        from a checkpoint starts at its step); ``at_head`` False: rewound."""
        self._step, self._head, self._start = int(step), int(head), int(start)
        self.label.setText(position_text(step, head, branch, at_head))
        self.label.setStyleSheet("" if at_head else f"color: {REWOUND_COLOR}; font-weight: bold;")
        self.headButton.setEnabled(not at_head)
        if self.slider.isSliderDown() or self._held:
            return  # the user's choice stays on screen until it is answered
        self._show(step, head)

    def setHeld(self, held: bool) -> None:
        """While ``held`` (a request in flight) frames do not move the handle or the field."""
        self._held = bool(held)
        if not held and not self.slider.isSliderDown():
            self._show(self._step, self._head)

    def step(self) -> int:
        return self._step

    def positionText(self) -> str:
        return self.label.text()

    # -------------------------------------------------------------- internals
    def _show(self, step: int, head: int) -> None:
        for w in (self.slider, self.stepBox):
            w.blockSignals(True)
            w.setRange(self._start, max(self._start, head))  # no step before the branch's first
            w.setValue(step)
            w.blockSignals(False)

    def _on_slider(self, value: int) -> None:
        self.stepBox.blockSignals(True)
        self.stepBox.setValue(value)
        self.stepBox.blockSignals(False)
        self._ask(value)  # while dragging too: the app sends the newest once the last is answered

    def _ask(self, step: int) -> None:
        if step != self._step or self._held:
            self.gotoRequested.emit(int(step))
