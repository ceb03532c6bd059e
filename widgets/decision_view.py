"""Decision map of a 2-D classifier, drawn like TensorFlow Playground.

P(class 1) is an image through a diverging 256-entry table (blue for class 0, white at
0.5, orange for class 1), the 0.5 boundary is a line (``contour_segments``), and the data
points are a scatter coloured by label: training points filled, validation points as
hollow rings. Every update reuses the same items, so it is cheap enough for 30 Hz.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QLabel, QStackedLayout, QVBoxLayout, QWidget

from core.snapshot import Decision
from widgets.landscape import contour_segments
from widgets.pg_setup import configure, map_plot
from widgets.reset_view import ResetView
from widgets.tensor_view import to_uint8

configure()

CLASS_COLORS = ((8, 119, 189), (245, 147, 34))  # class 0 blue, class 1 orange (Playground)
RING_COLORS = ((4, 80, 140), (200, 100, 0))  # darker, so hollow rings show on the pale map
NAN_RGBA = (128, 128, 128, 255)
MAP_STRENGTH = 0.62  # the map's extremes are this far from white, so the points stand out
MAX_ASPECT = 4.0  # equal axis scales unless the box is too skewed
PLACEHOLDER = "no 2-D classification task"


def diverging_lut() -> np.ndarray:
    """256 RGBA entries: 0..254 run class-0 colour -> white -> class-1 colour, 255 is NaN."""
    t = np.linspace(-1.0, 1.0, 255)[:, None]
    white = np.full((1, 3), 255.0)
    c0, c1 = np.array(CLASS_COLORS[0], float), np.array(CLASS_COLORS[1], float)
    far = np.where(t < 0, c0, c1)
    rgb = white + (far - white) * np.abs(t) * MAP_STRENGTH
    table = np.empty((256, 4), dtype=np.ubyte)
    table[:255, :3] = np.round(rgb)
    table[:255, 3] = 255
    table[255] = NAN_RGBA
    return np.ascontiguousarray(table)


def _label_index(labels: np.ndarray) -> np.ndarray:
    """0 for class 0, 1 for anything else (labels are 0/1; other values count as class 1)."""
    return (np.asarray(labels).reshape(-1) != 0).astype(np.intp)


def _points(points, labels) -> tuple[np.ndarray, np.ndarray]:
    p = np.zeros((0, 2)) if points is None else np.asarray(points, dtype=np.float64).reshape(-1, 2)
    lab = np.zeros(0, dtype=np.intp) if labels is None else _label_index(labels)
    if len(lab) != len(p):
        raise ValueError(f"Invalid points: {len(p)} points but {len(lab)} labels")
    return p, lab


class DecisionView(QWidget):
    """P(class 1) over the plane, the 0.5 boundary and the labelled data points."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._d: Decision | None = None
        self._extent: tuple | None = None
        self._val = (np.zeros((0, 2)), np.zeros(0, dtype=np.intp))
        # per-class brushes and pens, built once: setData with a list of the same objects is cheap
        qc = [QColor(*c) for c in CLASS_COLORS]
        self._fill = np.array([QBrush(c) for c in qc], dtype=object)
        self._edge = pg.mkPen(255, 255, 255, width=1)  # cosmetic: a plain QPen scales with the symbol
        self._ring = np.array([pg.mkPen(QColor(*c), width=2) for c in RING_COLORS], dtype=object)

        self.plot, pi = map_plot(None, "x₁", "x₂", 46, 36)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(diverging_lut())
        self.boundary = pg.PlotDataItem(pen=pg.mkPen(40, 40, 40, 200, width=2), connect="pairs")
        self.scatter = pg.ScatterPlotItem(size=7, pen=self._edge, brush=self._fill[0])
        self.validation = pg.ScatterPlotItem(size=8, brush=None, pen=self._ring[0])
        for z, item in enumerate((self.image, self.boundary, self.validation, self.scatter)):
            item.setZValue(z)
            pi.addItem(item)
        pi.getViewBox().disableAutoRange()
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)

        self.legend = QLabel()
        self.hover = QLabel()
        self.hover.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.legend)
        self.resetButton = ResetView(self.plot, self.resetView, tip="Back to the whole plane (the wheel zooms, drag pans)")
        self.resetButton.watch(pi.getViewBox())
        lay.addWidget(self.hover)

        self.placeholder = QLabel(PLACEHOLDER)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: grey")
        self._stack = QStackedLayout()
        self._stack.addWidget(self.placeholder)
        self._stack.addWidget(page)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addLayout(self._stack)
        self._update_legend()
        self._set_hint()

    # ----------------------------------------------------------------- public
    def setDecision(self, d: Decision | None, validation: tuple | None = None) -> None:
        """Draw ``d``; ``None`` shows the placeholder and forgets the validation points.

        ``validation`` is an optional ``(points, labels)`` pair; without it the previously
        set validation points stay.
        """
        if d is None:
            self._d = None
            self._extent = None
            self.resetButton.hide()
            self.image.clear()
            self.boundary.setData([], [])
            self.scatter.setData([], [])
            self.setValidationPoints(None, None)
            self._stack.setCurrentIndex(0)
            return
        xs = np.asarray(d.xs, dtype=np.float64)
        ys = np.asarray(d.ys, dtype=np.float64)
        probs = np.asarray(d.probs)
        if xs.ndim != 1 or ys.ndim != 1 or len(xs) < 2 or len(ys) < 2:
            raise ValueError(f"Invalid grid: xs and ys need 2+ points each, got {xs.shape}, {ys.shape}")
        if probs.shape != (len(ys), len(xs)):
            raise ValueError(f"Invalid decision: probs must have shape {(len(ys), len(xs))}, "
                             f"got {probs.shape}")
        pts, lab = _points(d.points, d.labels)
        self._d = d
        self._stack.setCurrentIndex(1)

        dx, dy = (xs[-1] - xs[0]) / (len(xs) - 1), (ys[-1] - ys[0]) / (len(ys) - 1)
        self.image.setImage(to_uint8(probs, 0.0, 1.0), levels=(0, 255), autoLevels=False)
        self.image.setRect(xs[0] - dx / 2, ys[0] - dy / 2, dx * len(xs), dy * len(ys))
        seg = contour_segments(probs.astype(np.float64, copy=False), 0.5)
        self.boundary.setData(xs[0] + seg[:, 0] * dx, ys[0] + seg[:, 1] * dy)
        self.scatter.setData(pos=pts, brush=self._fill[lab], pen=self._edge)
        if validation is not None:
            self.setValidationPoints(*validation)

        extent = (xs[0], xs[-1], ys[0], ys[-1])
        if extent != self._extent:  # only re-frame when the grid moves: keep the user's zoom
            self._extent = extent
            w, h = abs(dx) * len(xs), abs(dy) * len(ys)
            pi = self.plot.getPlotItem()
            pi.setAspectLocked(max(w, h) / min(w, h) <= MAX_ASPECT, ratio=1)
            self.resetView()

    def resetView(self) -> None:
        """Frame the whole plane of the grid again (after a zoom or a pan)."""
        self.resetButton.hide()
        extent = self._extent
        if extent is not None:
            self.plot.getPlotItem().getViewBox().setRange(xRange=sorted(extent[:2]), yRange=sorted(extent[2:]),
                                                          padding=0.02)

    def setValidationPoints(self, points: np.ndarray | None, labels: np.ndarray | None) -> None:
        """Draw validation points ``(n, 2)`` as hollow rings coloured by ``labels``."""
        pts, lab = _points(points, labels)
        self._val = (pts, lab)
        self.validation.setData(pos=pts, pen=self._ring[lab], brush=None)
        self._update_legend()

    def decision(self) -> Decision | None:
        return self._d

    def valueAt(self, x: float, y: float) -> float | None:
        """P(class 1) at the grid point nearest to ``(x, y)``, or ``None`` outside the map."""
        if self._d is None:
            return None
        xs, ys = np.asarray(self._d.xs), np.asarray(self._d.ys)
        dx, dy = (xs[-1] - xs[0]) / (len(xs) - 1), (ys[-1] - ys[0]) / (len(ys) - 1)
        if dx == 0 or dy == 0 or not (np.isfinite(x) and np.isfinite(y)):
            return None
        c, r = int(round((x - xs[0]) / dx)), int(round((y - ys[0]) / dy))
        if 0 <= r < len(ys) and 0 <= c < len(xs):
            return float(self._d.probs[r, c])
        return None

    def hoverAt(self, x: float, y: float) -> None:
        """Show ``(x, y)`` and, on the map, P(class 1) there."""
        p = self.valueAt(x, y)
        text = f"({x:.3g}, {y:.3g})"
        self.hover.setText(text if p is None else f"{text}: P(class 1) = {p:.2f}")

    # -------------------------------------------------------------- internals
    def _update_legend(self) -> None:
        c0, c1 = (f"rgb{c}" for c in CLASS_COLORS)
        parts = [f"<span style='color:{c0}'>●</span> class 0",
                 f"<span style='color:{c1}'>●</span> class 1"]
        if len(self._val[0]):
            parts.append("<span style='color:grey'>○</span> validation")
        parts.append("<span style='color:grey'>— P = 0.5</span>")
        self.legend.setText("&nbsp;&nbsp;&nbsp;".join(parts))

    def _on_mouse_moved(self, pos: QPointF) -> None:
        vb = self.plot.getPlotItem().getViewBox()
        if self._d is not None and vb.sceneBoundingRect().contains(pos):
            p = vb.mapSceneToView(pos)
            self.hoverAt(p.x(), p.y())
        else:
            self._set_hint()

    def _set_hint(self) -> None:
        self.hover.setText("<span style='color: grey'>hover for P(class 1)</span>")
