"""Text for the status bar, and the steps/s it shows.

The rate is measured here, from the snapshots the window receives while the run goes on,
over at least ``RateMeter.MIN_SECONDS``: a paused run shows "paused" (not the last rate),
and an instant Step N shows no rate at all (not "0.1 steps/s" from a stale interval).
"""
from __future__ import annotations

import math
from collections import deque

_DASH = "—"


class RateMeter:
    """Steps per second over the last ``WINDOW`` seconds of a run, once ``MIN_SECONDS`` of it
    have been seen; ``None`` before that and whenever the run is not going."""

    MIN_SECONDS = 0.5
    WINDOW = 2.0

    def __init__(self) -> None:
        self._marks: deque[tuple[float, int]] = deque()

    def update(self, now: float, step: int, running: bool) -> float | None:
        if not running:
            self._marks.clear()
            return None
        if self._marks and step < self._marks[-1][1]:  # a reset or a new session: start again
            self._marks.clear()
        self._marks.append((now, step))
        while len(self._marks) > 2 and now - self._marks[1][0] >= self.WINDOW:
            self._marks.popleft()
        t0, s0 = self._marks[0]
        if now - t0 < self.MIN_SECONDS:
            return None
        return (step - s0) / (now - t0)


def format_status(step: int, loss: float | None, steps_per_second: float | None, device: str,
                  running: bool = True) -> str:
    """One line such as ``"step 51 · loss — · 1,234 steps/s · cpu"``.

    A missing loss shows as a dash; NaN and inf show as such (worth seeing when debugging).
    Not running: "paused" instead of a rate; running but not measured yet: "running".
    """
    if loss is None:
        loss_text = _DASH
    elif math.isfinite(loss):
        loss_text = f"{loss:.4g}"
    else:
        loss_text = str(loss)
    if not running:
        rate = "paused" if step else "ready"
    elif steps_per_second is None or not math.isfinite(steps_per_second):
        rate = "running"
    else:
        rate = format_rate(steps_per_second) + " steps/s"
    return f"step {step:,} · loss {loss_text} · {rate} · {device}"


def format_rate(sps: float) -> str:
    """A rate as the status bar shows it: one decimal under 10 (never a bare "0"), else whole."""
    return f"{sps:.1f}" if 0 < sps < 10 else f"{round(sps):,}"
