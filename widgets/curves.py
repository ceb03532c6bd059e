"""Scalar series of a run against the step: loss, gradient norm, update norm, lr per group.

Four small plots share one x axis so a spike lines up across them. Curves are made once
and fed with ``setData``; NaN points (no loss yet, a group added later) leave gaps.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from core.snapshot import History
from widgets.pg_setup import cache_axes, compact_ticks, configure

configure()

SERIES = ("loss", "grad_norm", "update_norm", "lr")
LABELS = {"loss": "loss", "grad_norm": "grad norm", "update_norm": "update norm", "lr": "lr"}
AXIS_LABELS = {"grad_norm": "|grad|", "update_norm": "|update|"}  # short: the rows are narrow
COLORS = {"loss": (255, 170, 60), "grad_norm": (90, 170, 255), "update_norm": (120, 210, 120)}
# distinct, colour-blind-friendly-ish colours for lr groups (cycled)
GROUP_COLORS = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66),
                (204, 121, 167), (213, 94, 0), (0, 114, 178), (200, 200, 200)]
AXIS_WIDTH = 52


def _curve(color) -> pg.PlotDataItem:
    return pg.PlotDataItem(pen=pg.mkPen(color, width=1), connect="finite", clipToView=True,
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


class CurvesView(QWidget):
    """Plots a ``History``; hovering a plot reads out the nearest point."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._history = History.empty()
        self._last_hover: tuple[str, float, float | None] | None = None
        self.logLoss = QCheckBox("log loss", self)
        self.logLoss.toggled.connect(self._on_log_toggled)
        self.hover = QLabel(self)
        self.hover.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.graphics = pg.GraphicsLayoutWidget(self)
        self.graphics.ci.setSpacing(2)
        self.graphics.ci.setContentsMargins(2, 2, 2, 2)

        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.lrCurves: list[pg.PlotDataItem] = []
        self._markers: dict[str, pg.PlotDataItem] = {}
        for row, name in enumerate(SERIES):
            plot = self.graphics.addPlot(row=row, col=0)
            cache_axes(plot)
            plot.hideButtons()
            plot.setMenuEnabled(False)
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setLabel("left", AXIS_LABELS.get(name, LABELS[name]))
            compact_ticks(plot.getAxis("left"), AXIS_WIDTH)
            plot.getAxis("left").enableAutoSIPrefix(False)  # "(x0.001)" would not fit the label
            if row < len(SERIES) - 1:
                plot.getAxis("bottom").setStyle(showValues=False)
                plot.getAxis("bottom").setHeight(4)
            else:
                plot.setLabel("bottom", "step")
            if row:
                plot.setXLink(self.plots[SERIES[0]])
            if name != "lr":
                self.curves[name] = _curve(COLORS[name])
                plot.addItem(self.curves[name])
            marker = pg.PlotDataItem(pen=None, symbol="o", symbolSize=7,
                                     symbolBrush=(255, 255, 255), symbolPen=None)
            marker.setVisible(False)
            plot.addItem(marker)
            self._markers[name] = marker
            self.plots[name] = plot
        # validation (tasks): val loss beside the training loss, accuracy on the update-norm row's right axis
        self.valLoss = pg.PlotDataItem(pen=pg.mkPen(240, 90, 170, width=1), symbol="o", symbolSize=4,
                                       symbolBrush=(240, 90, 170), symbolPen=None, connect="finite",
                                       name="validation")
        self.plots["loss"].addItem(self.valLoss)
        self.valAccuracy = pg.PlotDataItem(pen=pg.mkPen(120, 220, 120, width=1), symbol="o", symbolSize=4,
                                           symbolBrush=(120, 220, 120), symbolPen=None, connect="finite")
        self.plots["loss"].setTitle(None)
        self.lossLegend = self.plots["loss"].addLegend(offset=(-4, 4), brush=(0, 0, 0, 140),
                                                       verSpacing=-6, labelTextSize="8pt")
        self.lossLegend.setVisible(False)
        self.legend = self.plots["lr"].addLegend(offset=(-4, 4), brush=(0, 0, 0, 140),
                                                 verSpacing=-6, labelTextSize="8pt")
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)

        top = QHBoxLayout()
        top.addWidget(self.logLoss)
        top.addWidget(self.hover, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addLayout(top)
        lay.addWidget(self.graphics, 1)
        self._set_hint()

    # ----------------------------------------------------------------- public
    def history(self) -> History:
        return self._history

    def setHistory(self, h: History) -> None:
        """Draw ``h``; curves are reused, lr curves follow the number of groups."""
        self._history = h
        x = np.asarray(h.step, dtype=np.float64)
        for name, curve in self.curves.items():
            curve.setData(x, np.asarray(getattr(h, name), dtype=np.float64))
        val = getattr(h, "val_loss", None)
        has_val = val is not None and len(val) and bool(np.isfinite(val).any())
        if has_val:
            self.valLoss.setData(x, np.asarray(val, dtype=np.float64))
            if not self.lossLegend.items:
                self.lossLegend.addItem(self.curves["loss"], "train")
                self.lossLegend.addItem(self.valLoss, "validation")
            acc = h.val_accuracy
            if acc is not None and np.isfinite(acc).any():
                last = acc[np.isfinite(acc)][-1]
                self.plots["loss"].setTitle(f"validation accuracy {last:.1%}", size="8pt")
        else:
            self.valLoss.setData([], [])
        self.lossLegend.setVisible(has_val)
        has_loss = len(h.loss) and bool(np.isfinite(h.loss).any())
        if not has_loss and not has_val:
            self.plots["loss"].setTitle("no loss: the gradients are set by hand", size="8pt")
        elif not has_val:
            self.plots["loss"].setTitle(None)
        self._sync_lr(len(h.lr))
        for curve, series in zip(self.lrCurves, h.lr):
            curve.setData(x, np.asarray(series, dtype=np.float64))
        if self._last_hover is not None:  # keep the read-out live while the run goes on
            self.hoverAt(*self._last_hover)

    def pointAt(self, series: str, x: float, y: float | None = None) -> tuple[str, float, float] | None:
        """Nearest finite point to step ``x`` in ``series``: ``(label, step, value)``.

        For "lr" with several groups, the group whose value at that step is nearest
        to ``y`` (data units, as drawn) is chosen.
        """
        h = self._history
        steps = np.asarray(h.step, dtype=np.float64)
        if series == "lr":
            best = None
            for g, s in enumerate(h.lr):
                i = nearest_finite(steps, s, x)
                if i is None:
                    continue
                dist = (abs(steps[i] - x), 0.0 if y is None else abs(s[i] - y))
                if best is None or (dist[0], dist[1]) < best[0]:
                    best = (dist, g, i)
            if best is None:
                return None
            _, g, i = best
            return f"lr group {g}", float(steps[i]), float(h.lr[g][i])
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
        self.hover.setText(f"{label} · step {step:.0f}: {value:.6g}")
        marker = self._markers[series]
        marker.setData([step], [value])
        marker.setVisible(True)

    # -------------------------------------------------------------- internals
    def _sync_lr(self, n: int) -> None:
        plot = self.plots["lr"]
        while len(self.lrCurves) > n:
            curve = self.lrCurves.pop()
            self.legend.removeItem(curve)
            plot.removeItem(curve)
        while len(self.lrCurves) < n:
            g = len(self.lrCurves)
            curve = _curve(GROUP_COLORS[g % len(GROUP_COLORS)])
            curve.opts["name"] = f"group {g}"
            plot.addItem(curve)  # the legend picks the name up
            self.lrCurves.append(curve)

    def _on_log_toggled(self, on: bool) -> None:
        self.plots["loss"].setLogMode(y=on)

    def _on_mouse_moved(self, pos: QPointF) -> None:
        for name, plot in self.plots.items():
            vb = plot.getViewBox()
            if vb.sceneBoundingRect().contains(pos):
                p = vb.mapSceneToView(pos)
                y = p.y()
                if name == "loss" and self.logLoss.isChecked():
                    y = 10.0 ** y
                self.hoverAt(name, p.x(), y)
                return

    def _set_hint(self) -> None:
        self.hover.setText("<span style='color: grey'>hover a plot for values</span>")
