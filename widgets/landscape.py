"""Map of a two-parameter objective with the optimizer's path drawn over it.

The heatmap and contours use log10(f - min f) so the basin around the minimum keeps
detail instead of one flat colour. Contours are computed here with a vectorised
marching squares (pyqtgraph's IsocurveItem loops in Python, ~1 s for a 200x200 grid).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QLabel, QSizePolicy, QStackedLayout, QVBoxLayout, QWidget

from widgets.pg_setup import configure, map_plot
from widgets.reset_view import ResetView
from widgets.tensor_view import lut, to_uint8

configure()

N_CONTOURS = 14
COLORMAP = "viridis"
MAX_ASPECT = 4.0  # equal axis scales (true gradient geometry) unless the box is too skewed


def log_scaled(z: np.ndarray) -> np.ndarray:
    """``log10(z - min + eps)`` with ``eps`` 1e-4 of the range; non-finite stays NaN."""
    z = np.asarray(z, dtype=np.float64)
    finite = np.isfinite(z)
    if not finite.any():
        return np.full(z.shape, np.nan)
    lo, hi = z[finite].min(), z[finite].max()
    eps = max((hi - lo) * 1e-4, np.finfo(np.float64).tiny)
    out = np.full(z.shape, np.nan)
    out[finite] = np.log10(z[finite] - lo + eps)
    return out


def contour_segments(z: np.ndarray, level: float) -> np.ndarray:
    """Marching squares: ``(2k, 2)`` end points ``(col, row)`` of the segments of ``z == level``.

    Consecutive rows pair up (draw with ``connect="pairs"``). Cells touching NaN are skipped.
    """
    a, b = z[:-1, :-1], z[:-1, 1:]  # corners: a top-left, b top-right,
    c, d = z[1:, 1:], z[1:, :-1]    # c bottom-right, d bottom-left (row index grows down)
    rows, cols = np.mgrid[0:a.shape[0], 0:a.shape[1]].astype(np.float64)
    edges = ((a, b), (b, c), (d, c), (a, d))  # top, right, bottom, left
    pts = np.empty(a.shape + (4, 2))
    hit = np.empty(a.shape + (4,), dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        for e, (p, q) in enumerate(edges):
            hit[..., e] = ((p < level) != (q < level)) & np.isfinite(p) & np.isfinite(q)
            t = (level - p) / (q - p)
            if e == 0:
                pts[..., e, 0], pts[..., e, 1] = cols + t, rows
            elif e == 1:
                pts[..., e, 0], pts[..., e, 1] = cols + 1, rows + t
            elif e == 2:
                pts[..., e, 0], pts[..., e, 1] = cols + t, rows + 1
            else:
                pts[..., e, 0], pts[..., e, 1] = cols, rows + t
    count = hit.sum(axis=-1)
    two = count == 2
    out = [pts[two][hit[two]]]  # row-major order keeps each cell's two points adjacent
    four = count == 4
    if four.any():  # saddle: the centre value decides which corners are cut off
        p4 = pts[four]
        centre = (a[four] + b[four] + c[four] + d[four]) / 4
        same = (centre < level) == (a[four] < level)
        pairs = np.where(same[:, None], [0, 1, 3, 2], [0, 3, 1, 2])
        out.append(np.take_along_axis(p4, pairs[:, :, None], axis=1).reshape(-1, 2))
    return np.concatenate(out) if out else np.zeros((0, 2))


class LandscapeView(QWidget):
    """Log-scaled map and contours of f(x, y), the optimizer's path and its current point.

    A click on the map emits ``startRequested(x, y)``: the app restarts the run from there.
    ``setMessage`` replaces the map by a sentence (no 2-parameter objective to draw)."""

    startRequested = Signal(float, float)
    CLICK_STARTS = True  # a view whose click starts nothing says nothing about clicking

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._xs = self._ys = self._z = None
        self._hinting = True  # the hover line shows the hint (refitted on resize)
        self.plot, pi = map_plot(self, "x", "y", 52, 40)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(lut(COLORMAP))
        self.contours = pg.PlotDataItem(pen=pg.mkPen(255, 255, 255, 110, width=1), connect="pairs")
        self.minimum = pg.ScatterPlotItem(symbol="star", size=16, brush=(255, 255, 255),
                                          pen=pg.mkPen(0, 0, 0))
        self.path = pg.PlotDataItem(pen=pg.mkPen(255, 90, 90, width=2), connect="finite")
        self.start = pg.ScatterPlotItem(symbol="o", size=8, brush=None, pen=pg.mkPen("w", width=1.5))
        self.current = pg.ScatterPlotItem(symbol="o", size=12, brush=(255, 90, 90),
                                          pen=pg.mkPen("w", width=1.5))
        for z, item in enumerate((self.image, self.contours, self.minimum, self.path,
                                  self.start, self.current)):
            item.setZValue(z)
            pi.addItem(item)
        pi.getViewBox().disableAutoRange()  # a diverging path must not zoom the map away
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self.hover = QLabel(self)
        self.hover.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # one line that asks for no width: a long hover line had widened the dock (and shrunk the
        # window's other panels) as the mouse moved over the map; the line says what fits (_fit).
        # Not two wrapped lines: their height pushed the 1024x700 window past its screen
        self.hover.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.plot, 1)
        self.resetButton = ResetView(self.plot, self.resetView, tip="Back to the whole map (the wheel zooms, drag pans)")
        self.resetButton.watch(pi.getViewBox())
        lay.addWidget(self.hover)
        self.message = QLabel()
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: grey; padding: 12px;")
        self._stack = QStackedLayout()
        self._stack.addWidget(page)
        self._stack.addWidget(self.message)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addLayout(self._stack)
        self._set_hint()

    # ----------------------------------------------------------------- public
    def setLandscape(self, xs: np.ndarray, ys: np.ndarray, z: np.ndarray) -> None:
        """Draw f on the grid ``xs`` x ``ys`` (evenly spaced); ``z`` has shape (len(ys), len(xs))."""
        xs = np.asarray(xs, dtype=np.float64)
        ys = np.asarray(ys, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        if xs.ndim != 1 or ys.ndim != 1 or len(xs) < 2 or len(ys) < 2:
            raise ValueError(f"Invalid grid: xs and ys need 2+ points each, got {xs.shape}, {ys.shape}")
        if z.shape != (len(ys), len(xs)):
            raise ValueError(f"Invalid landscape: z must have shape {(len(ys), len(xs))}, got {z.shape}")
        self._xs, self._ys, self._z = xs, ys, z
        self._stack.setCurrentIndex(0)
        lz = log_scaled(z)
        finite = np.isfinite(lz)
        lo, hi = (lz[finite].min(), lz[finite].max()) if finite.any() else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 1.0, hi + 1.0
        self.image.setImage(to_uint8(lz, lo, hi), levels=(0, 255), autoLevels=False)
        dx, dy = (xs[-1] - xs[0]) / (len(xs) - 1), (ys[-1] - ys[0]) / (len(ys) - 1)
        self.image.setRect(xs[0] - dx / 2, ys[0] - dy / 2, dx * len(xs), dy * len(ys))

        segs = [contour_segments(lz, lvl) for lvl in np.linspace(lo, hi, N_CONTOURS + 2)[1:-1]]
        pts = np.concatenate(segs) if segs else np.zeros((0, 2))
        self.contours.setData(xs[0] + pts[:, 0] * dx, ys[0] + pts[:, 1] * dy)
        if np.isfinite(z).any():
            r, c = np.unravel_index(np.nanargmin(np.where(np.isfinite(z), z, np.nan)), z.shape)
            self.minimum.setData([xs[c]], [ys[r]])
        else:
            self.minimum.setData([], [])
        w, h = abs(dx) * len(xs), abs(dy) * len(ys)
        pi = self.plot.getPlotItem()
        pi.setAspectLocked(max(w, h) / min(w, h) <= MAX_ASPECT, ratio=1)
        self.resetView()

    def resetView(self) -> None:
        """Frame the whole map again (after a zoom or a pan)."""
        self.resetButton.hide()
        if self._xs is not None:
            self.plot.getPlotItem().getViewBox().setRange(
                xRange=(self._xs.min(), self._xs.max()), yRange=(self._ys.min(), self._ys.max()), padding=0.02)

    def setMessage(self, text: str) -> None:
        """Show ``text`` instead of the map and forget the map (it belonged to another objective)."""
        self._xs = self._ys = self._z = None
        self.image.clear()
        self.contours.setData([], [])
        self.minimum.setData([], [])
        self.setPath(None)
        self.resetButton.hide()
        self.message.setText(text)
        self._stack.setCurrentIndex(1)

    def isShowingMap(self) -> bool:
        return self._stack.currentIndex() == 0 and self._z is not None

    def setPath(self, path: np.ndarray | None) -> None:
        """Draw the visited points ``(k, 2)`` as a line, the last one as the current marker."""
        p = np.zeros((0, 2)) if path is None else np.asarray(path, dtype=np.float64).reshape(-1, 2)
        self.path.setData(p[:, 0], p[:, 1])
        ok = np.isfinite(p).all(axis=1)
        first, last = p[:1][ok[:1]], p[-1:][ok[-1:]]
        self.start.setData(first[:, 0], first[:, 1])
        self.current.setData(last[:, 0], last[:, 1])

    def valueAt(self, x: float, y: float) -> float | None:
        """f at the grid point nearest to ``(x, y)``, or ``None`` outside the map."""
        if self._z is None:
            return None
        xs, ys = self._xs, self._ys
        dx, dy = (xs[-1] - xs[0]) / (len(xs) - 1), (ys[-1] - ys[0]) / (len(ys) - 1)
        c, r = int(round((x - xs[0]) / dx)), int(round((y - ys[0]) / dy))
        if 0 <= r < len(ys) and 0 <= c < len(xs):
            return float(self._z[r, c])
        return None

    def hoverAt(self, x: float, y: float) -> None:
        """Show the position (and f there, if on the map) for data coordinates ``(x, y)``."""
        f = self.valueAt(x, y)
        text = f"x = {x:.4g}, y = {y:.4g}"
        if f is not None:
            text = f"{text}, f ≈ {f:.6g}"
            if self.CLICK_STARTS:
                text = self._fit(f"{text} · click to start here", text)
        self._hinting = False
        self.hover.setText(text)

    # -------------------------------------------------------------- internals
    def _on_mouse_moved(self, pos: QPointF) -> None:
        vb = self.plot.getPlotItem().getViewBox()
        if vb.sceneBoundingRect().contains(pos):
            p = vb.mapSceneToView(pos)
            self.hoverAt(p.x(), p.y())
        else:
            self._set_hint()

    def _on_mouse_clicked(self, ev) -> None:
        vb = self.plot.getPlotItem().getViewBox()
        if not self.CLICK_STARTS or ev.button() != Qt.MouseButton.LeftButton or self._z is None \
                or not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        p = vb.mapSceneToView(ev.scenePos())
        ev.accept()
        self.startRequested.emit(float(p.x()), float(p.y()))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        if self._hinting:  # the hint that fits the new width
            self._set_hint()

    def _set_hint(self) -> None:
        self._hinting = True
        click = " · click to start the run there" if self.CLICK_STARTS else ""
        self.hover.setText(f"<span style='color: grey'>{self._fit(f'hover for x, y{click}', 'hover for x, y')}</span>")

    def _fit(self, text: str, short: str) -> str:
        """``text`` where the hover line holds it (or before it is laid out), else ``short``."""
        if not self.hover.isVisible():
            return text  # not laid out yet: refitted when it is (resizeEvent)
        fits = self.hover.fontMetrics().horizontalAdvance(text) <= self.hover.contentsRect().width()
        return text if fits else short
