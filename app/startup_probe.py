"""Reports when the first windows reach the screen, for ``benchmarks/startup_window.py``.

With ``OPTIMLAB_STARTUP_PROBE`` set, the app prints ``startup EVENT SECONDS torch=yes|no`` lines on
stdout, SECONDS being ``time.monotonic()`` (one clock for every process on the machine,
so the benchmark subtracts its own reading taken before it started the app). Events:
``first-window`` (the first window exposed, splash or main window), ``main-window`` (the
main window exposed) and ``ready`` (the opened session drawn). With the value ``quit``
the app closes itself after ``ready``.
"""
from __future__ import annotations

import os
import sys
import time

from PySide6.QtCore import QEvent, QObject, QTimer

ENV = "OPTIMLAB_STARTUP_PROBE"


def enabled() -> bool:
    return bool(os.environ.get(ENV))


_seen: set[str] = set()


def report(event: str) -> None:
    """Print ``startup EVENT TIME`` once per event (only when the probe is on)."""
    if not enabled() or event in _seen:
        return
    _seen.add(event)
    torch = "yes" if "torch" in sys.modules else "no"  # was torch imported yet (the splash: no)
    print(f"startup {event} {time.monotonic():.4f} torch={torch}", flush=True)


class _ExposeFilter(QObject):
    def __init__(self, events: tuple[str, ...], parent=None):
        super().__init__(parent)
        self._events = events

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.Expose and obj.isExposed():
            for e in self._events:
                report(e)
            obj.removeEventFilter(self)
        return False


def watch(widget, *events: str) -> None:
    """Report ``events`` when ``widget``'s window is first exposed. Call before ``show()``."""
    if not enabled():
        return
    widget.winId()  # creates the native window, so its QWindow exists before it is shown
    handle = widget.windowHandle()
    f = _ExposeFilter(events, handle)
    handle.installEventFilter(f)


def ready(window) -> None:
    """The session is drawn: report it, and with ``quit`` close the window."""
    report("ready")
    if os.environ.get(ENV) == "quit":
        QTimer.singleShot(0, window.close)


__all__ = ["enabled", "report", "watch", "ready", "ENV"]
