"""The GUI thread's stall, as the window benchmarks measure it: how late each tick of a short
QTimer fires (a tick waits for whatever the event loop is doing: drawing, handling a frame)."""
from __future__ import annotations

from PySide6.QtCore import QElapsedTimer, QTimer

PROBE_MS = 5


class StallProbe:
    """A ``PROBE_MS`` timer on this (the GUI) thread; ``lateness``: ms each tick came late.
    ``on_tick`` is called at each tick too (to sample what the window shows)."""

    def __init__(self, on_tick=None) -> None:
        self.lateness: list[float] = []
        self._on_tick = on_tick
        self._clock = QElapsedTimer()
        self._last: float | None = None
        self._timer = QTimer()
        self._timer.setInterval(PROBE_MS)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._clock.start()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = self._clock.nsecsElapsed() / 1e6
        if self._last is not None:
            self.lateness.append(max(0.0, now - self._last - PROBE_MS))
        self._last = now
        if self._on_tick is not None:
            self._on_tick()
