"""What the Curves dock draws beside the current branch's lines: envelopes and other branches.

- ``Envelope``: where a point stands for several steps (a long run's series are bucketed), a
  light band from each bucket's min to its max behind the mean line, as TensorBoard draws
  long runs: a spike inside a bucket stays visible.
- ``BranchOverlays``: other branches' curves, thin and faint in each branch's colour, so a
  fork or a rebuild can be compared with where it came from.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtGui

BAND_ALPHA = 55
OVERLAY_ALPHA = 120
OVERLAID = ("loss", "grad_norm", "update_norm")
MEASURED_OVERLAID = ("grad_norm", "update_norm")  # measured on a budget: NaN between the measured steps


def _edge(color) -> pg.PlotDataItem:
    # a pen, however faint: pyqtgraph builds no path (and so no fill) for a curve without one;
    # no clipping or downsampling, so both edges keep the same points and the band pairs them
    return pg.PlotDataItem(pen=pg.mkPen((*color, BAND_ALPHA), width=1), connect="finite")


class _Band(pg.FillBetweenItem):
    """pyqtgraph's fill between two curves, its path built with numpy: pyqtgraph's own joins the
    curves' polygons point by point (``QPolygonF`` sums), 150-180 ms for bands of 5,000 buckets."""

    def updatePath(self):
        (x, lo), (x2, hi) = (c.getData() for c in self.curves)
        path = QtGui.QPainterPath()
        if x is not None and x2 is not None and len(x) and len(x) == len(x2):
            ok = np.flatnonzero(np.isfinite(x) & np.isfinite(lo) & np.isfinite(hi))
            cut = np.flatnonzero(np.diff(ok) != 1)  # pieces of consecutive finite buckets
            pieces = zip(ok[np.r_[0, cut + 1]], ok[np.r_[cut, ok.size - 1]]) if ok.size else ()
            for a, b in pieces:
                if b > a:  # a piece of one bucket has no area
                    path.addPath(pg.arrayToQPath(np.r_[x[a:b + 1], x[a:b + 1][::-1]],
                                                 np.r_[lo[a:b + 1], hi[a:b + 1][::-1]], connect="all"))
        self.setPath(path)


class Envelope:
    """The min..max band of one series on one plot (hidden while every bucket is one step)."""

    def __init__(self, plot: pg.PlotItem, color) -> None:
        self.lo, self.hi = _edge(color), _edge(color)
        self.band = _Band(self.lo, self.hi, brush=pg.mkBrush(*color, BAND_ALPHA))
        for item in (self.lo, self.hi, self.band):
            plot.addItem(item)
            item.setZValue(-10)  # under the mean line
        self.setVisible(False)

    def set(self, x: np.ndarray, lo, hi, bucket: int, log_y: bool, join: bool = False) -> None:
        """Draw the band for ``bucket`` > 1; ``log_y``: values <= 0 have no place on the axis;
        ``join``: across the buckets with no value (a series measured on a budget, whose line
        joins its measured points too), else broken there. Each piece of the band is a polygon
        pyqtgraph joins in a Python loop: a norm measured every few buckets made thousands of
        pieces, and a redraw of the Curves dock took 165-185 ms."""
        if bucket <= 1 or lo is None or hi is None or not len(x):
            self.lo.setData([], [])
            self.hi.setData([], [])
            self.setVisible(False)
            return
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        # both edges must break at the same points, or the band would join the wrong pieces
        bad = ~(np.isfinite(lo) & np.isfinite(hi))
        if log_y:
            bad |= (lo <= 0) | (hi <= 0)
        if join:
            x, lo, hi = x[~bad], lo[~bad], hi[~bad]
        else:
            lo, hi = np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)
        self.lo.setData(x, lo)
        self.hi.setData(x, hi)
        self.setVisible(True)

    def setVisible(self, on: bool) -> None:
        for item in (self.lo, self.hi, self.band):
            item.setVisible(on)

    def isVisible(self) -> bool:
        return self.band.isVisible()

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) as drawn (empty when hidden)."""
        lo, hi = self.lo.getOriginalDataset()[1], self.hi.getOriginalDataset()[1]
        return (np.zeros(0) if lo is None else lo), (np.zeros(0) if hi is None else hi)


class BranchOverlays:
    """Other branches' loss, grad norm and update norm on the plots they belong to."""

    def __init__(self, plots: dict[str, pg.PlotItem]) -> None:
        self._plots = plots
        self._items: dict[tuple[int, str], pg.PlotDataItem] = {}

    def set(self, branches: dict) -> None:
        """``branches``: branch id -> (colour, History). Branches not given are removed."""
        for key in [k for k in self._items if k[0] not in branches]:
            self._plots[key[1]].removeItem(self._items.pop(key))
        for b, (color, h) in branches.items():
            x = np.asarray(h.step, dtype=np.float64)
            for name in OVERLAID:
                item = self._items.get((b, name))
                if item is None:
                    item = pg.PlotDataItem(pen=pg.mkPen((*color, OVERLAY_ALPHA), width=1), connect="finite",
                                           clipToView=True, autoDownsample=True, downsampleMethod="peak")
                    item.setZValue(-5)
                    self._plots[name].addItem(item)
                    self._items[(b, name)] = item
                y = np.asarray(getattr(h, name), dtype=np.float64)
                if name in MEASURED_OVERLAID:  # NaN between the measured steps: join the measured points,
                    seen = ~np.isnan(y)  # as the branch's own curve does (with NaN left in, points
                    item.setData(x[seen], y[seen])  # two or more steps apart were drawn as nothing)
                else:  # a loss's NaN is a gap (a closure that returned none)
                    item.setData(x, y)

    def shown(self) -> dict[int, dict[str, np.ndarray]]:
        """What is drawn: branch -> series name -> y values."""
        out: dict[int, dict[str, np.ndarray]] = {}
        for (b, name), item in self._items.items():
            y = item.getOriginalDataset()[1]
            out.setdefault(b, {})[name] = np.zeros(0) if y is None else y
        return out

    def values(self, name: str) -> list[np.ndarray]:
        """Every overlaid branch's y values of ``name`` (for the plot's y range)."""
        return [item.getOriginalDataset()[1] for (b, n), item in self._items.items()
                if n == name and item.getOriginalDataset()[1] is not None]
