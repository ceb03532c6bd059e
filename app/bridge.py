"""The bridge between the core runner (a plain thread) and the Qt window.

The GUI never touches live tensors: it sends commands to the runner and reads
the runner's latest snapshot on a QTimer, redrawing only when it changed. Results
of calls made on the runner thread come back to the GUI thread as queued signals.
"""
from __future__ import annotations

import traceback

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from core.runner import Runner
from core.session import Session

FRAME_MS = 25  # 40 Hz polling; the runner publishes at most 60 snapshots/s


class RunnerBridge(QObject):
    """Owns the Runner; turns its snapshots and call results into Qt signals."""

    snapshotChanged = Signal(object)
    # (token, result, error message or "", traceback or "") from the runner thread, queued to the GUI
    _callDone = Signal(int, object, str, str)

    def __init__(self, session: Session, parent: QObject | None = None):
        super().__init__(parent)
        self.runner = Runner(session)
        self._seq = -1
        self._next = 0
        self._callbacks: dict[int, tuple] = {}
        self._callDone.connect(self._on_call_done)
        self.timer = QTimer(self)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    @Slot()
    def poll(self) -> None:
        snap = self.runner.latest()
        if snap.seq != self._seq:
            self._seq = snap.seq
            self.snapshotChanged.emit(snap)

    def latest(self):
        return self.runner.latest()

    def call(self, fn, on_ok=None, on_error=None) -> None:
        """Run ``fn(session)`` on the runner thread; ``on_ok(result)``/``on_error(msg, tb)`` on the GUI thread."""
        token = self._next
        self._next += 1
        self._callbacks[token] = (on_ok, on_error)
        fut = self.runner.call(fn)
        fut.add_done_callback(lambda f, t=token: self._finish(t, f))

    def _finish(self, token, fut) -> None:  # runner thread
        exc = fut.exception()
        if exc is None:
            self._callDone.emit(token, fut.result(), "", "")
        else:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self._callDone.emit(token, None, str(exc) or type(exc).__name__, tb)

    @Slot(int, object, str, str)
    def _on_call_done(self, token, result, error, tb) -> None:
        on_ok, on_error = self._callbacks.pop(token, (None, None))
        if error:
            if on_error is not None:
                on_error(error, tb)
        elif on_ok is not None:
            on_ok(result)
        self.poll()

    def shutdown(self) -> None:
        """Stop the runner thread and wait for it (called when the window closes)."""
        self.timer.stop()
        self.runner.stop()
