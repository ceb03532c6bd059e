"""The bridge between the core runner and the Qt window.

The runner lives in its own process by default (``core.runner_process``), so the
window's drawing never takes interpreter time from the optimizer; ``OPTIMLAB_RUNNER=thread``
keeps it on a thread of this process instead (same interface, for debugging).
The GUI never touches live tensors: it sends commands to the runner and reads the
runner's latest snapshot on a QTimer, redrawing only when it changed. Answers to
calls come back to the GUI thread as queued signals.
"""
from __future__ import annotations

import os
import traceback

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

from core import edits
from core.runner import Runner
from core.runner_process import ProcessRunner
from core.session import Session
from core.snapshot import History, Snapshot
from core.spec import SessionSpec
from core.trust import UntrustedScript

FRAME_MS = 25  # 40 Hz polling
SNAPSHOT_HZ = 1000 / FRAME_MS  # the runner publishes no more than the window can draw


def make_runner(session: Session | None, process: bool | None = None, shown: Snapshot | None = None):
    """A ProcessRunner, or a thread Runner if ``process`` is False or OPTIMLAB_RUNNER=thread.

    ``session`` None: the runner starts on a blank session (built where it steps, so this
    process never builds one) and shows ``shown`` until it has drawn its own."""
    if process is None:
        process = os.environ.get("OPTIMLAB_RUNNER", "process") != "thread"
    if process:
        return ProcessRunner(session, max_hz=SNAPSHOT_HZ, shown=shown if session is None else None)
    return Runner(session if session is not None else edits.blank, max_hz=SNAPSHOT_HZ)


def empty_snapshot(spec: SessionSpec) -> Snapshot:
    """What the window shows while a session is being opened: no tensors, no curves."""
    return Snapshot(seq=0, step=0, loss=None, optimizer=spec.optimizer, device=spec.device, defaults={},
                    groups=(), tensors=(), history=History.empty())


class RunnerBridge(QObject):
    """Owns the runner; turns its snapshots and call results into Qt signals."""

    snapshotChanged = Signal(object)
    # (token, result, error message or "", traceback or "", exception or None) from another thread,
    # queued to the GUI
    _callDone = Signal(int, object, str, str, object)

    def __init__(self, session: Session | None, parent: QObject | None = None, process: bool | None = None,
                 shown: Snapshot | None = None):
        super().__init__(parent)
        self.runner = make_runner(session, process, shown)
        self._rate_limit = 0.0  # re-applied to a runner started after a crash
        self._seq = -1
        self._next = 0
        self._callbacks: dict[int, tuple] = {}
        # ask_trust(path, digest, what) -> bool: the window's consent question; a request refused because
        # it would run an untrusted script is sent again once the user agrees
        self.ask_trust = None
        self._callDone.connect(self._on_call_done, Qt.ConnectionType.QueuedConnection)
        self.timer = QTimer(self)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    @Slot()
    def poll(self) -> None:
        snap = self.runner.latest()
        if snap is None:  # a runner process that has not published yet
            return
        if snap.seq != self._seq:
            self._seq = snap.seq
            self.snapshotChanged.emit(snap)

    def latest(self):
        return self.runner.latest()

    # commands go to whichever runner is current (a crashed one is replaced)
    @Slot()
    def cancel(self) -> None:
        self.runner.cancel()

    @Slot(float)
    def set_rate_limit(self, steps_per_second: float) -> None:
        self._rate_limit = steps_per_second
        self.runner.set_rate_limit(steps_per_second)

    def call(self, fn, *args, on_ok=None, on_error=None) -> None:
        """Run ``fn(session, *args)`` on the runner; ``on_ok(result)``/``on_error(msg, tb)`` on the GUI thread.

        ``fn`` is a module-level function (see ``core.edits``): it may travel to another process.
        """
        self._track(self.runner.call(fn, *args), on_ok, on_error, ("call", fn, args))

    def replace(self, build, *args, on_ok=None, on_error=None) -> None:
        """Swap in the session ``build(session, *args)`` makes on the runner; ``on_ok(spec)``.

        After a crashed runner process, a new one is started first: building a session
        (reset, open, any edit of the problem) is how the user carries on."""
        if self.crashed:
            self.runner = ProcessRunner(None, max_hz=SNAPSHOT_HZ, shown=self.runner.latest())
            if self._rate_limit:
                self.runner.set_rate_limit(self._rate_limit)
        self._track(self.runner.replace(build, *args), on_ok, on_error, ("replace", build, args))

    @property
    def pending(self) -> int:
        """Calls sent whose answers have not been handled yet."""
        return len(self._callbacks)

    @property
    def crashed(self) -> bool:
        return getattr(self.runner, "crashed", False)

    def _track(self, fut, on_ok, on_error, request) -> None:
        token = self._next
        self._next += 1
        self._callbacks[token] = (on_ok, on_error, request)
        fut.add_done_callback(lambda f, t=token: self._finish(t, f))

    def _finish(self, token, fut) -> None:  # the runner's or the reader's thread
        exc = fut.exception()
        if exc is None:
            self._callDone.emit(token, fut.result(), "", "", None)
        else:
            tb = getattr(exc, "remote_traceback", None) or \
                "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self._callDone.emit(token, None, str(exc) or type(exc).__name__, tb, exc)

    @Slot(int, object, str, str, object)
    def _on_call_done(self, token, result, error, tb, exc) -> None:
        on_ok, on_error, request = self._callbacks.pop(token, (None, None, None))
        if isinstance(exc, UntrustedScript) and self.ask_trust is not None and request is not None:
            if self.ask_trust(exc.path, exc.digest, exc.what):
                kind, fn, args = request
                self.call(edits.trust_scripts, [(exc.path, exc.digest)])
                (self.call if kind == "call" else self.replace)(fn, *args, on_ok=on_ok, on_error=on_error)
                return
            error = f"Not opened: {error}"
        if error:
            if on_error is not None:
                on_error(error, tb)
        elif on_ok is not None:
            on_ok(result)
        self.poll()

    def shutdown(self) -> None:
        """Stop the runner and wait for it (called when the window closes)."""
        self.timer.stop()
        self.runner.stop()
