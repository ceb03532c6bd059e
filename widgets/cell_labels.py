"""The numbers written in the cells of a small heatmap (the seed's 2x2 shows its values).

Formatted by magnitude (``cell_text``), and a label that does not fit its cell at the size
and zoom drawn now is hidden rather than overprinted (sparse_adam's 6x4 in a narrow panel).
Items are made once per cell and reused.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFont, QFontMetricsF

CELL_SIDE = 6  # tensors up to 6x6 show their numbers in the cells


def cell_text(v: float) -> str:
    """A value in a heatmap cell, formatted by magnitude: 4 decimals as torch prints them
    (0.0052, -1.0901) between 1e-3 and 1e4, else 4 significant digits in scientific notation
    (2.656e-05, not 0.0000)."""
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0 or 1e-3 <= a < 1e4:
        return f"{v:.4f}"
    return f"{v:.3e}"


class CellLabels:
    """Text items over the cells of a heatmap drawn in ``plot`` (one data unit per cell)."""

    def __init__(self, plot: pg.PlotItem, font: QFont):
        self._plot = plot
        self._font = font
        self._items: list[pg.TextItem] = []
        self._count = 0
        vb = plot.getViewBox()
        vb.sigResized.connect(self.fit)
        vb.sigRangeChanged.connect(self.fit)

    def show(self, d: np.ndarray | None, lo: float, hi: float) -> None:
        """Label every cell of ``d`` (2-D, exact values); ``None`` hides the labels."""
        if d is None:
            for t in self._items:
                t.setVisible(False)
            self._count = 0
            return
        while len(self._items) < d.size:
            t = pg.TextItem(anchor=(0.5, 0.5))
            t.setFont(self._font)
            self._plot.addItem(t)
            self._items.append(t)
        self._count = d.size
        mid = (lo + hi) / 2
        for k, t in enumerate(self._items):
            if k >= d.size:
                t.setVisible(False)
                continue
            r, c = divmod(k, d.shape[1])
            val = float(d[r, c])
            t.setText(cell_text(val))
            # dark text on light cells: the diverging map is light near the middle
            light = abs(val - mid) < 0.35 * (hi - lo) if hi > lo else True
            t.setColor((20, 20, 20) if light else (245, 245, 245))
            t.setPos(c + 0.5, r + 0.5)
        self.fit()

    def fit(self, *_) -> None:
        """Show the labels whose text fits inside a cell as drawn now (size and zoom)."""
        if not self._count:
            return
        px_w, px_h = self._plot.getViewBox().viewPixelSize()  # data units per screen pixel
        if not (px_w > 0 and px_h > 0):
            return
        cell_w, cell_h = 1.0 / px_w, 1.0 / px_h
        fm = QFontMetricsF(self._font)
        for t in self._items[:self._count]:
            t.setVisible(fm.horizontalAdvance(t.toPlainText()) + 4 <= cell_w and fm.height() + 2 <= cell_h)

    def labels(self) -> list[tuple[str, bool]]:
        """(text, shown) of each cell, row-major."""
        return [(t.toPlainText(), t.isVisible()) for t in self._items[:self._count]]

    def items(self) -> list[pg.TextItem]:
        return self._items[:self._count]
