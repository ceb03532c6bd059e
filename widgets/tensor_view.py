"""One tensor (an ``ArrayView``) drawn as a heatmap, bars or a number, with exact hover values.

Images are mapped to uint8 through a 256-entry colour table here (fast to draw) with
levels taken from the whole tensor's statistics, so a strided preview keeps the colours
of the full tensor. Items are made once and updated with ``setImage``/``setOpts``.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QApplication, QHBoxLayout, QLabel, QSizePolicy, QStackedWidget, QToolButton, QVBoxLayout,
                               QWidget)

from core.snapshot import ArrayView
from widgets.pg_setup import cache_axes, compact_ticks, configure, index_ticks
from widgets.cell_edit import CellEditing
from widgets.cell_labels import CELL_SIDE, CellLabels
from widgets.elided_label import ElidedLabel
from widgets.wheel_guard import PlotWheel

configure()

DIVERGING = "CET-D1"
SEQUENTIAL = "viridis"
NAN_RGBA = (255, 0, 255, 255)  # magenta: NaN must stand out in a debugger
AXIS_WIDTH, AXIS_HEIGHT = 44, 24
MAX_BARS = 1024  # above this a 1-D tensor is drawn as a filled step curve (cheaper)
_LUTS: dict[str, np.ndarray] = {}


def fmt(v: float, digits: int = 4) -> str:
    """Short number text; integers stay integers (e.g. Adam's ``step``)."""
    v = float(v)
    if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.{digits}g}"


def color_levels(view: ArrayView) -> tuple[float, float, bool]:
    """Return ``(low, high, signed)``: symmetric around 0 when the data has both signs."""
    return levels_of(*value_range(view))


def steady_levels(cur, new: tuple[float, float, bool]) -> tuple[float, float, bool]:
    """``cur`` while the data (levels ``new``) stays inside them and spans at least half of
    them, else ``new``: levels that move every frame re-render the colour bar's axis every frame."""
    lo, hi, signed = new
    if cur is not None and cur[2] == signed and cur[0] <= lo and hi <= cur[1] and (hi - lo) >= 0.5 * (cur[1] - cur[0]):
        return cur
    return new


def value_range(view: ArrayView) -> tuple[float, float]:
    """The tensor's finite (min, max) ((0, 0) when it has no finite value)."""
    lo, hi = float(view.min), float(view.max)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        finite = view.values[np.isfinite(view.values)] if view.values.size else view.values
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return lo, hi


def levels_of(lo: float, hi: float) -> tuple[float, float, bool]:
    """Colour levels ``(low, high, signed)`` for values from ``lo`` to ``hi``."""
    if lo < 0 < hi:
        m = max(-lo, hi)
        return -m, m, True
    if lo == hi:
        return lo - 1.0, hi + 1.0, False
    return lo, hi, False


def lut(name: str) -> np.ndarray:
    """256-entry RGBA table of colour map ``name``; the last entry is kept for NaN."""
    if name not in _LUTS:
        table = pg.colormap.get(name).getLookupTable(nPts=255, alpha=True)
        _LUTS[name] = np.ascontiguousarray(np.vstack([table, NAN_RGBA]).astype(np.ubyte))
    return _LUTS[name]


