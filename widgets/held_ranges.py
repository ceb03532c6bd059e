"""Axis ranges that hold still while a run goes on.

A plot whose range changes makes pyqtgraph redo that axis's ticks and the plot's layout:
for the five curve rows of the main window, 24 of the 30 ms a redraw took (5,500 points a
row), which had stalled the window for 60-80 ms five times a second while running. So while
live, a range moves only when the curves leave it (or fill less than half of it), and then
with room to grow into; paused or idle, pyqtgraph fits the curves tightly again. A range the
user zoomed or panned to (pyqtgraph then turns its auto-range off) is theirs: left alone.
"""
from __future__ import annotations

import numpy as np

HEADROOM = 0.25  # room past the newest step (a share of the steps' span)
MARGIN = 0.1  # room above and below the values (a share of their span)


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """The same range (as the view box reports back what was set, to rounding)."""
    tol = 1e-9 * max(abs(b[0]), abs(b[1]), 1e-300)
    return abs(a[0] - b[0]) <= tol and abs(a[1] - b[1]) <= tol


class HeldRanges:
    """The ranges this object set while live, by a key per (plot, axis)."""

    def __init__(self) -> None:
        self._held: dict = {}

    def clear(self) -> None:
        self._held.clear()

    def forget(self, key) -> None:
        self._held.pop(key, None)

    def hold(self, key, vb, axis: int, values: np.ndarray, live: bool, beyond: float | None = None) -> None:
        """While ``live``, keep ``vb``'s range on ``axis`` (0: x, 1: y; in view units, i.e.
        log10 on a log axis) while it holds ``values`` and they fill at least half of it; else
        set one with ``beyond`` (default: HEADROOM on x, MARGIN on y) of their span past their
        top and a little below their bottom. Not live: give the range back to auto-range."""
        held = self._held.get(key)
        current = tuple(vb.viewRange()[axis])
        auto = bool(vb.autoRangeEnabled()[axis])
        if not live or values.size == 0:
            if held is not None:
                del self._held[key]
                if not auto and _same(current, held):
                    vb.enableAutoRange(axis=axis)
            return
        if not auto and (held is None or not _same(current, held)):
            self._held.pop(key, None)  # the user's range
            return
        lo, hi = float(values.min()), float(values.max())
        span = hi - lo if hi > lo else (abs(hi) or 1.0)
        a, b = current
        keep = lo >= a and hi <= b and span >= 0.5 * (b - a)
        if keep and not auto:  # the common case: nothing to redo
            self._held[key] = current
            return
        if not keep:
            top = beyond if beyond is not None else (MARGIN if axis else HEADROOM)
            a, b = lo - (MARGIN * span if axis else 0.02 * span), hi + top * span
        if axis:
            vb.setYRange(a, b, padding=0)
        else:
            vb.setXRange(a, b, padding=0)
        self._held[key] = tuple(vb.viewRange()[axis])
