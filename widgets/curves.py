"""Scalar series of a run against the step: loss, gradient norm, update norm, the update/weight
ratio and the lr per group.

Five small plots share one x axis so a spike lines up across them. Where a point stands for
several steps (a long run's bucketed series) a light band shows each bucket's min..max; other
branches' curves can be overlaid, faintly, in their colours. Curves are made once
and fed with ``setData``; NaN points (no loss yet, a group added later) leave gaps. The
legend is a line of text above the plots (never on the data), the curves can be smoothed
(TensorBoard's debiased moving average, the raw curve faint behind), either axis can be
logarithmic, and the series export as CSV or the plots as PNG.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QMenu, QSlider, QToolButton, QVBoxLayout, QWidget

from core.snapshot import History
from widgets.curve_layers import BranchOverlays, Envelope
from widgets.held_ranges import HeldRanges
from widgets.curves_export import CurvesExport
from widgets.pg_setup import SameWidth, cache_axes, compact_ticks, configure, relax_title
from widgets.reset_view import ResetView
from widgets.wheel_guard import guard

configure()

SERIES = ("loss", "grad_norm", "update_norm", "update_ratio", "lr")
SMOOTHED = ("loss", "grad_norm", "update_norm")
GROUPED = ("update_ratio", "lr")  # one curve per param_group
LABELS = {"loss": "loss", "grad_norm": "grad norm", "update_norm": "update norm", "update_ratio": "update ratio",
          "lr": "lr"}
AXIS_LABELS = {"grad_norm": "|grad|", "update_norm": "|update|", "update_ratio": "ratio"}  # the rows are narrow
# on a short row (a small screen) the rotated labels ran into each other: shorter still
SHORT_LABELS = {"grad_norm": "|g|", "update_norm": "|Δp|", "update_ratio": "Δp/p"}
# measured as often as a small share of the run's time allows: a step without a measurement is
# not a gap in the curve (as a step without a loss is), so these lines join the measured points
MEASURED = ("grad_norm", "update_norm", "update_ratio")
COLORS = {"loss": (255, 170, 60), "grad_norm": (90, 170, 255), "update_norm": (120, 210, 120)}
VAL_COLOR = (240, 90, 170)
# distinct, colour-blind-friendly-ish colours for lr groups (cycled)
GROUP_COLORS = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66),
                (204, 121, 167), (213, 94, 0), (0, 114, 178), (200, 200, 200)]
AXIS_WIDTH = 52
MAX_AXIS_WIDTH = 90  # what a wider tick label may widen the rows' axes to
RAW_ALPHA = 70  # the unsmoothed curve behind a smoothed one
def _curve(color, alpha: int = 255) -> pg.PlotDataItem:
    return pg.PlotDataItem(pen=pg.mkPen((*color, alpha), width=1), connect="finite", clipToView=True,
                           autoDownsample=True, downsampleMethod="peak")


def nearest_finite(x: np.ndarray, y: np.ndarray, at: float) -> int | None:
    """Index of the finite ``y`` whose ``x`` is nearest to ``at`` (``x`` ascending)."""
    idx = np.flatnonzero(np.isfinite(y))
    if idx.size == 0:
        return None
    xs = x[idx]
    k = int(np.searchsorted(xs, at))
    cands = [c for c in (k - 1, k) if 0 <= c < idx.size]
    best = min(cands, key=lambda c: abs(xs[c] - at))
    return int(idx[best])


def smooth(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average of the finite points, debiased
    (divided by 1 - weight^n) so the first points are not pulled towards zero; NaN stays NaN."""
    y = np.asarray(y, dtype=np.float64)
    if weight <= 0 or y.size == 0:
        return y
    out = np.full(y.shape, np.nan)
    last, n = 0.0, 0
    for i, v in enumerate(y.tolist()):
        if v != v or v in (float("inf"), float("-inf")):
            continue
        n += 1
        last = last * weight + (1.0 - weight) * v
        out[i] = last / (1.0 - weight ** n)
    return out


def swatch(color, text: str, dashed: bool = False) -> str:
    """A legend entry in rich text: a line in ``color`` (dashed: ╍╍) and ``text``. A legend of
    them wraps between entries, never inside one ("group" at a line's end, "0" below it)."""
    return f"<span style='color: rgb{tuple(color)}'>{'╍╍' if dashed else '━━'}</span>&nbsp;{_nobreak(text)}"


