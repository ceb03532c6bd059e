"""Distributions over time as a density strip: steps across, value bins up, colour = how
many elements fell in the bin (TensorBoard's distributions view, for optimizer state too).

Takes plain data from ``core.distributions``: the last step of each time bucket, the bin
edges (sign and decade bins, symmetric around 0), and the mean count per step
in each bucket and bin (the last column counts NaNs). Colour is log(1 + count) scaled
per column, so a column shows where that step's values lie whatever the tensor's size.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from widgets.pg_setup import configure
from widgets.tensor_view import lut

configure()


def density_image(counts: np.ndarray) -> np.ndarray:
    """uint8 [bins, buckets] (rows up = larger values): log(1 + count), each column to 0..254."""
    c = np.log1p(np.maximum(np.asarray(counts, np.float64), 0.0)).T  # [bins, buckets]
    top = c.max(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        img = np.where(top > 0, c / np.where(top > 0, top, 1.0), 0.0)
    return np.ascontiguousarray((img * 254).round().astype(np.uint8))  # 255 is the colour table's NaN


def tick_labels(edges: np.ndarray) -> list[tuple[float, str]]:
    """Labels on the bin edges at every third decade on each side (1e-12 ... 1e6), 0 on the
    middle bin (between -1e-12 and 1e-12), and NaN on the top row. Bin ``i`` spans y ``i`` to
    ``i + 1``; edge ``k`` separates bins ``k`` and ``k + 1``, so it sits at y ``k + 1``."""
    out = []
    for k, v in enumerate(edges):
        exp = np.log10(abs(v))
        if abs(exp - round(exp)) < 1e-6 and round(exp) % 3 == 0:
            out.append((k + 1.0, f"{'-' if v < 0 else ''}1e{int(round(exp))}"))
        if k + 1 < len(edges) and v < 0 < edges[k + 1]:
            out.append((k + 1.5, "0"))
    out.append((len(edges) + 1.5, "NaN"))
    return out


class DensityStrip(QWidget):
    """One tensor's histograms over the steps (``setData``; ``None`` shows a note)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "step")
        self.image = pg.ImageItem()
        self.image.setLookupTable(lut("viridis"))
        self.plot.addItem(self.image)
        self.note = QLabel("No distribution measured yet: it is recorded at the measured steps.")
        self.note.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.note)
        self._shape = None
        self.setData(None)

    def setData(self, data) -> None:
        """``data``: (steps, bin edges, counts [buckets, bins + 1]) or None."""
        if data is None or len(data[0]) == 0:
            self.image.clear()
            self.note.show()
            return
        steps, edges, counts = data
        self.note.hide()
        img = density_image(counts)
        self.image.setImage(img, levels=(0, 255), autoLevels=False)
        first = steps[0] - (steps[1] - steps[0] if len(steps) > 1 else 1)
        self.image.setRect(pg.QtCore.QRectF(first, 0, steps[-1] - first, img.shape[0]))
        if self._shape != (len(edges),):
            self._shape = (len(edges),)
            self.plot.getAxis("left").setTicks([tick_labels(np.asarray(edges))])
        self.plot.setXRange(first, steps[-1], padding=0)
        self.plot.setYRange(0, img.shape[0], padding=0)
