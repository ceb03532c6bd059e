"""Python's cyclic garbage collector, run on the GUI thread only.

A reference cycle that holds Qt objects (pyqtgraph's items refer to one another; a signal
connected to a Python object's method) is freed by whichever thread the collector happens to
run on. On a runner thread (the thread runner: tests, ``OPTIMLAB_RUNNER=thread``), freeing a
widget's QObject there deadlocked with the GUI thread: a test hung with the runner thread in
``QObject::~QObject``, waiting for the interpreter lock, inside a collection it had started.
So automatic collection is turned off and a timer on the GUI thread collects as often as the
collector's own thresholds would have (the recipe PyQt applications use).
"""
from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 500


def collect_due() -> int:
    """Collect the generations whose counts passed their thresholds (as the automatic collector
    would); returns the objects found unreachable."""
    t0, t1, t2 = gc.get_threshold()
    c0, c1, c2 = gc.get_count()
    if c0 <= t0:
        return 0
    if c1 <= t1:
        return gc.collect(0)
    return gc.collect(2 if c2 > t2 else 1)


class GuiCollector(QObject):
    """Turns automatic collection off and collects on this (the GUI) thread every INTERVAL_MS."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(INTERVAL_MS)
        self._timer.timeout.connect(collect_due)
        self._timer.start()


def install(app) -> GuiCollector:
    """The app's collector, kept on ``app`` (it lives as long as the application)."""
    app._collector = GuiCollector(app)
    return app._collector


def as_the_app(app) -> GuiCollector:
    """The window process's garbage collection as ``app.main`` sets it up, for a process that
    builds windows itself (the GUI benchmarks): collection on this thread only, and the objects
    of the modules imported so far frozen (``core.gc_policy``: full collections then walk a
    window's few thousand objects, 1-2 ms, instead of some 230,000, 55-65 ms)."""
    from core import gc_policy
    collector = install(app)
    gc_policy.freeze_loaded()
    return collector