def to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` to 255 equal bins 0..254 (clipped) and NaN to 255, C-contiguous uint8."""
    v = np.asarray(values, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = (v - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        np.clip(scaled, 0, 254, out=scaled)
    nan = np.isnan(scaled)
    scaled[nan] = 255
    return np.ascontiguousarray(scaled.astype(np.uint8))


def as_2d(values: np.ndarray) -> np.ndarray:
    """Rows are axis 0; every later axis is flattened into the columns."""
    return values if values.ndim == 2 else values.reshape(values.shape[0], -1)




ASPECT_LOCK_MAX = 2  # height/width ratio up to which cells are drawn square


class TensorView(CellEditing, QWidget):
    """Draws one ``ArrayView`` with a title, hover read-out and a statistics footer.

    Emits ``exactRequested(index)`` (an index of the full tensor) when the user hovers
    a strided preview; answer with ``showExact(index, value)``. A left click on an
    element emits ``elementClicked(index)`` (the window explains that element's update);
    a double-click on a cell (or "fill…") edits it instead: ``valueEdited(index or None,
    value)`` (see ``CellEditing``).
    """

    exactRequested = Signal(tuple)
    elementClicked = Signal(tuple)
    valueEdited = Signal(object, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._view: ArrayView | None = None
        self._disp: np.ndarray | None = None  # 2-D (or 1-D) array actually drawn
        self._shape_drawn: tuple | None = None
        self._hover_index: tuple[int, ...] | None = None
        # hover state kept across redraws: the read-out follows the data while the mouse rests
        self._hover_xy: tuple[float, float] | None = None
        self._gen = 0  # counts the views drawn; an exact value is fetched for one of them
        self._exact: tuple[tuple[int, ...], float, int] | None = None  # (index, value, gen) last fetched
        self._asked: tuple[tuple[int, ...], int] | None = None  # (index, gen) of the fetch in flight
        self._cmap = ""
        self._image_page: pg.PlotWidget | None = None
        self._bars_page: pg.PlotWidget | None = None
        self.image: pg.ImageItem | None = None
        self.colorbar: pg.ColorBarItem | None = None
        self.bars: pg.BarGraphItem | None = None
        self.step_curve: pg.PlotDataItem | None = None

        self.title = ElidedLabel(parent=self)  # a long title gives way instead of widening the window
        bold = self.title.font()
        bold.setBold(True)
        self.title.setFont(bold)
        self.resetButton = QToolButton(self)
        self.resetButton.setText("reset view")
        self.resetButton.setAutoRaise(True)
        self.resetButton.setToolTip("Back to the whole tensor (Ctrl+wheel zooms, drag pans)")
        self.resetButton.clicked.connect(self.resetView)
        self.resetButton.hide()
        self._wheel = PlotWheel(self)
        self.cells: CellLabels | None = None  # made with the image page
        self.pages = QStackedWidget(self)
        self.pages.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.placeholder = QLabel("None", self)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: grey; font-style: italic;")
        self.scalar = QLabel(self)
        self.scalar.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.scalar.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        big = QFont(self.scalar.font())
        big.setPointSizeF(big.pointSizeF() * 2.6)
        big.setBold(True)
        self.scalar.setFont(big)
        self.pages.addWidget(self.placeholder)
        self.pages.addWidget(self.scalar)
        self.hover = QLabel(self)
        self.hover.setMinimumWidth(1)  # clipped when narrow: its hint must not widen a row of views
        self.hover.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # a click explains only once no second click followed (a double-click edits the cell)
        self._click_timer = QTimer(self)
        self._click_timer.setSingleShot(True)
        self._click_timer.timeout.connect(self._click_settled)
        self._pending_click: tuple[float, float] | None = None
        self.stats = QLabel(self)
        self.stats.setWordWrap(True)
        # two lines, always: a label whose height follows its text resizes the plot above it
        # whenever the numbers wrap differently, and every resize redraws the plot's axes
        self.stats.setFixedHeight(2 * self.stats.fontMetrics().lineSpacing() + 2)
        self.stats.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.stats.setStyleSheet("color: palette(mid);")
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        head = QHBoxLayout()
        head.setContentsMargins(0, 0, 0, 0)
        head.addWidget(self.title, 1)
        head.addWidget(self.resetButton)
        edit_row = self._make_editor(head)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addLayout(head)
        lay.addWidget(self.pages, 1)
        lay.addWidget(self.hover)
        lay.addWidget(edit_row)
        lay.addWidget(self.stats)
        self.setView(None, "")

    # ----------------------------------------------------------------- pages
    def _make_image_page(self) -> None:
        pw = pg.PlotWidget(self)
        pi = pw.getPlotItem()
        pi.hideButtons()
        pi.setMenuEnabled(False)
        pi.invertY(True)  # row 0 at the top, like a printed matrix
        # Fixed axis sizes: with a locked aspect, tick labels that change width would
        # resize the view, change its range and its labels again, for ever.
        pi.getAxis("left").setWidth(AXIS_WIDTH)
        pi.getAxis("bottom").setHeight(AXIS_HEIGHT)
        self._extent = (0, 0)  # (rows, columns) of the drawn image, in index units
        index_ticks(pi.getAxis("left"), lambda: self._extent[0])
        index_ticks(pi.getAxis("bottom"), lambda: self._extent[1])
        self.image = pg.ImageItem(axisOrder="row-major")
        pi.addItem(self.image)
        self.colorbar = pg.ColorBarItem(interactive=False, colorMapMenu=False, width=12)
        compact_ticks(self.colorbar.axis, 52)
        cache_axes(pi, self.colorbar.axis)
        pi.layout.addItem(self.colorbar, 2, 5)
        pi.layout.setColumnFixedWidth(4, 4)
        pi.getViewBox().disableAutoRange()
        pw.scene().sigMouseMoved.connect(self._on_mouse_moved)
        pw.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        pw.viewport().installEventFilter(self)  # double-click: edit the cell (CellEditing)
        self._zoomable(pw)
        self.cells = CellLabels(pi, QFont(self.font()))
        self._image_page = pw
        self.pages.addWidget(pw)

    def _make_bars_page(self) -> None:
        pw = pg.PlotWidget(self)
        pi = pw.getPlotItem()
        pi.hideButtons()
        pi.setMenuEnabled(False)
        pi.showGrid(y=True, alpha=0.25)
        compact_ticks(pi.getAxis("left"), AXIS_WIDTH + 8)
        pi.getAxis("bottom").setHeight(AXIS_HEIGHT)
        self._bar_count = 0  # elements along the x axis, for its index ticks
        index_ticks(pi.getAxis("bottom"), lambda: self._bar_count, centre=0.0)
        cache_axes(pi)
        brush = pg.mkBrush(90, 160, 230)
        self.bars = pg.BarGraphItem(x=[0.0], height=[0.0], width=0.8, brush=brush, pen=None)
        self.step_curve = pg.PlotDataItem(
            stepMode="center", fillLevel=0, brush=brush, pen=pg.mkPen(90, 160, 230, width=1),
            clipToView=True, autoDownsample=True, downsampleMethod="peak")
        pi.addItem(self.bars)
        pi.addItem(self.step_curve)
        pw.scene().sigMouseMoved.connect(self._on_mouse_moved)
        pw.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        pw.viewport().installEventFilter(self)  # double-click: edit the cell (CellEditing)
        self._zoomable(pw)
        self._bars_page = pw
        self.pages.addWidget(pw)

    def _zoomable(self, pw: pg.PlotWidget) -> None:
        """Wheel scrolls the column (Ctrl+wheel zooms); a changed view offers "reset view"."""
        pw.viewport().installEventFilter(self._wheel)
        pw.getPlotItem().getViewBox().sigRangeChangedManually.connect(lambda *_: self.resetButton.show())

    # ----------------------------------------------------------------- public
    @Slot()
    def resetView(self) -> None:
        """Show the whole tensor again (after a zoom or a pan)."""
        self.resetButton.hide()
        self._shape_drawn = None
        if self._view is not None and self.pages.currentWidget() in (self._image_page, self._bars_page):
            self.setView(self._view, self.title.text())

    def isZoomed(self) -> bool:
        return not self.resetButton.isHidden()

    def view(self) -> ArrayView | None:
        """The ``ArrayView`` drawn now (``None`` for the placeholder)."""
        return self._view

    def setView(self, view: ArrayView | None, title: str, placeholder: str | None = None) -> None:
        """Draw ``view`` under ``title``; ``None`` shows a grey placeholder.

        The placeholder reads "no gradient" for a title containing "grad", else "None".
        """
        self.title.setText(title)
        if view is not self._view:
            self._gen += 1
        self._view = view
        self._hover_index = None
        self.fillButton.setEnabled(self._editable and view is not None and view.numel > 0)
        if view is None or (self.isEditing() and view.shape != getattr(self, "_edit_shape", None)):
            self.cancelEdit()  # the element being edited is not there any more
        self._edit_shape = None if view is None else view.shape
        if view is None:
            self._disp = None
            self.placeholder.setText(placeholder or ("no gradient" if "grad" in title.lower() else "None"))
            self.pages.setCurrentWidget(self.placeholder)
            self.hover.hide()
            self.stats.hide()
            return
        self.stats.setText(self._stats_text(view))
        self.stats.show()
        if not view.shown and view.numel and not view.is_scalar:  # the frame carried statistics only
            self._disp = None  # (a tensor just chosen while running: its values come with the next)
            self.placeholder.setText("values come with the next frame")
            self.pages.setCurrentWidget(self.placeholder)
            self.hover.hide()
            return
        if view.numel == 0 and not view.is_scalar:
            self._disp = None
            self.placeholder.setText("empty")
            self.pages.setCurrentWidget(self.placeholder)
            self.hover.hide()
            return
        if view.is_scalar:
            self._disp = None
            self.scalar.setText(fmt(view.values.reshape(()).item(), 8))
            self.pages.setCurrentWidget(self.scalar)
            self.hover.hide()
            return
        self.hover.setVisible(not self.isEditing())
        if len(view.shape) == 1:
            self._draw_bars(view)
        else:
            self._draw_image(view)
        if self._hover_xy is not None:  # the mouse still rests here: read the new data out
            self.hoverAt(*self._hover_xy)
        else:
            self._set_hint()

    @Slot(tuple, float)
    def showExact(self, index: tuple, value: float) -> None:
        """Show the exact value fetched for ``index`` if the cursor is still there; if the data
        moved on meanwhile (a run), fetch it again (one fetch in flight at a time)."""
        index = tuple(int(i) for i in index)
        gen = self._gen
        if self._asked is not None and self._asked[0] == index:
            gen = self._asked[1]
            self._asked = None
        self._exact = (index, float(value), gen)
        if index == self._hover_index:
            self.hover.setText(f"{self._index_text(index)} = {float(value):.8g} (exact)")
            if gen != self._gen:
                self._request_exact(index)

    def forgetExact(self) -> None:
        """Drop fetched values (another tensor is drawn here now)."""
        self._exact = None
        self._asked = None

    def _request_exact(self, index: tuple[int, ...]) -> None:
        ex = self._exact
        if ex is not None and ex[0] == index and ex[2] == self._gen:
            return  # fetched for this very frame
        if self._asked is not None and self._asked[0] == index:
            return  # one in flight already; its answer asks again if the data moved on
        self._asked = (index, self._gen)
        self.exactRequested.emit(index)

    def cellLabels(self) -> list[tuple[str, bool]]:
        """The cell labels (text, shown) in row-major order."""
        return self.cells.labels() if self.cells is not None else []

    def valueAt(self, row: int, col: int) -> tuple[tuple[int, ...], float]:
        """Original tensor index and drawn value of display cell ``(row, col)``.

        For 1-D tensors ``row`` must be 0. Raises ``IndexError`` outside the data.
        """
        v, d = self._view, self._disp
        if v is None or d is None:
            raise IndexError("nothing drawn")
        if d.ndim == 1:
            if row != 0 or not 0 <= col < d.shape[0]:
                raise IndexError((row, col))
            pidx: tuple[int, ...] = (col,)
            value = d[col]
        else:
            if not (0 <= row < d.shape[0] and 0 <= col < d.shape[1]):
                raise IndexError((row, col))
            pidx = (row,) + tuple(int(i) for i in np.unravel_index(col, v.values.shape[1:]))
            value = d[row, col]
        index = tuple(int(i) * int(s) for i, s in zip(pidx, v.stride)) if not v.exact else pidx
        return index, float(value)

    def cellAt(self, x: float, y: float) -> tuple[int, int] | None:
        """Display cell ``(row, col)`` under data coordinates ``(x, y)``, or ``None``."""
        v, d = self._view, self._disp
        if v is None or d is None:
            return None
        if d.ndim == 1:
            s = v.stride[0] if not v.exact else 1
            col = int(math.floor(x / s + 0.5))
            return (0, col) if 0 <= col < d.shape[0] else None
        sy, sx = self._cell_size(v)
        row, col = int(math.floor(y / sy)), int(math.floor(x / sx))
        if 0 <= row < d.shape[0] and 0 <= col < d.shape[1]:
            return row, col
        return None

    def hoverAt(self, x: float, y: float) -> None:
        """Update the read-out for data coordinates ``(x, y)`` (what mouse moves call).

        A preview cell shows the preview's value until the exact one, fetched from the
        runner, arrives (then the exact one, refreshed while the run goes on)."""
        self._hover_xy = (x, y)
        cell = self.cellAt(x, y)
        if cell is None:
            self._hover_index = None
            self._set_hint()
            return
        index, value = self.valueAt(*cell)
        self._hover_index = index
        if self._view.exact:
            self.hover.setText(f"{self._index_text(index)} = {value:.6g}")
            return
        ex = self._exact
        if ex is not None and ex[0] == index:
            self.hover.setText(f"{self._index_text(index)} = {ex[1]:.8g} (exact)")
        else:
            self.hover.setText(f"{self._index_text(index)} = {value:.6g} (preview)")
        self._request_exact(index)

    def clickAt(self, x: float, y: float) -> tuple[int, ...] | None:
        """A click at data coordinates ``(x, y)``: emits ``elementClicked`` with the element's index
        in the full tensor (what a left click calls); returns it, or ``None`` off the data."""
        cell = self.cellAt(x, y)
        if cell is None:
            return None
        index, _ = self.valueAt(*cell)
        self.elementClicked.emit(index)
        return index

    # ---------------------------------------------------------------- drawing
    @staticmethod
    def _cell_size(v: ArrayView) -> tuple[float, float]:
        """Data units per drawn cell: the stride, so axes read original indices (2-D)."""
        if v.exact:
            return 1.0, 1.0
        return float(v.stride[0]), float(v.stride[1]) if len(v.shape) == 2 else 1.0

    def _draw_image(self, v: ArrayView) -> None:
        if self._image_page is None:
            self._make_image_page()
        d = as_2d(v.values)
        self._disp = d
        shared = getattr(self, "_shared_levels", None)
        lo, hi, signed = shared if shared is not None else self._steady_levels(*color_levels(v))
        cmap = DIVERGING if signed else SEQUENTIAL
        self.image.setLookupTable(lut(cmap), update=False)
        self.image.setImage(to_uint8(d, lo, hi), levels=(0, 255), autoLevels=False)
        if cmap != self._cmap:
            self._cmap = cmap
            self.colorbar.setColorMap(cmap)
        if getattr(self, "_bar_levels", None) != (lo, hi):  # unchanged levels: the bar's axis stays cached
            self._bar_levels = (lo, hi)
            self.colorbar.setLevels((lo, hi))
        sy, sx = self._cell_size(v)
        h, w = d.shape[0] * sy, d.shape[1] * sx
        self.cells.show(d if v.exact and max(d.shape) <= CELL_SIDE else None, lo, hi)
        key = ("image", v.shape, v.stride)
        if key != self._shape_drawn:
            self._shape_drawn = key
            self._extent = (h, w)
            self.image.setRect(0, 0, w, h)
            pi = self._image_page.getPlotItem()
            # Square cells only for squarish tensors: a 16x2 layer (or a 1x4096 row) locked
            # square is a thin strip in a wide panel; stretched, every cell stays readable.
            pi.setAspectLocked(max(h, w) / min(h, w) <= ASPECT_LOCK_MAX, ratio=1)
            pi.getViewBox().setRange(xRange=(0, w), yRange=(0, h), padding=0.02)
        self.pages.setCurrentWidget(self._image_page)

    def setSharedLevels(self, levels: tuple[float, float, bool] | None) -> None:
        """Colour by these ``(low, high, signed)`` levels (several views on one scale), or by
        the data's own again (None). Takes effect at the next ``setView``."""
        self._shared_levels = levels

    def _steady_levels(self, lo: float, hi: float, signed: bool) -> tuple[float, float, bool]:
        self._levels = steady_levels(getattr(self, "_levels", None), (lo, hi, signed))
        return self._levels

    def _draw_bars(self, v: ArrayView) -> None:
        if self._bars_page is None:
            self._make_bars_page()
        d = np.asarray(v.values, dtype=np.float64)
        self._disp = d
        s = float(v.stride[0]) if not v.exact else 1.0
        many = d.shape[0] > MAX_BARS
        if many:
            edges = (np.arange(d.shape[0] + 1) - 0.5) * s
            self.step_curve.setData(edges, np.nan_to_num(d, nan=0.0))
        else:
            self.bars.setOpts(x=np.arange(d.shape[0]) * s, height=np.nan_to_num(d, nan=0.0),
                              width=0.8 * s)
        self.bars.setVisible(not many)
        self.step_curve.setVisible(many)
        key = ("bars", v.shape, v.stride)
        vb = self._bars_page.getPlotItem().getViewBox()
        if key != self._shape_drawn:
            self._shape_drawn = key
            vb.disableAutoRange()
            n = d.shape[0] * s
            self._bar_count = v.shape[0]
            vb.setXRange(-0.6 * s, n - 0.4 * s, padding=0)
            self._yrange = None
        self._fit_y(vb, d)
        self.pages.setCurrentWidget(self._bars_page)

    def _fit_y(self, vb, d: np.ndarray) -> None:
        """Move the y range only when the bars leave it or shrink to a quarter of it:
        a range that changes every frame re-renders the axis every frame (7 ms vs 1 ms)."""
        finite = d[np.isfinite(d)]
        lo = min(0.0, float(finite.min())) if finite.size else 0.0
        hi = max(0.0, float(finite.max())) if finite.size else 1.0
        if hi - lo <= 0:
            hi = lo + 1.0
        cur = getattr(self, "_yrange", None)
        if cur is not None and cur[0] <= lo and hi <= cur[1] and (hi - lo) >= 0.25 * (cur[1] - cur[0]):
            return
        pad = 0.15 * (hi - lo)
        self._yrange = (lo - (pad if lo < 0 else 0.0), hi + (pad if hi > 0 else 0.0))
        vb.setYRange(*self._yrange, padding=0)

    # ----------------------------------------------------------------- hover
    def _on_mouse_moved(self, pos: QPointF) -> None:
        page = self.pages.currentWidget()
        if page not in (self._image_page, self._bars_page):
            return
        vb = page.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(pos):
            self._hover_index = None
            self._hover_xy = None
            self._set_hint()
            return
        p = vb.mapSceneToView(pos)
        self.hoverAt(p.x(), p.y())

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.MouseButtonDblClick:
            self._click_timer.stop()  # the first click of a double-click explains nothing
        return self._edit_event(obj, event) or super().eventFilter(obj, event)

    def _on_mouse_clicked(self, event) -> None:
        """A left click on an element explains it (``clickAt``) once the double-click interval
        has passed without a second click: a double-click edits the cell (``CellEditing``)."""
        page = self.pages.currentWidget()
        if event.button() != Qt.MouseButton.LeftButton or page not in (self._image_page, self._bars_page):
            return
        if event.double():
            self._click_timer.stop()
            return
        vb = page.getPlotItem().getViewBox()
        if vb.sceneBoundingRect().contains(event.scenePos()):
            p = vb.mapSceneToView(event.scenePos())
            self._pending_click = (p.x(), p.y())
            self._click_timer.start(QApplication.doubleClickInterval())

    def _click_settled(self) -> None:
        if self._pending_click is not None:
            x, y = self._pending_click
            self._pending_click = None
            self.clickAt(x, y)

    def leaveEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().leaveEvent(event)
        self._hover_index = None
        self._hover_xy = None
        if self.hover.isVisible():
            self._set_hint()

    HINT = "hover: values · click: explain · double-click: edit"

    def setHint(self, text: str) -> None:
        """What the line under the view says when the mouse is elsewhere (a read-only view
        offers neither explain nor edit, so it must not say it does)."""
        self._hint = text
        if self._hover_index is None and not self.isEditing():
            self._set_hint()

    def _set_hint(self) -> None:
        hint = getattr(self, "_hint", self.HINT)
        self.hover.setText(f"<span style='color: grey'>{hint}</span>")

    @staticmethod
    def _index_text(index: tuple[int, ...]) -> str:
        return "[" + ", ".join(str(i) for i in index) + "]"

    @staticmethod
    def _stats_text(v: ArrayView) -> str:
        nb = "\u00a0"  # keep each "name value" pair on one line when the footer wraps
        shape = "×".join(str(s) for s in v.shape) if v.shape else "scalar"
        parts = [f"{shape}{nb}{v.dtype}"]
        if v.numel and not v.is_scalar:
            parts += [f"{k}{nb}{fmt(x)}" for k, x in
                      (("min", v.min), ("max", v.max), ("mean", v.mean), ("norm", v.norm))]
        if not v.exact:
            parts.append(f"preview{nb}1/" + "×".join(str(s) for s in v.stride))
        return " · ".join(parts)
