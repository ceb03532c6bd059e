"""The curves of a comparison: every run overlaid in its own colour, and the series between runs.

``RunCurves`` overlays loss, validation loss and accuracy, gradient norm, update norm and
learning rate (group 0) of every run; ``PairCurves`` draws ||theta_a - theta_b|| and the
cosine between the updates for every pair. Both take plain data (``core.compare_frame``'s
``CompareHistory``) and reuse their curve items, so a redraw is a ``setData`` per curve.
"""
from __future__ import annotations

import weakref

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from widgets.curves import swatch
from widgets.held_ranges import HeldRanges
from widgets.pg_setup import SameWidth, cache_axes, configure

configure()

AXIS_WIDTH = 40  # the plots' left axes, in pixels (wider when a tick label needs it: SameWidth)

# six colours that stay apart on a dark background and for common colour blindness (Okabe-Ito)
COLORS = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (204, 121, 167), (213, 94, 0))
PLOTS = (("loss", "loss"), ("val_loss", "validation loss"), ("val_accuracy", "validation accuracy"),
         ("grad_norm", "gradient norm"), ("update_norm", "update norm"), ("lr", "learning rate (group 0)"))


def color_of(order: int) -> tuple[int, int, int]:
    """A run's colour by its colour slot (see ``colour_slots``)."""
    return COLORS[order % len(COLORS)]


def colour_slots(old: dict[int, int], run_ids) -> dict[int, int]:
    """Each run id's colour slot: a run keeps its slot while it stays in the comparison (removing
    one leaves the others' colours as they were); a new run takes the lowest free slot."""
    slots = {rid: old[rid] for rid in run_ids if rid in old}
    for rid in run_ids:
        if rid not in slots:
            slots[rid] = min(set(range(len(COLORS) + 1)) - set(slots.values()))
    return slots


def series_of(history, key: str) -> np.ndarray | None:
    """One series of a run's History (group 0 for the learning rate), or None."""
    if key == "lr":
        return history.lr[0] if history.lr else None
    return getattr(history, key, None)


class _Overlay:
    """Curves of one plot, one per key (run id or pair), made on first use and then reused."""

    def __init__(self, plot: pg.PlotItem):
        self.plot = plot
        self.items: dict = {}

    def set(self, key, x: np.ndarray, y: np.ndarray | None, color, name: str = "", dash: bool = False) -> None:
        item = self.items.get(key)
        if item is None:
            pen = pg.mkPen(color, width=1, style=pg.QtCore.Qt.PenStyle.DashLine if dash else
                           pg.QtCore.Qt.PenStyle.SolidLine)
            item = self.items[key] = self.plot.plot(pen=pen, name=name or None, connect="finite")
            item.setClipToView(True)
            item.setDownsampling(auto=True, method="peak")
        if y is None or len(y) != len(x):
            item.setData([], [])
        else:
            # measured on a budget (norms, distances) or every few steps (validation): NaN between
            # the measured steps, so the line joins the measured points rather than showing dots
            x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
            ok = np.isfinite(y)
            item.setData(x[ok], y[ok])

    def values(self, axis: int, steps: tuple[float, float] | None = None) -> np.ndarray:
        """Every curve's finite x (0) or y (1) values (``steps``: at the steps within it only)."""
        data = [d for d in (it.getOriginalDataset() for it in self.items.values()) if d[0] is not None]
        if not data:
            return np.zeros(0)
        values = np.concatenate([np.asarray(d[axis], dtype=np.float64) for d in data])
        ok = np.isfinite(values)
        if steps is not None:
            x = np.concatenate([np.asarray(d[0], dtype=np.float64) for d in data])
            ok &= (x >= steps[0]) & (x <= steps[1])
        return values[ok]

    def hold(self, ranges: HeldRanges, live: bool, x: bool = True, y: bool = True) -> None:
        """While ``live``, keep the plot's ranges while its curves stay within them (see
        widgets.held_ranges); the values' range fits the values at the steps shown (all of
        them, unless the user zoomed the steps)."""
        vb = self.plot.getViewBox()
        if x:
            ranges.hold((id(self), 0), vb, 0, self.values(0), live, steps=True)
        if y:
            ranges.hold((id(self), 1), vb, 1, self.values(1, tuple(vb.viewRange()[0])), live)

    def keep(self, keys) -> None:
        """Drop the curves of runs (or pairs) no longer in the comparison."""
        for k in [k for k in self.items if k not in keys]:
            self.plot.removeItem(self.items.pop(k))

    def data(self, key) -> tuple[np.ndarray, np.ndarray] | None:
        """The whole series set on ``key``'s curve (not the part clipped to the view)."""
        item = self.items.get(key)
        return None if item is None else item.getOriginalDataset()


