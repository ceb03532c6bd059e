"""Buttons that drive the run: step, step N, run/pause, zero_grad, reset, add group.

The widget only asks (signals); the app answers with `setRunning`, `setBusy` and
`setProgress`, so what the buttons show always follows the runner's real state.
"""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QGridLayout, QHBoxLayout, QLabel, QProgressBar,
                               QPushButton, QSpinBox, QWidget)

from widgets.wheel_guard import guard_all

STEP_N_DEFAULT = 50
STEP_N_MAX = 1_000_000
SPEED_MAX = 100_000


class RunControls(QWidget):
    """Run buttons plus the zero_grad mode, a speed limit and a Step N progress bar."""

    stepRequested = Signal(int)
    runRequested = Signal()
    pauseRequested = Signal()
    zeroGradRequested = Signal(bool)  # set_to_none
    resetRequested = Signal()
    addGroupRequested = Signal()
    cancelRequested = Signal()
    speedLimitChanged = Signal(float)  # max steps per second, 0 = unlimited
    setToNoneChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._running = False
        self._busy = False

        self.stepButton = QPushButton("Step")
        self.stepButton.setToolTip("optimizer.step() once")
        self.stepNButton = QPushButton("Step N")
        self.stepNButton.setToolTip("optimizer.step() N times, then stop")
        self.stepCountBox = QSpinBox(minimum=1, maximum=STEP_N_MAX, value=STEP_N_DEFAULT)
        self.stepCountBox.setGroupSeparatorShown(True)
        self.stepCountBox.setToolTip("N for Step N")
        self.runButton = QPushButton("Pause")
        self.runButton.setMinimumWidth(self.runButton.sizeHint().width())
        self.runButton.setText("Run")
        self.runButton.setToolTip("Step until paused")
        self.zeroGradButton = QPushButton("Zero grad")
        self.zeroGradButton.setToolTip("optimizer.zero_grad(set_to_none=...)")
        self.setToNoneBox = QCheckBox("set_to_none", checked=True)
        self.setToNoneBox.setToolTip("zero_grad sets .grad to None (torch's default) "
                                     "instead of filling it with zeros")
        self.resetButton = QPushButton("Reset")
        self.resetButton.setToolTip("Back to step 0: fresh tensors and optimizer")
        self.addGroupButton = QPushButton("Add group")
        self.addGroupButton.setToolTip("optimizer.add_param_group(...)")
        self.speedBox = QSpinBox(minimum=0, maximum=SPEED_MAX, value=0)
        self.speedBox.setSpecialValueText("unlimited")
        self.speedBox.setSuffix(" steps/s")
        self.speedBox.setGroupSeparatorShown(True)
        self.speedBox.setToolTip("Slow the run down to watch it (0 = as fast as possible)")
        self.progressBar = QProgressBar()
        self.progressBar.setFormat("%v / %m")
        self.cancelButton = QPushButton("Cancel")
        self.cancelButton.setToolTip("Stop Step N after the current step")

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(4)
        grid.setVerticalSpacing(4)
        grid.addWidget(self.stepButton, 0, 0)
        grid.addWidget(self.stepNButton, 0, 1)
        grid.addWidget(self.stepCountBox, 0, 2)
        grid.addWidget(self.runButton, 0, 3)
        grid.addWidget(self.zeroGradButton, 1, 0)
        grid.addWidget(self.setToNoneBox, 1, 1, 1, 2)
        grid.addWidget(self.addGroupButton, 1, 3)
        speed = QHBoxLayout()
        speed.addWidget(QLabel("max speed"))
        speed.addWidget(self.speedBox, 1)
        grid.addLayout(speed, 2, 0, 1, 3)
        grid.addWidget(self.resetButton, 2, 3)
        progress = QHBoxLayout()
        progress.addWidget(self.progressBar, 1)
        progress.addWidget(self.cancelButton)
        grid.addLayout(progress, 3, 0, 1, 4)
        for c in range(4):
            grid.setColumnStretch(c, 1)
        self.progressBar.hide()
        self.cancelButton.hide()
        guard_all(self)
        # a spin box asks for room for its largest value ("1,000,000"): on a small screen the
        # tensors need that width more; the numbers typed scroll inside the box
        self.stepCountBox.setMinimumWidth(64)
        self.speedBox.setMinimumWidth(96)

        self.stepButton.clicked.connect(lambda: self.stepRequested.emit(1))
        self.stepNButton.clicked.connect(lambda: self.stepRequested.emit(self.stepCountBox.value()))
        self.runButton.clicked.connect(self._run_clicked)
        self.zeroGradButton.clicked.connect(
            lambda: self.zeroGradRequested.emit(self.setToNoneBox.isChecked()))
        self.setToNoneBox.toggled.connect(self.setToNoneChanged)
        self.resetButton.clicked.connect(self.resetRequested)
        self.addGroupButton.clicked.connect(self.addGroupRequested)
        self.cancelButton.clicked.connect(self.cancelRequested)
        self.speedBox.valueChanged.connect(lambda v: self.speedLimitChanged.emit(float(v)))

    # ---- state the app pushes in ---------------------------------------------
    def setRunning(self, running: bool) -> None:
        """The Run/Pause button shows what a click would do next."""
        self._running = bool(running)
        self.runButton.setText("Pause" if self._running else "Run")
        self.runButton.setToolTip("Pause after the current step" if self._running
                                  else "Step until paused")
        self._update_enabled()

    def isRunning(self) -> bool:
        return self._running

    def setBusy(self, busy: bool) -> None:
        """Disable stepping while a Step N or a run owns the optimizer."""
        self._busy = bool(busy)
        self._update_enabled()

    def isBusy(self) -> bool:
        return self._busy

    def setProgress(self, done: int, total: int) -> None:
        """Show Step N progress; hidden once ``done >= total`` or when ``total == 0``."""
        active = total > 0 and done < total
        if active:
            self.progressBar.setRange(0, int(total))
            self.progressBar.setValue(max(0, int(done)))
        self.progressBar.setVisible(active)
        self.cancelButton.setVisible(active)

    def setSetToNone(self, on: bool) -> None:
        self.setToNoneBox.blockSignals(True)
        self.setToNoneBox.setChecked(bool(on))
        self.setToNoneBox.blockSignals(False)

    def setToNone(self) -> bool:
        return self.setToNoneBox.isChecked()

    def setSpeedLimit(self, steps_per_second: float) -> None:
        self.speedBox.blockSignals(True)
        self.speedBox.setValue(round(steps_per_second))
        self.speedBox.blockSignals(False)

    def speedLimit(self) -> float:
        return float(self.speedBox.value())

    def setStepCount(self, n: int) -> None:
        self.stepCountBox.setValue(n)

    def stepCount(self) -> int:
        return self.stepCountBox.value()

    # ---- internals -----------------------------------------------------------
    def _run_clicked(self) -> None:
        (self.pauseRequested if self._running else self.runRequested).emit()

    def _update_enabled(self) -> None:
        for w in (self.stepButton, self.stepNButton, self.stepCountBox):
            w.setEnabled(not self._busy)
        # during Step N the way out is Cancel; during a run it is Pause
        self.runButton.setEnabled(self._running or not self._busy)