def _nobreak(text: str) -> str:
    return text.replace(" ", "&nbsp;")


class CurvesView(CurvesExport, QWidget):
    """Plots a ``History``; hovering a plot reads out the nearest point, and a click on a plot
    asks to go to the step under it (``stepClicked(step)``: the nearest recorded step; a
    bucket's last step where points hold several)."""

    stepClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._history = History.empty()
        self._smoothed: dict[str, np.ndarray] = {}  # the smoothed series, aligned with the history
        self._last_hover: tuple[str, float, float | None] | None = None
        self._forced_x = False
        self._forced_y: set[str] = set()
        self._live = False
        self._held = HeldRanges()  # while running, the axes hold their ranges (widgets.held_ranges)
        self._legend_plain = ""
        self._clickable = False  # see setStepClickable
        self.smoothing = QSlider(Qt.Orientation.Horizontal, self)
        self.smoothing.setRange(0, 99)
        self.smoothing.setToolTip("Smoothing of loss, |grad| and |update| (moving average weight; "
                                  "the raw curve stays faint behind)")
        self.smoothing.setMaximumWidth(90)
        guard(self.smoothing)
        self.smoothingLabel = QLabel("smooth 0", self)
        self.logX = QCheckBox("log x", self)
        self.logX.setToolTip("Logarithmic step axis")
        self.logY = QCheckBox("log y", self)
        self.logY.setToolTip("Logarithmic value axes (loss, norms, lr)")
        self.ratioLog = QCheckBox("log ratio", self, checked=True)
        self.ratioLog.setToolTip("Logarithmic axis for the update/weight ratio ||Δp|| / ||p|| per group "
                                 "(its usual values span decades; about 1e-3 is the common rule of thumb)")
        self.exportButton = QToolButton(self)
        self.exportButton.setText("Export")
        self.exportButton.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.exportButton)
        menu.addAction("Series as CSV…", self._ask_csv)
        menu.addAction("Plots as PNG…", self._ask_png)
        self.exportButton.setMenu(menu)
        self.legendLabel = QLabel(self)
        self.legendLabel.setWordWrap(True)
        self.hover = QLabel(self)
        self.hover.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.graphics = pg.GraphicsLayoutWidget(self)
        self.graphics.ci.setSpacing(2)
        self.graphics.ci.setContentsMargins(2, 2, 2, 2)

        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.raw: dict[str, pg.PlotDataItem] = {}
        self.groupCurves: dict[str, list[pg.PlotDataItem]] = {name: [] for name in GROUPED}
        self.lrCurves = self.groupCurves["lr"]
        self.ratioCurves = self.groupCurves["update_ratio"]
        self.envelopes: dict[str, Envelope] = {}
        self._markers: dict[str, pg.PlotDataItem] = {}
        for row, name in enumerate(SERIES):
            plot = self.graphics.addPlot(row=row, col=0)
            cache_axes(plot)
            plot.hideButtons()
            plot.setMenuEnabled(False)
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setLabel("left", AXIS_LABELS.get(name, LABELS[name]))
            compact_ticks(plot.getAxis("bottom"))
            plot.getAxis("left").enableAutoSIPrefix(False)  # "(x0.001)" would not fit the label
            if row < len(SERIES) - 1:
                plot.getAxis("bottom").setStyle(showValues=False)
                plot.getAxis("bottom").setHeight(4)
            else:
                plot.setLabel("bottom", "step")
            if row:
                plot.setXLink(self.plots[SERIES[0]])
            if name not in GROUPED:
                self.envelopes[name] = Envelope(plot, COLORS[name])
                self.raw[name] = _curve(COLORS[name], RAW_ALPHA)
                self.raw[name].setVisible(False)
                plot.addItem(self.raw[name])
                self.curves[name] = _curve(COLORS[name])
                plot.addItem(self.curves[name])
            marker = pg.PlotDataItem(pen=None, symbol="o", symbolSize=7,
                                     symbolBrush=(255, 255, 255), symbolPen=None)
            marker.setVisible(False)
            plot.addItem(marker)
            self._markers[name] = marker
            self.plots[name] = plot
            plot.geometryChanged.connect(lambda name=name: self._fit_label(name))
        # the rows' left axes at one width (the rows line up; a label like 0.0012 widens them all)
        self.axisWidth = SameWidth((p.getAxis("left") for p in self.plots.values()), AXIS_WIDTH, MAX_AXIS_WIDTH)
        # validation (tasks): val loss beside the training loss; its accuracy in the loss plot's title
        self.valLoss = pg.PlotDataItem(pen=pg.mkPen(*VAL_COLOR, width=1), symbol="o", symbolSize=4,
                                       symbolBrush=VAL_COLOR, symbolPen=None, connect="finite")
        self.plots["loss"].addItem(self.valLoss)
        self.plots["loss"].setTitle(None)
        relax_title(self.plots["loss"])
        self.overlays = BranchOverlays(self.plots)
        self.plots["update_ratio"].setLogMode(x=False, y=True)
        # a log axis has no 0: a measured curve whose latest values are exactly 0 (an update that
        # rounds away once the lr has decayed to nothing) would just end; a note in its plot says so
        self.zeroNotes: dict[str, pg.TextItem] = {}
        for name in MEASURED:
            vb = self.plots[name].getViewBox()
            note = pg.TextItem(color=(200, 200, 200), anchor=(1, 0))
            font = note.textItem.font()
            font.setPointSizeF(7.5)
            note.setFont(font)
            note.setParentItem(vb)  # in the view's pixels, not the data's: it stays in the corner
            note.setVisible(False)
            vb.sigResized.connect(lambda vb, note=note: note.setPos(vb.width() - 2, 0))
            self.zeroNotes[name] = note
        self.resetButton = ResetView(self.graphics, self.fitAll, tip="Back to every step and value (the wheel "
                                     "zooms a plot, drag pans it; the steps move together)")
        for plot in self.plots.values():
            self.resetButton.watch(plot.getViewBox())
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.graphics.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self.smoothing.valueChanged.connect(self._on_smoothing)
        self.logX.toggled.connect(self._on_log)
        self.logY.toggled.connect(self._on_log)
        self.ratioLog.toggled.connect(self._on_log)

        top = QHBoxLayout()
        top.setSpacing(6)
        top.addWidget(self.smoothingLabel)
        top.addWidget(self.smoothing)
        top.addWidget(self.logX)
        top.addWidget(self.logY)
        top.addWidget(self.ratioLog)
        top.addStretch(1)
        legend = QHBoxLayout()  # Export beside the legend (which wraps): the dock stays narrow at 1024 wide
        legend.setContentsMargins(0, 0, 0, 0)
        legend.addWidget(self.legendLabel, 1)
        legend.addWidget(self.exportButton, 0, Qt.AlignmentFlag.AlignTop)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addLayout(top)
        lay.addLayout(legend)
        lay.addWidget(self.hover)
        lay.addWidget(self.graphics, 1)
        self._set_hint()
        self._update_legend(False, 0)

    # ----------------------------------------------------------------- public
    def history(self) -> History:
        return self._history

    def setHistory(self, h: History, live: bool = False) -> None:
        """Draw ``h``; curves are reused, lr curves follow the number of groups. ``live``: the
        run goes on (the axes' ranges then move only when the curves leave them)."""
        self._history = h
        self._live = live
        x = np.asarray(h.step, dtype=np.float64)
        w = self.smoothingWeight()
        self._smoothed = {}
        for name, curve in self.curves.items():
            y = np.asarray(getattr(h, name), dtype=np.float64)
            self._smoothed[name] = sm = smooth(y, w)
            seen = ~np.isnan(y) if name in MEASURED else slice(None)
            if w > 0:  # the faint raw curve behind a smoothed one
                self.raw[name].setData(x[seen], y[seen])
            elif self.raw[name].isVisible():
                self.raw[name].setData([], [])
            self.raw[name].setVisible(w > 0)
            curve.setData(x[seen], sm[seen])
            self.envelopes[name].set(x, getattr(h, f"{name}_min", None), getattr(h, f"{name}_max", None),
                                     getattr(h, "bucket", 1), self._log_y(name), join=name in MEASURED)
        val = getattr(h, "val_loss", None)
        has_val = val is not None and len(val) and bool(np.isfinite(val).any())
        if has_val:
            self.valLoss.setData(x, np.asarray(val, dtype=np.float64))
            acc = h.val_accuracy
            if acc is not None and np.isfinite(acc).any():
                last = acc[np.isfinite(acc)][-1]
                self.plots["loss"].setTitle(f"validation accuracy {last:.1%}", size="8pt")
        else:
            self.valLoss.setData([], [])
        has_loss = len(h.loss) and bool(np.isfinite(h.loss).any())
        if not len(h.step):  # a new branch at step 0: there is a loss to come, whatever its source
            self.plots["loss"].setTitle("no step yet", size="8pt")
        elif not has_loss and not has_val:
            self.plots["loss"].setTitle("no loss: the gradients are set by hand", size="8pt")
        elif not has_val:
            self.plots["loss"].setTitle(None)
        ratios = tuple(getattr(h, "update_ratio", ()))
        for name, groups in (("lr", h.lr), ("update_ratio", ratios)):
            self._sync_groups(name, len(groups))
            for curve, series in zip(self.groupCurves[name], groups):
                y = np.asarray(series, dtype=np.float64)
                seen = ~np.isnan(y) if name in MEASURED else slice(None)
                curve.setData(x[seen], y[seen])
        self._update_legend(bool(has_val), max(len(h.lr), len(ratios)), bool(ratios))
        self._note_zeros(x, ratios)
        self._frame_x(x)
        self._frame_all_y()
        if self._last_hover is not None:  # keep the read-out live while the run goes on
            self.hoverAt(*self._last_hover)

    def setOverlays(self, branches: dict) -> None:
        """Other branches' curves: ``{branch id: (colour, History)}`` (an empty dict removes them)."""
        self.overlays.set(branches)
        self._frame_all_y()

    def smoothingWeight(self) -> float:
        return self.smoothing.value() / 100.0

    def setSmoothing(self, weight: float) -> None:
        self.smoothing.setValue(round(weight * 100))

    def legendText(self) -> str:
        """The legend as plain text, e.g. "loss: train, validation · lr: group 0, group 1"."""
        return self._legend_plain

    def pointAt(self, series: str, x: float, y: float | None = None) -> tuple[str, float, float] | None:
        """Nearest finite point to step ``x`` in ``series``: ``(label, step, value)``.

        For "lr" and "update_ratio" with several groups, the group whose value at that step is
        nearest to ``y`` (data units, as drawn) is chosen. Values are the raw ones, not smoothed.
        """
        h = self._history
        steps = np.asarray(h.step, dtype=np.float64)
        if series in GROUPED:
            groups = tuple(getattr(h, series, ()))
            best = None
            for g, s in enumerate(groups):
                i = nearest_finite(steps, s, x)
                if i is None:
                    continue
                dist = (abs(steps[i] - x), 0.0 if y is None else abs(s[i] - y))
                if best is None or (dist[0], dist[1]) < best[0]:
                    best = (dist, g, i)
            if best is None:
                return None
            _, g, i = best
            return f"{LABELS[series]} group {g}", float(steps[i]), float(groups[g][i])
        values = getattr(h, series)
        i = nearest_finite(steps, values, x)
        if i is None:
            return None
        return LABELS[series], float(steps[i]), float(values[i])

    def hoverAt(self, series: str, x: float, y: float | None = None) -> None:
        """Show the nearest point of ``series`` to data ``(x, y)`` (what mouse moves call)."""
        self._last_hover = (series, x, y)
        for m in self._markers.values():
            m.setVisible(False)
        hit = self.pointAt(series, x, y)
        if hit is None:
            self._set_hint()
            return
        label, step, value = hit
        text = f"{label} · step {step:.0f}: {value:.6g}"
        if series in SMOOTHED and self.smoothingWeight() > 0:
            i = nearest_finite(np.asarray(self._history.step, dtype=np.float64),
                               getattr(self._history, series), x)
            text += f" (smoothed {self._smoothed[series][i]:.6g})"
        self.hover.setText(text)
        marker = self._markers[series]
        marker.setData([step], [value])
        marker.setVisible(True)

    # -------------------------------------------------------------- internals
    def _note_zeros(self, x: np.ndarray, ratios) -> None:
        """On a logarithmic axis, say which measured curves stand at exactly 0 now, and since when
        (short: the plots are some 200 px wide in a docked Curves panel)."""
        h = self._history
        for name, note in self.zeroNotes.items():
            zero = {}
            if self._log_y(name) and len(x):
                groups = enumerate(ratios) if name == "update_ratio" else [(None, getattr(h, name))]
                for g, series in groups:
                    since = zero_since(x, series)
                    if since is not None:
                        zero[g] = since
            if zero:
                who = "" if None in zero or len(ratios) < 2 else \
                    f"group {next(iter(zero))}: " if len(zero) == 1 else f"groups {', '.join(map(str, zero))}: "
                note.setText(f"{who}0 since step {max(zero.values()):,.0f}")  # all of them since then
            note.setVisible(bool(zero))

    def _frame_x(self, x: np.ndarray) -> None:
        """With fewer than two steps recorded, show steps 0..1 (pyqtgraph's range around a
        single point runs from -20 to 20); from two on, the range follows the data again."""
        finite = x[np.isfinite(x)]
        vb = self.plots["loss"].getViewBox()
        if np.unique(finite).size < 2 and not self.logX.isChecked():
            top = float(finite.max()) if finite.size else 1.0
            vb.setXRange(0.0, max(1.0, top), padding=0.02)
            self._forced_x = True
            self._held.forget(("loss", 0))
            return
        if self._forced_x:
            self._forced_x = False
            vb.enableAutoRange(axis=pg.ViewBox.XAxis)
        shown = np.log10(finite[finite > 0]) if self.logX.isChecked() else finite
        self._held.hold(("loss", 0), vb, 0, shown, self._live, steps=not self.logX.isChecked())

    def _frame_y(self, name: str, y: np.ndarray) -> None:
        """A flat series (a constant lr) gets a range around its value: pyqtgraph's range
        around one value runs from v - 0.5 to v + 0.5, and an lr of 0.01 then reads "0"."""
        finite = y[np.isfinite(y)]
        vb = self.plots[name].getViewBox()
        flat = finite.size > 0 and finite.min() == finite.max() and not self._log_y(name)
        if finite.size == 0:  # nothing to draw: not the last branch's range (stale ticks over no curve)
            vb.setYRange(0.0, 1.0, padding=0)
            self._forced_y.add(name)
        elif flat:
            v = float(finite[0])
            half = abs(v) * 0.5 or 1.0
            vb.setYRange(v - half, v + half, padding=0)
            self._forced_y.add(name)
        else:
            if name in self._forced_y:
                self._forced_y.discard(name)
                vb.enableAutoRange(axis=pg.ViewBox.YAxis)
            self._held.hold((name, 1), vb, 1, np.log10(finite[finite > 0]) if self._log_y(name) else finite,
                            self._live)
            return
        self._held.forget((name, 1))

    def _fit_label(self, name: str) -> None:
        """The row's long label where its height holds it, else the short one."""
        axis = self.plots[name].getAxis("left")
        full = AXIS_LABELS.get(name, LABELS[name])
        fits = QFontMetricsF(axis.label.font()).horizontalAdvance(full) + 6 <= axis.geometry().height()
        text = full if fits else SHORT_LABELS.get(name, full)
        if axis.labelText != text:
            axis.setLabel(text)

    def _update_legend(self, has_val: bool, groups: int, ratios: bool = False) -> None:
        entries = []  # (plot, [(colour, name)])
        if has_val:
            entries.append(("loss", [(COLORS["loss"], "train"), (VAL_COLOR, "validation")]))
        if groups:
            swatches = [(GROUP_COLORS[g % len(GROUP_COLORS)], f"group {g}") for g in range(groups)]
            entries.append(("lr, update ratio" if ratios else "lr", swatches))
        self._legend_plain = " · ".join(f"{p}: {', '.join(n for _, n in items)}" for p, items in entries)
        parts = [f"{_nobreak(p)}:&nbsp;" + " ".join(swatch(c, n) for c, n in items) for p, items in entries]
        text = "&nbsp;&nbsp; ".join(parts)
        if text != self.legendLabel.text():
            self.legendLabel.setText(text)
        self.legendLabel.setVisible(bool(parts))

    def _sync_groups(self, name: str, n: int) -> None:
        plot, curves = self.plots[name], self.groupCurves[name]
        while len(curves) > n:
            plot.removeItem(curves.pop())
        while len(curves) < n:
            g = len(curves)
            curve = _curve(GROUP_COLORS[g % len(GROUP_COLORS)])
            plot.addItem(curve)
            curves.append(curve)

    def _log_y(self, name: str) -> bool:
        return (self.ratioLog if name == "update_ratio" else self.logY).isChecked()

    def _frame_all_y(self) -> None:
        for name in SERIES:
            items = self.groupCurves[name] if name in GROUPED else [self.curves[name]]
            ys = [np.asarray(c.getData()[1] if c.getData()[1] is not None else [], dtype=np.float64)
                  for c in items]
            if name in self.curves:
                ys += [np.asarray(v, dtype=np.float64) for v in self.overlays.values(name)]
                if self.envelopes[name].isVisible():
                    ys += [np.asarray(v, dtype=np.float64) for v in self.envelopes[name].data()]
            self._frame_y(name, np.concatenate(ys) if ys else np.zeros(0))

    def _on_smoothing(self, value: int) -> None:
        self.smoothingLabel.setText(f"smooth {value / 100:.2f}" if value else "smooth 0")
        self.setHistory(self._history)

    def _on_log(self, _on: bool = False) -> None:
        for name, plot in self.plots.items():
            plot.setLogMode(x=self.logX.isChecked(), y=self._log_y(name))
        self.fitAll()

    def fitAll(self) -> None:
        """Every plot framed on its data again, following the run (after a zoom or a pan, which
        pyqtgraph keeps: it turns the view's auto-range off)."""
        self.resetButton.hide()
        self._forced_x = False
        self._forced_y.clear()
        self._held.clear()
        for plot in self.plots.values():
            plot.getViewBox().enableAutoRange()
        self.setHistory(self._history)

    def _on_mouse_moved(self, pos: QPointF) -> None:
        for name, plot in self.plots.items():
            vb = plot.getViewBox()
            if vb.sceneBoundingRect().contains(pos):
                p = vb.mapSceneToView(pos)
                x, y = p.x(), p.y()
                if self.logX.isChecked():
                    x = 10.0 ** x
                if self._log_y(name):
                    y = 10.0 ** y
                self.hoverAt(name, x, y)
                return

    def setStepClickable(self, on: bool) -> None:
        """Whether a click on a plot asks for its step (where there is a timeline to go to)."""
        self._clickable = bool(on)
        self._set_hint()

    def stepAt(self, x: float) -> int | None:
        """The recorded step nearest to step ``x`` (None: nothing recorded)."""
        steps = np.asarray(self._history.step, dtype=np.float64)
        if not len(steps) or not np.isfinite(x):
            return None
        i = int(np.clip(np.searchsorted(steps, x), 0, len(steps) - 1))
        if i and abs(steps[i - 1] - x) <= abs(steps[i] - x):
            i -= 1
        return int(steps[i])

    def _on_mouse_clicked(self, ev) -> None:
        if not self._clickable or ev.button() != Qt.MouseButton.LeftButton or ev.double():
            return
        pos = ev.scenePos()
        for plot in self.plots.values():
            vb = plot.getViewBox()
            if vb.sceneBoundingRect().contains(pos):
                x = vb.mapSceneToView(pos).x()
                step = self.stepAt(10.0 ** x if self.logX.isChecked() else x)
                if step is not None:
                    self.stepClicked.emit(step)
                return

    def _set_hint(self) -> None:
        click = " · click: go to that step" if self._clickable else ""
        self.hover.setText(f"<span style='color: grey'>hover a plot for values{click}</span>")


def zero_since(steps: np.ndarray, values) -> float | None:
    """The step from which the measured ``values`` (NaN: not measured) have been exactly 0 up
    to the latest measurement, or None when the latest one is not 0."""
    v = np.asarray(values, dtype=np.float64)
    measured = np.flatnonzero(~np.isnan(v))
    if not len(measured) or v[measured[-1]] != 0:
        return None
    nonzero = measured[v[measured] != 0]
    first = measured[np.searchsorted(measured, nonzero[-1], side="right")] if len(nonzero) else measured[0]
    return float(steps[first])