def _dark_label(text: str = "") -> QLabel:
    """A wrapping line of text on the plots' own dark ground (a legend, a hint above them)."""
    label = QLabel(text)
    label.setWordWrap(True)
    back, fore = (pg.mkColor(pg.getConfigOption(k)).name() for k in ("background", "foreground"))
    label.setStyleSheet(f"QLabel {{ background: {back}; color: {fore}; padding: 2px 6px 4px 6px; }}")
    return label


NO_STEP = "No step yet: Run or Step N steps every configuration in lockstep from step 0."


class SharedSteps:
    """One step axis for several plots: zooming or panning one plot's steps moves them all (the
    runs are in lockstep), and the first plot's range is every plot's. Not pyqtgraph's
    ``setXLink``: it lines up plots whose frames overlap on screen (those in one column) by
    their screen position, so plots whose y axes differ in width showed different steps."""

    def __init__(self) -> None:
        # weak references: each view's signal holds this object, and a cycle through Qt objects
        # is freed by Python's garbage collector on whichever thread it runs, a runner thread
        # too, where destroying a widget's view deadlocked with the GUI thread (seen in a test)
        self._views: list[weakref.ref] = []
        self._syncing = False

    @property
    def views(self) -> list:
        return [v for v in (r() for r in self._views) if v is not None]

    def watch(self, vb) -> None:
        """Follow ``vb``'s step range changes (whether or not it is among ``views`` now)."""
        vb.sigXRangeChanged.connect(self._moved)

    def set_views(self, views) -> None:
        """The plots shown, the first one leading: the others take its steps now."""
        self._views = [weakref.ref(v) for v in views]
        views = self.views
        for vb in views[1:]:
            vb.enableAutoRange(axis=pg.ViewBox.XAxis, enable=False)
        if len(views) > 1:
            self._moved(views[0], views[0].viewRange()[0])

    def _moved(self, vb, steps) -> None:
        views = self.views
        if self._syncing or not any(vb is v for v in views):
            return
        self._syncing = True
        try:
            for other in views:
                if other is not vb and list(other.viewRange()[0]) != list(steps):
                    other.setXRange(*steps, padding=0)
        finally:
            self._syncing = False


