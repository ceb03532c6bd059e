"""What a comparison looks like: one widget with a tab per way of comparing the runs.

- Curves: every run's loss, validation metrics, norms and learning rate overlaid.
- Landscape: every run's trajectory on one 2-D map, each in its run's colour.
- Tensors: the same tensor (its value, gradient or a state entry) of every run side by side.
- Between runs: the distance between parameters and the cosine between updates over time.
- Table: the quantities the user ticks (loss, validation metrics, norms, lr, distance to the
  first run) of every run at the steps the user types.

It takes a ``core.compare_frame.ComparisonFrame`` (plain numpy data) and draws it; nothing
here touches torch or a live tensor.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGridLayout, QHBoxLayout, QLabel, QLineEdit, QTableWidget, QTableWidgetItem,
                               QTabWidget, QVBoxLayout, QWidget)

from core.compare_table import COLUMNS, DEFAULT_COLUMNS, available, cell_at, parse_steps
from widgets.compare_plots import PairCurves, RunCurves, color_of, colour_slots
from widgets.landscape import LandscapeView
from widgets.tensor_view import TensorView, fmt, levels_of, steady_levels, value_range

DEFAULT_STEPS = "10, 100, 1000"
LABEL_WIDTH = 240  # px: a longer configuration label is elided in the table (whole in its tooltip)


class TrajectoryMap(LandscapeView):
    """The landscape with one path per run (the base class's own path is not used). A click
    starts nothing here (every run keeps its own start), so the hints do not offer it."""

    CLICK_STARTS = False

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.paths: dict[int, tuple[pg.PlotDataItem, pg.ScatterPlotItem]] = {}

    def setPaths(self, paths: dict[int, np.ndarray], order: dict[int, int]) -> None:
        """``paths``: run id -> (k, 2) visited points; drawn in each run's colour."""
        pi = self.plot.getPlotItem()
        for rid in [r for r in self.paths if r not in paths]:
            for item in self.paths.pop(rid):
                pi.removeItem(item)
        for rid, p in paths.items():
            if rid not in self.paths:
                c = color_of(order[rid])
                line = pg.PlotDataItem(pen=pg.mkPen(c, width=2), connect="finite")
                dot = pg.ScatterPlotItem(symbol="o", size=11, brush=c, pen=pg.mkPen("w", width=1.5))
                for item in (line, dot):
                    item.setZValue(10)
                    pi.addItem(item)
                self.paths[rid] = (line, dot)
            line, dot = self.paths[rid]
            p = np.asarray(p, dtype=np.float64).reshape(-1, 2)
            line.setData(p[:, 0], p[:, 1])
            last = p[-1:][np.isfinite(p[-1:]).all(axis=1)]
            dot.setData(last[:, 0], last[:, 1])


class SideBySide(QWidget):
    """The same tensor of every run side by side; the user picks the tensor and what of it.
    ``explainRequested(position, tensor, index)``: an element of the run at ``position`` (in the
    frame's order) was clicked (the window explains that run's update of it)."""

    explainRequested = Signal(int, str, tuple)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tensor = QComboBox()
        self.which = QComboBox()
        self.tensor.setToolTip("The parameter shown for every run")
        self.which.setToolTip("Its value, its gradient or one entry of the optimizer's state")
        head = QHBoxLayout()
        head.addWidget(QLabel("Tensor"))
        head.addWidget(self.tensor, 1)
        head.addWidget(QLabel("shows"))
        head.addWidget(self.which, 1)
        self.same_scale = QCheckBox("one colour scale")
        self.same_scale.setChecked(True)
        self.same_scale.setToolTip("Colour every run's heatmap on the same scale (the widest of them), so "
                                   "colours compare across runs; unticked, each run has its own")
        head.addWidget(self.same_scale)
        self.row = QHBoxLayout()
        lay = QVBoxLayout(self)
        lay.addLayout(head)
        lay.addLayout(self.row, 1)
        self.views: list[TensorView] = []
        self._frame = None
        self._levels = None  # the shared colour levels (held while the values stay within them)
        self.tensor.currentTextChanged.connect(self._redraw)
        self.which.currentTextChanged.connect(self._redraw)
        self.same_scale.toggled.connect(self._redraw)

    def shown(self) -> str:
        """The tensor whose values the heatmaps need ("" before the first frame)."""
        return self.tensor.currentText()

    def setFrame(self, frame) -> None:
        self._frame = frame
        names = [t.name for t in frame.runs[0].snapshot.tensors] if frame.runs else []
        _set_items(self.tensor, names)
        self._redraw()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._redraw()

    def _redraw(self, *_):
        f = self._frame
        if f is None or not self.isVisible():  # another tab is open: drawn when this one is
            return
        name = self.tensor.currentText()
        options = ["value", "grad"]
        for r in f.runs:  # a state entry of any run (each optimizer has its own)
            t = r.snapshot.tensor(name)
            for k, v in (t.state.items() if t is not None else ()):
                if hasattr(v, "values") and f"state: {k}" not in options:
                    options.append(f"state: {k}")
        _set_items(self.which, options)
        which = self.which.currentText()
        while len(self.views) < len(f.runs):
            view = TensorView()
            # the runs' tensors are looked at and explained here, not edited (nothing answers a
            # double-click): the view must not offer it
            view.setEditable(False, "the runs of a comparison are not edited")
            view.setHint("hover: values · click: explain")
            view.elementClicked.connect(
                lambda index, at=len(self.views): self.explainRequested.emit(at, self.tensor.currentText(), index))
            view.fillButton.hide()
            self.views.append(view)
            self.row.addWidget(view, 1)
        while len(self.views) > len(f.runs):
            self.views.pop().deleteLater()
        shown = [self._view_of(r, name, which) for r in f.runs]
        levels = shared_levels([view for view, _ in shown]) if self.same_scale.isChecked() else None
        if levels is not None:
            levels = self._levels = steady_levels(self._levels, levels)
        for v, r, (view, missing) in zip(self.views, f.runs, shown):
            if view is not None and not view.shown:
                continue  # the frames carry it from the next one on (the window asked): keep the last
            v.setSharedLevels(levels)
            v.setView(view, f"{r.label} · {name} {which}", missing)

    @staticmethod
    def _view_of(run, name: str, which: str):
        """(the ArrayView of ``name``'s ``which`` in ``run``'s frame or None, why none)."""
        t = run.snapshot.tensor(name)
        if t is None:
            return None, "no such tensor"
        if which == "value":
            return t.value, ""
        if which == "grad":
            return t.grad, "no gradient"
        s = t.state.get(which.removeprefix("state: "))
        return (s if hasattr(s, "values") else None), f"{run.label.split()[0]} keeps no {which.removeprefix('state: ')}"


def shared_levels(views) -> tuple[float, float, bool] | None:
    """One colour scale for ``views`` (those with values): from the lowest of their values to the
    highest (symmetric around 0 when they span it), or None if none has values."""
    ranges = [value_range(v) for v in views if v is not None and v.shown and v.values.size]
    if not ranges:
        return None
    return levels_of(min(r[0] for r in ranges), max(r[1] for r in ranges))


def _set_items(combo: QComboBox, items: list[str]) -> None:
    """Replace ``combo``'s items only when they changed, keeping the choice if it is still there."""
    if [combo.itemText(i) for i in range(combo.count())] == items:
        return
    keep = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(items)
    if keep in items:
        combo.setCurrentText(keep)
    combo.blockSignals(False)


def cell_text(found: tuple[float, int] | None, k: int) -> str:
    """A table cell: the value, and where it was measured at an earlier step (a norm on its time
    budget, a validation every few steps) that step, so it is not read as step ``k``'s."""
    if found is None or not math.isfinite(found[0]):
        return "—"
    v, at = found
    return fmt(v, 5) if at >= k else f"{fmt(v, 5)} (step {at:,})"


class StepTable(QWidget):
    """The runs' values at the steps typed in the box, for the quantities ticked above it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps = QLineEdit(DEFAULT_STEPS)
        self.steps.setToolTip("Steps, separated by commas or spaces")
        self.error = QLabel()
        self.error.setStyleSheet("color: #e06c5a;")
        self.table = QTableWidget()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        rows = self.table.verticalHeader()  # long configuration labels: elided, whole in a tooltip
        rows.setMaximumWidth(LABEL_WIDTH)
        rows.setTextElideMode(Qt.TextElideMode.ElideRight)
        head = QHBoxLayout()
        head.addWidget(QLabel("At steps"))
        head.addWidget(self.steps, 1)
        ticks = QGridLayout()  # three a row: in one row the boxes made the window wider than a small screen
        ticks.addWidget(QLabel("Show"), 0, 0)
        self.columns: dict[str, QCheckBox] = {}
        per_row = 3
        for i, (key, (title, tip)) in enumerate(COLUMNS.items()):
            box = self.columns[key] = QCheckBox(title)
            box.setToolTip(tip)
            box.setChecked(key in DEFAULT_COLUMNS)
            box.toggled.connect(self._redraw)
            ticks.addWidget(box, i // per_row, 1 + i % per_row)
        ticks.setColumnStretch(per_row + 1, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(head)
        lay.addLayout(ticks)
        lay.addWidget(self.error)
        lay.addWidget(self.table, 1)
        self._frame = None
        self._wanted = parse_steps(DEFAULT_STEPS)
        self.steps.editingFinished.connect(self._on_steps)

    @Slot()
    def _on_steps(self) -> None:
        try:
            self._wanted = parse_steps(self.steps.text())
        except ValueError as e:
            self.error.setText(str(e))  # the table keeps the steps it had
            return
        self.error.setText("")
        self._redraw()

    def _redraw(self, *_) -> None:
        if self._frame is not None:
            self.setFrame(self._frame)

    def chosen(self, frame) -> list[str]:
        """The ticked quantities (a validation one only where some run has it: tasks are evaluated)."""
        return available(frame.history, [k for k, box in self.columns.items() if box.isChecked()])

    def setFrame(self, frame) -> None:
        self._frame = frame
        # the steps the runs have been at (a resumed comparison's start after its checkpoint's)
        steps = [k for k in self._wanted if frame.start < k <= frame.step] or [frame.step]
        cols = [(k, m) for m in self.chosen(frame) for k in steps]
        ids = [r.id for r in frame.runs]
        self.table.setRowCount(len(frame.runs))
        self.table.setColumnCount(len(cols))
        self.table.setHorizontalHeaderLabels([f"{COLUMNS[m][0]} @ {k:,}" for k, m in cols])
        for i, r in enumerate(frame.runs):
            label = QTableWidgetItem(r.label)
            label.setToolTip(r.label)
            self.table.setVerticalHeaderItem(i, label)
        for i, r in enumerate(frame.runs):
            for j, (k, m) in enumerate(cols):
                found = cell_at(frame.history, ids, i, m, k) if k <= r.snapshot.step else None
                self.table.setItem(i, j, QTableWidgetItem(cell_text(found, k)))
        self.table.resizeColumnsToContents()

    def text(self, row: int, col: int) -> str:
        item = self.table.item(row, col)
        return item.text() if item is not None else ""

    def header(self, col: int) -> str:
        item = self.table.horizontalHeaderItem(col)
        return item.text() if item is not None else ""


class CompareView(QTabWidget):
    """The comparison's tabs; ``setFrame`` draws a frame, ``setLandscape`` the map under the paths."""

    landscapeWanted = Signal(str, float)  # objective, condition: the app computes the grid
    shownChanged = Signal(object)  # the tensor names whose values the frames must carry (None: all)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.curves = RunCurves()
        self.landscape = TrajectoryMap()
        self.tensors = SideBySide()
        self.pairs = PairCurves()
        self.table = StepTable()
        for w, title in ((self.curves, "Curves"), (self.landscape, "Landscape"), (self.tensors, "Tensors"),
                         (self.pairs, "Between runs"), (self.table, "Table")):
            self.addTab(w, title)
        self._landscape_key = None
        self.frame = None
        self.slots: dict[int, int] = {}  # run id -> its colour slot (kept while the run stays)
        self._shown = None
        self._drawn: dict = {}  # curves/pairs -> (the history, the labels) they last drew
        self.currentChanged.connect(self._opened)
        self.tensors.tensor.currentTextChanged.connect(self._tell_shown)

    def shown(self) -> frozenset | None:
        """The tensors whose values are drawn now: the Tensors tab's one while that tab is open
        (None, every tensor, while it is open before the first frame named them)."""
        if self.currentWidget() is not self.tensors:
            return frozenset()
        name = self.tensors.shown()
        return frozenset({name}) if name else None

    def _tell_shown(self, *_) -> None:
        shown = self.shown()
        if shown != self._shown:
            self._shown = shown
            self.shownChanged.emit(shown)

    def setFrame(self, frame) -> None:
        self.frame = frame
        self.slots = colour_slots(self.slots, [r.id for r in frame.runs])
        self._draw(frame)
        self._tell_shown()  # its tensor list may have been filled just now (without a signal)

    def _opened(self, *_) -> None:
        if self.frame is not None:
            self._draw(self.frame)  # what it missed while another tab was open
        self._tell_shown()

    def _draw(self, frame) -> None:
        """The open tab from ``frame`` (the others when they are opened: with four runs on the
        Tensors tab, keeping the hidden curves up to date had cost the window more than the
        heatmaps it showed), and the landscape's key (its grid is asked for once)."""
        order, w = self.slots, self.currentWidget()
        labels = {r.id: r.label for r in frame.runs}
        last = self._drawn.get(w)
        if w in (self.curves, self.pairs) and (last is None or last[0] is not frame.history or last[1] != labels):
            self._drawn[w] = (frame.history, labels)
            if w is self.curves:
                self.curves.setRuns(list(labels.items()), frame.history.runs, order, live=frame.running)
            else:
                self.pairs.setPairs(frame.history.cross, order, labels, live=frame.running)
        self._draw_landscape(frame, order)
        if w is self.tensors:
            self.tensors.setFrame(frame)
        elif w is self.table:
            self.table.setFrame(frame)

    def setLandscape(self, xs, ys, z) -> None:
        self.landscape.setLandscape(xs, ys, z)

    def _draw_landscape(self, frame, order) -> None:
        paths = {r.id: r.snapshot.path for r in frame.runs if r.snapshot.path is not None}
        if frame.objective is None or not paths:
            if self._landscape_key != "none":
                self._landscape_key = "none"
                self.landscape.setMessage("No landscape: the runs' trajectories are drawn for an objective of "
                                          "2 numbers (the adam_rosenbrock example has one).")
            return
        key = (frame.objective, frame.condition)
        if key != self._landscape_key:
            self._landscape_key = key
            self.landscapeWanted.emit(*key)
        self.landscape.setPaths(paths, order)
