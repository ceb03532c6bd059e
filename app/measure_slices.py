"""'Measure every step': ask the runner to replay what a run left unmeasured, a slice at a time.

A replay of a long run takes seconds (a measured step costs a few plain ones), and the runner
answers nothing else while it replays; so the window asks for MEASURE_SLICE seconds at a time
(``core.edits.measure_skipped`` or ``core.compare_edits.measure_skipped``, which go on from
where the last slice stopped), says how far it got, and stops after the current slice when
the user presses again or the run goes on.
"""
from __future__ import annotations

from typing import Callable

MEASURE_SLICE = 0.25  # seconds of replay per runner call (core.remeasure)


class MeasureInSlices:
    """Drives one window's replay. ``fn(target, seconds) -> (done, first, last, end)`` runs on
    the runner; ``running()`` says whether the run goes on; ``say(text, ms)`` shows a line;
    ``busy(on)`` sets the button; ``redraw()`` after each slice and at the end."""

    def __init__(self, bridge, fn, running: Callable[[], bool], say: Callable[[str, int], None],
                 busy: Callable[[bool], None], redraw: Callable[[], None], what: str = "the branch"):
        self._bridge, self._fn, self._running, self._say = bridge, fn, running, say
        self._busy, self._redraw, self._what = busy, redraw, what
        self.active = False
        self._stop = False
        self._from = 0

    def toggle(self) -> None:
        """Start, or (while under way) stop after the current slice."""
        if self.active:
            self._stop = True
            return
        self.active, self._stop, self._from = True, False, 0
        self._busy(True)
        self._say(f"Measuring the skipped steps: replaying {self._what}…", 0)
        self._slice()

    def _slice(self) -> None:
        self._bridge.call(self._fn, MEASURE_SLICE, on_ok=self._answered, on_error=lambda msg, _tb: self._end(msg))

    def _answered(self, got) -> None:
        done, first, last, end = got
        self._from = self._from or first
        if not done and not self._stop and not self._running():
            self._say(f"Measuring the skipped steps: {last:,} of {end:,} (press again to stop)…", 0)
            self._redraw()
            self._slice()
            return
        if not self._from:
            msg = "Every step is measured already"
        else:
            msg = (f"Measured steps {self._from:,}-{last:,} by replaying them"
                   + ("" if done else f" (stopped: {end - last:,} steps left unmeasured)"))
        self._end(msg)

    def _end(self, msg: str) -> None:
        self.active = False
        self._busy(False)
        self._say(msg, 10_000)
        self._redraw()