class RunCurves(QWidget):
    """Loss, validation metrics, gradient and update norms, learning rate: one curve per run.

    The validation plots are laid out only once some run has been evaluated (only training
    tasks are): for an objective they stayed two empty frames beside the loss."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layout_widget = pg.GraphicsLayoutWidget(self)
        self.overlays: dict[str, _Overlay] = {}
        for key, title in PLOTS:
            p = pg.PlotItem(title=title)
            p.showGrid(x=True, y=True, alpha=0.2)
            cache_axes(p)  # replaying an axis's picture (its grid lines) took 4 ms, a dozen a frame
            # no legend inside the plots: the window lists the runs in their colours beside them
            # (a long configuration label made an in-plot legend cover the curves and clip)
            self.overlays[key] = _Overlay(p)
            if key != PLOTS[0][0]:  # the first plot's steps are every plot's (SharedSteps)
                p.getViewBox().enableAutoRange(axis=pg.ViewBox.XAxis, enable=False)
        # one left-axis width for every plot: those stacked in a column line up their steps
        self.axisWidth = SameWidth((ov.plot.getAxis("left") for ov in self.overlays.values()), AXIS_WIDTH)
        self.steps = SharedSteps()
        for ov in self.overlays.values():
            self.steps.watch(ov.plot.getViewBox())
        self._placed: tuple[str, ...] = ()
        self._held = HeldRanges()
        self._arrange([k for k, _ in PLOTS if not k.startswith("val_")])
        self.empty = _dark_label(NO_STEP)  # empty frames alone looked like a window that failed to draw
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.empty)
        lay.addWidget(self.layout_widget)

    def shown(self) -> tuple[str, ...]:
        """The plots laid out, in order."""
        return self._placed

    def _arrange(self, keys) -> None:
        keys = tuple(keys)
        if keys == self._placed:
            return
        for k in self._placed:
            self.layout_widget.removeItem(self.overlays[k].plot)
        cols = 3 if len(keys) > 4 else 2
        for i, k in enumerate(keys):
            self.layout_widget.addItem(self.overlays[k].plot, row=i // cols, col=i % cols)
        self._placed = keys
        self.steps.set_views([self.overlays[k].plot.getViewBox() for k in keys])

    def setRuns(self, runs, histories, slots: dict[int, int] | None = None, live: bool = False) -> None:
        """``runs``: (id, label) in order; ``histories``: their History objects; ``slots``: each
        run id's colour (default: its place); ``live``: the comparison is running (the ranges
        then hold while the curves stay within them)."""
        slots = slots or {rid: i for i, (rid, _) in enumerate(runs)}
        for key, ov in self.overlays.items():
            for (rid, label), h in zip(runs, histories):
                ov.set(rid, h.step, series_of(h, key), color_of(slots[rid]), label)
            ov.keep({rid for rid, _ in runs})

        def evaluated(key):
            return any(y is not None and np.isfinite(y).any() for y in (series_of(h, key) for h in histories))
        self._arrange([k for k, _ in PLOTS if not k.startswith("val_") or evaluated(k)])
        placed = [self.overlays[k] for k in self._placed]
        steps = np.concatenate([ov.values(0) for ov in placed])
        self.empty.setVisible(not steps.size)
        # one step axis for every plot (SharedSteps): held, or fitted to every plot's curves
        self._held.hold("steps", placed[0].plot.getViewBox(), 0, steps, live, steps=True, fit=True)
        for ov in placed:
            ov.hold(self._held, live, x=False)

    def curve(self, key: str, run_id: int):
        """(x, y) drawn for ``run_id`` on plot ``key`` (what a test or an export reads)."""
        return self.overlays[key].data(run_id)


class PairCurves(QWidget):
    """||theta_a - theta_b|| and the cosine of the two runs' updates, one curve per pair."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layout_widget = pg.GraphicsLayoutWidget(self)
        dist = self.layout_widget.addPlot(row=0, col=0, title="distance ||θ_a − θ_b||")
        cos = self.layout_widget.addPlot(row=1, col=0, title="cosine between the updates")
        # the pairs' legend below both plots, not inside one: with 4 runs its 6 entries (long
        # configuration labels) covered half the distance plot and the curves under them; a
        # wrapping label, not a pyqtgraph legend, whose width (15 pairs of 6 runs) widened the
        # plots past the window
        self.legend = _dark_label()  # on the plots' own dark ground: the runs' colours stay apart there
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.empty = _dark_label(NO_STEP)
        self._listed: list[str] = []
        cos.setYRange(-1.05, 1.05)
        self.steps = SharedSteps()  # the cosine's steps follow the distance's
        for p in (dist, cos):
            self.steps.watch(p.getViewBox())
        self.steps.set_views([dist.getViewBox(), cos.getViewBox()])
        for p in (dist, cos):
            p.showGrid(x=True, y=True, alpha=0.2)
            cache_axes(p)
        self.distance, self.cosine = _Overlay(dist), _Overlay(cos)
        # one left-axis width for both, so that a step sits at the same x in each (their tick
        # labels, "25" and "-0.5", had differed in width: the plots' steps were 14 px apart)
        self.axisWidth = SameWidth((dist.getAxis("left"), cos.getAxis("left")), AXIS_WIDTH)
        self._held = HeldRanges()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.empty)
        lay.addWidget(self.layout_widget, 1)
        lay.addWidget(self.legend)

    def setPairs(self, cross, order: dict[int, int], labels: dict[int, str], live: bool = False) -> None:
        """``cross``: a CrossSeries; ``order``/``labels``: each run id's place and label;
        ``live``: running (the ranges hold while the curves stay within them)."""
        keys = set()
        for k, (a, b) in enumerate(cross.pairs):
            if a not in order or b not in order:
                continue
            keys.add((a, b))
            # the pair's colour is its first run's, dashed when the second is not the next one
            color, dash = color_of(order[a]), order[b] - order[a] > 1
            name = f"{labels[a]} vs {labels[b]}"
            self.distance.set((a, b), cross.step, cross.distance[k], color, name, dash)
            self.cosine.set((a, b), cross.step, cross.cosine[k], color, name, dash)
        self.distance.keep(keys)
        self.cosine.keep(keys)
        self._list_pairs(cross, order, labels)
        few = len(order) < 2
        self.empty.setText("One configuration: add another on the left to see how far apart they go."
                           if few else NO_STEP)
        self.empty.setVisible(few or not len(cross.step))
        self.distance.hold(self._held, live)  # the cosine's steps follow (SharedSteps); its y is fixed

    def _list_pairs(self, cross, order: dict[int, int], labels: dict[int, str]) -> None:
        """The legend lists the pairs drawn, in the runs' order, in their colours and dashes."""
        pairs = sorted(((a, b) for a, b in cross.pairs if a in order and b in order),
                       key=lambda p: (order[p[0]], order[p[1]]))
        names = [f"{labels[a]} vs {labels[b]}" for a, b in pairs]
        if names == self._listed:
            return
        self._listed = names
        # an entry may wrap before its "vs" (two long configuration labels are wider than a narrow window)
        self.legend.setText("&nbsp;&nbsp; ".join(
            swatch(color_of(order[a]), labels[a], dashed=order[b] - order[a] > 1) + " vs&nbsp;"
            + labels[b].replace(" ", "&nbsp;") for a, b in pairs))

    def listed(self) -> list[str]:
        """The pairs the legend lists, in order."""
        return list(self._listed)
