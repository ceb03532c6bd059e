"""Axis ranges that hold still while a run goes on.

A plot whose range changes makes pyqtgraph redo that axis's ticks and the plot's layout:
for the five curve rows of the main window, 24 of the 30 ms a redraw took (5,500 points a
row), which had stalled the window for 60-80 ms five times a second while running. So while
live, a range moves only when the curves leave it (or fill less than half of it), and then
with room to grow into; paused or idle, pyqtgraph fits the curves tightly again. A range the
user zoomed or panned to (pyqtgraph then turns its auto-range off) is theirs: left alone.

A step axis (``steps=True``) grows to round numbers of steps (1, 1.5, 2, 3, 5 or 7 x 10^k past
the first step shown, so the newest step is at 60% of the width or more): early in a run, when
the steps double every few frames, it had grown by a quarter some 20 times between steps 16
and 1,500 (a stall each), now 12.
"""
from __future__ import annotations

import math

import numpy as np

HEADROOM = 0.25  # room past the newest step (a share of the steps' span)
MARGIN = 0.1  # room above and below the values (a share of their span)
FLAT = 1e-12  # values no further apart than this share of their size are one value


ROUND = (1, 1.5, 2, 3, 5, 7, 10)  # a step axis ends at one of these x 10^k steps past its start


def round_up(x: float) -> float:
    """The smallest of ROUND x 10^k that is at least ``x`` (1 for ``x`` <= 0)."""
    if x <= 0:
        return 1.0
    e = 10.0 ** math.floor(math.log10(x))
    return next(m * e for m in ROUND if m * e >= x * (1 - 1e-12))


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

    def hold(self, key, vb, axis: int, values: np.ndarray, live: bool, beyond: float | None = None,
             steps: bool = False, fit: bool = False) -> None:
        """While ``live``, keep ``vb``'s range on ``axis`` (0: x, 1: y; in view units, i.e.
        log10 on a log axis) while it holds ``values`` and they fill at least half of it; else
        set one with ``beyond`` (default: HEADROOM on x, MARGIN on y) of their span past their
        top and a little below their bottom; ``steps``: x ends at a round number of steps past
        the first (see the module docstring). Not live: give the range back to auto-range, or
        with ``fit`` set it tightly here (linked plots: pyqtgraph's auto-range would see only
        the curves of the plot it is on)."""
        held = self._held.get(key)
        current = tuple(vb.viewRange()[axis])
        auto = bool(vb.autoRangeEnabled()[axis])
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        # a constant series (to float64 rounding: a bucket's mean of one lr) gets a range about
        # its value; pyqtgraph's auto-range spanned its 1e-16 of noise, ticks all labelled "0.05"
        flat = hi - lo <= FLAT * max(abs(lo), abs(hi))
        if axis and values.size:  # pyqtgraph's auto-range (paused) spans a constant series' value too
            flat_span = 2 * MARGIN * (abs(hi) or 1.0) if flat else None
            if vb.state["limits"]["yRange"][0] != flat_span:
                vb.setLimits(minYRange=flat_span)
        if not live or values.size == 0:
            if fit and values.size and (auto or (held is not None and _same(current, held))):
                pad = MARGIN * (abs(hi) or 1.0) if flat else 0.02 * (hi - lo)
                self._set(key, vb, axis, lo - pad, hi + pad)
                vb.enableAutoRange(axis=axis, enable=False)
                return
            if held is not None:
                del self._held[key]
                if not auto and _same(current, held) and not fit:
                    vb.enableAutoRange(axis=axis)
            return
        if not auto and (held is None or not _same(current, held)):
            self._held.pop(key, None)  # the user's range
            return
        span = hi - lo if not flat else (abs(hi) or 1.0)
        a, b = current
        if steps and beyond is None:
            top = lo + round_up((hi - lo) * (1 + 0.1) or 1.0)
            keep = lo >= a >= lo - 0.05 * (b - a) and hi <= b <= top * (1 + 1e-9) + 1e-9
            bottom = lo - 0.02 * (top - lo)
        else:
            edge = 0.01 * (b - a) if axis else 0.0  # a value on the frame's edge is hidden by it
            keep = lo >= a + edge and hi <= b - edge and span >= 0.5 * (b - a)
            room = beyond if beyond is not None else (MARGIN if axis else HEADROOM)
            top, bottom = hi + room * span, lo - (MARGIN * span if axis else 0.02 * span)
        if keep and not auto:  # the common case: nothing to redo
            self._held[key] = current
            return
        if not keep:
            a, b = bottom, top
        self._set(key, vb, axis, a, b)

    def _set(self, key, vb, axis: int, a: float, b: float) -> None:
        if axis:
            vb.setYRange(a, b, padding=0)
        else:
            vb.setXRange(a, b, padding=0)
        self._held[key] = tuple(vb.viewRange()[axis])
