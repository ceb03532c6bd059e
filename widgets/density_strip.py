"""Distributions over time as a density strip: steps across, value bins up, colour = how
many elements fell in the bin (TensorBoard's distributions view, for optimizer state too).

Takes plain data from ``core.distributions``: the last step of each time bucket, the bin
edges (sign and decade bins, symmetric around 0), and the mean count per step
in each bucket and bin (the last column counts NaNs). Colour is log(1 + count) scaled
per column, so a column shows where that step's values lie whatever the tensor's size; a
column with no measured step shows the last measured one (the hover says so).
Hovering reads out the step, the bin's value range and its count. Ctrl+wheel zooms the step
axis (the plain wheel scrolls the column the strip sits in, as over the tensor views), a
drag pans it, and the zoom stays while new steps arrive until "whole run" is pressed.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from widgets.pg_setup import configure
from widgets.tensor_view import lut
from widgets.wheel_guard import PlotWheel

configure()


def density_image(counts: np.ndarray) -> np.ndarray:
    """uint8 [bins, buckets] (rows up = larger values): log(1 + count), each column to 0..254."""
    c = np.log1p(np.maximum(np.asarray(counts, np.float64), 0.0)).T  # [bins, buckets]
    top = c.max(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        img = np.where(top > 0, c / np.where(top > 0, top, 1.0), 0.0)
    return np.ascontiguousarray((img * 254).round().astype(np.uint8))  # 255 is the colour table's NaN


def held(counts: np.ndarray) -> np.ndarray:
    """For each column, the column whose histogram it shows: itself where it was measured, else
    the last measured one before it (-1 before the first). Histograms are counted only at the
    measured steps, a few in a fast run: drawn alone they were thin lines on an empty strip.
    A measured column is never all zero (every element falls in some bin)."""
    measured = np.asarray(counts).sum(axis=1) > 0
    idx = np.where(measured, np.arange(len(measured)), -1)
    return np.maximum.accumulate(idx) if len(idx) else idx


FIT_PAD = 2  # bins of room above and below the values
FIT_MIN = 16  # bins shown at least


def occupied_rows(counts: np.ndarray) -> tuple[int, int]:
    """The rows (bins) to show for ``counts`` [buckets, bins]: from the lowest bin holding a
    value to the highest, with FIT_PAD bins of room, at least FIT_MIN (the whole 148 rows from
    -1e6 to NaN had drawn a weight's band a few pixels high)."""
    n = counts.shape[1]
    rows = np.flatnonzero(np.asarray(counts).sum(axis=0) > 0)
    if not len(rows):
        return 0, n
    lo, hi = max(0, int(rows[0]) - FIT_PAD), min(n, int(rows[-1]) + 1 + FIT_PAD)
    short = FIT_MIN - (hi - lo)
    if short > 0:
        lo = max(0, lo - short // 2)
        hi = min(n, lo + FIT_MIN)
        lo = max(0, hi - FIT_MIN)
    return lo, hi


def tick_labels(edges: np.ndarray) -> list[list[tuple[float, str]]]:
    """Two levels of labels on the bin edges (pyqtgraph draws the second only where it fits):
    0 on the middle bin (between -1e-12 and 1e-12), every sixth decade on each side, NaN on the
    top row; then the decades between (every third). Bin ``i`` spans y ``i`` to ``i + 1``; edge
    ``k`` separates bins ``k`` and ``k + 1``, so it sits at y ``k + 1``. No label at +-1e-12
    (beside 0) nor at 1e6 (beside NaN): each sat on its neighbour's text."""
    major, minor = [], []
    for k, v in enumerate(edges):
        exp = int(round(np.log10(abs(v))))
        if abs(np.log10(abs(v)) - exp) < 1e-6 and exp % 3 == 0 and exp != -12 and not (v > 0 and exp == 6):
            (major if exp % 6 == 0 else minor).append((k + 1.0, f"{'-' if v < 0 else ''}1e{exp}"))
        if k + 1 < len(edges) and v < 0 < edges[k + 1]:
            major.append((k + 1.5, "0"))
    major.append((len(edges) + 1.5, "NaN"))
    return [major, minor]


def bin_text(edges: np.ndarray, i: int) -> str:
    """Bin ``i``'s values (``torch.bucketize``: bin i holds edges[i-1] < v <= edges[i]; the
    last bin, ``len(edges) + 1``, counts NaNs)."""
    n = len(edges)
    if i > n:
        return "NaN"
    if i == 0:
        return f"≤ {edges[0]:.3g}"
    if i == n:
        return f"> {edges[-1]:.3g}"
    lo, hi = edges[i - 1], edges[i]
    if lo < 0 < hi:
        return f"about 0 ({lo:.3g} .. {hi:.3g}]"
    return f"({lo:.3g} .. {hi:.3g}]"


def column_at(steps, x: float) -> int | None:
    """The column under step ``x`` (column i spans steps[i] - bucket .. steps[i]), or None."""
    if not len(steps) or not np.isfinite(x):
        return None
    first = steps[0] - (steps[1] - steps[0] if len(steps) > 1 else 1)
    if not first <= x <= steps[-1]:
        return None
    return min(int(np.searchsorted(steps, x, side="left")), len(steps) - 1)


def hover_text(steps, edges, counts, x: float, y: float) -> str:
    """What the strip holds under (x: step, y: bin row), or "" outside the data; a column that
    was not measured says which measured step it shows."""
    if not len(steps) or y < 0 or y >= counts.shape[1]:
        return ""
    col = column_at(steps, x)
    if col is None:
        return ""
    row = int(y)
    width = int(steps[1] - steps[0]) if len(steps) > 1 else 1

    def where(c: int) -> str:
        last = int(steps[c])
        return f"step {last:,}" if width == 1 else f"steps {last - width + 1:,}–{last:,}"
    per = "" if width == 1 else " a step"
    src = int(held(counts[:col + 1])[-1])
    if src < 0:
        return f"{where(col)}: not measured"
    shown = f"{counts[src, row]:.4g} elements{per} in {bin_text(edges, row)}"
    if src != col:
        return f"{where(col)}: not measured; at {where(src)}: {shown}"
    return f"{where(col)}: {shown}"


class DensityStrip(QWidget):
    """One tensor's histograms over the steps (``setData``; ``None`` shows a note). A click on
    a column asks to go to its step (``stepClicked``: a bucket's last step)."""

    stepClicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=True, y=False)  # zoom and pan the steps; the bins stay whole
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "step")
        self.image = pg.ImageItem()
        self.image.setLookupTable(lut("viridis"))
        self.plot.addItem(self.image)
        self.note = QLabel("No distribution measured yet: it is recorded at the measured steps.")
        self.note.setWordWrap(True)
        self.hover = QLabel(" ")
        self.hover.setStyleSheet("color: grey;")
        self.resetButton = QToolButton()
        self.resetButton.setText("whole run")
        self.resetButton.setAutoRaise(True)
        self.resetButton.setToolTip("Back to every step (Ctrl+wheel zooms the steps, drag pans)")
        self.resetButton.clicked.connect(self.resetView)
        self.resetButton.hide()
        foot = QHBoxLayout()
        foot.addWidget(self.hover, 1)
        foot.addWidget(self.resetButton)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot, 1)
        lay.addLayout(foot)
        lay.addWidget(self.note)
        self._shape = None
        self._data = None
        self._idle = " "  # the hover line away from the data: how much of it was measured
        self._unmeasured = 0  # columns holding an earlier measured one (see held)
        self._wheel = PlotWheel(self)
        self.plot.viewport().installEventFilter(self._wheel)
        self.plot.getViewBox().sigRangeChangedManually.connect(lambda *_: self.resetButton.show())
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self.setData(None)

    def unmeasured(self) -> int:
        """How many of the columns shown were not measured (they show the last measured one)."""
        return self._unmeasured

    def isZoomed(self) -> bool:
        return not self.resetButton.isHidden()

    def resetView(self) -> None:
        """Every step again (after a zoom or a pan)."""
        self.resetButton.hide()
        if self._data is not None:
            self.setData(self._data)

    def hoverAt(self, x: float, y: float) -> str:
        """Read out what lies at step ``x``, bin row ``y`` (as hovering there does)."""
        text = "" if self._data is None else hover_text(*self._data, x, y)
        self.hover.setText(text or self._idle)
        return text

    def _on_mouse_moved(self, pos: QPointF) -> None:
        vb = self.plot.getViewBox()
        if vb.sceneBoundingRect().contains(pos):
            p = vb.mapSceneToView(pos)
            self.hoverAt(p.x(), p.y())

    def stepAt(self, x: float) -> int | None:
        """The step of the column under step ``x`` (None: no data, or outside it)."""
        col = None if self._data is None else column_at(self._data[0], x)
        return None if col is None else int(self._data[0][col])

    def _on_mouse_clicked(self, ev) -> None:
        vb = self.plot.getViewBox()
        if ev.button() != Qt.MouseButton.LeftButton or ev.double() or not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        step = self.stepAt(vb.mapSceneToView(ev.scenePos()).x())
        if step is not None:
            self.stepClicked.emit(step)

    def setData(self, data) -> None:
        """``data``: (steps, bin edges, counts [buckets, bins + 1]) or None."""
        if data is None or len(data[0]) == 0:
            self._data = None
            self.resetButton.hide()
            self.image.clear()
            self.note.show()
            self._idle = " "
            self._unmeasured = 0
            self.hover.setText(" ")
            return
        steps, edges, counts = data
        self._data = (np.asarray(steps), np.asarray(edges), np.asarray(counts))
        self.note.hide()
        src = held(counts)
        shown = np.where(src[:, None] >= 0, np.asarray(counts)[np.maximum(src, 0)], 0.0)
        img = density_image(shown)
        n_measured, n = int((src == np.arange(len(src))).sum()), len(src)
        self._unmeasured = n - n_measured
        # short: it sits beside "whole run" in a narrow strip (the others hold the last measured one)
        self._idle = " " if n_measured == n else f"{n_measured:,} of {n:,} columns measured (hover: which)"
        if self.hover.text() == " " or self.hover.text().endswith("columns measured (hover: which)"):
            self.hover.setText(self._idle)
        self.image.setImage(img, levels=(0, 255), autoLevels=False)
        first = steps[0] - (steps[1] - steps[0] if len(steps) > 1 else 1)
        self.image.setRect(pg.QtCore.QRectF(first, 0, steps[-1] - first, img.shape[0]))
        if self._shape != (len(edges),):
            self._shape = (len(edges),)
            self.plot.getAxis("left").setTicks(tick_labels(np.asarray(edges)))
        self.plot.getViewBox().setLimits(xMin=first, xMax=steps[-1], yMin=0, yMax=img.shape[0])
        if not self.isZoomed():  # a user's zoom stays while the run goes on
            self.plot.setXRange(first, steps[-1], padding=0)
        self.plot.setYRange(*occupied_rows(shown), padding=0)
