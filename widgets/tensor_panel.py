"""One parameter at a glance: its value, gradient and every optimizer state entry side by side.

Array entries get a ``TensorView`` each (kept across snapshots, so items are reused);
numbers and short texts (LBFGS ``n_iter``, list summaries) go in one line of labels.
"over time" swaps every entry's view for a ``DensityStrip``: that entry's distribution over
the steps (TensorBoard's distributions view, for the optimizer's state too), in the same place.
"""
from __future__ import annotations

import html
from functools import partial

from PySide6.QtCore import QEvent, Qt, Signal, Slot
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QToolButton,
                               QVBoxLayout, QWidget)

from core.snapshot import ArrayView, TensorSnapshot
from widgets.density_strip import DensityStrip
from widgets.tensor_view import TensorView, fmt

COLUMN_WIDTH = 260  # narrowest useful heatmap with its axis and colour bar
MAX_COLUMNS = 3
VIEW_MIN_HEIGHT = 210
TEXT_LIMIT = 60


def state_text(value: object) -> str:
    """A state entry that is not an array, as a short text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        s = str(value)
        return s if len(s) <= TEXT_LIMIT else s[: TEXT_LIMIT - 1] + "…"
    return fmt(value, 6)


class TensorPanel(QWidget):
    """Shows one ``TensorSnapshot``; forwards exact-value requests with where they came from.

    ``exactRequested(tensor_name, which, index)`` where ``which`` is "value", "grad" or a
    state key; answer with ``showExact(tensor_name, which, index, value)``.
    ``valueEdited(tensor_name, which, index or None, value)``: the user set an element (or
    filled the whole entry, index None) by double-clicking a cell or with "fill…".
    ``explainRequested(tensor_name, index)``: an element was clicked in the value, the
    gradient or a state entry of the tensor's shape (Adafactor's row/column factors have
    another shape and explain nothing).
    ``overTimeChanged(on)``: the "over time" button was toggled; while on, the app feeds each
    entry's distribution with ``setDistributions``.
    ``measureRequested()``: "measure every step" was pressed (over time): the app replays the
    steps the run left unmeasured and feeds the strips again; ``setMeasuring`` while it works.
    ``stepClicked(step)``: a column of a strip was clicked: go to its step.
    """

    exactRequested = Signal(str, str, tuple)
    valueEdited = Signal(str, str, object, float)
    explainRequested = Signal(str, tuple)
    overTimeChanged = Signal(bool)
    measureRequested = Signal()
    stepClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._name = ""
        self._shape: tuple = ()
        self._views: dict[str, TensorView] = {}
        self._texts: dict[str, str] = {}
        self._columns = 0
        self._editable: tuple[bool, str] = (True, "")
        self._strips: dict[str, DensityStrip] = {}  # made the first time "over time" shows an entry
        self._over_time_offered = True  # False where no one feeds the strips (a checkpoint, an attached script)
        self._read_only = False  # a checkpoint or a watched script: no explain, no edits
        self._dists: dict[str, object] = {}  # which -> what its strip shows (for setDistributions' callers)

        self.header = QLabel(self)
        self.header.setStyleSheet("color: grey;")
        self.header.setWordWrap(True)  # beside the "over time" button: wraps rather than widening the panel
        self.overTimeButton = QToolButton(self)
        self.overTimeButton.setText("over time")
        self.overTimeButton.setCheckable(True)
        self.overTimeButton.setToolTip("Show each entry's distribution over the steps (values binned by sign and "
                                       "decade; colour: how many elements) instead of its values now")
        self.overTimeButton.toggled.connect(self._on_over_time)
        self.measureButton = QToolButton(self)
        self.measureButton.setText("measure every step")
        self.measureButton.setToolTip(
            "While running, histograms and norms are measured within a small share of the time. This "
            "replays the branch's unmeasured steps exactly (as rewinding does) and measures every one; "
            "the session stays where it stands")
        self.measureButton.clicked.connect(self.measureRequested)
        self.measureButton.hide()
        self.scalars = QLabel(self)
        self.scalars.setWordWrap(True)
        self.scalars.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.placeholder = QLabel("no tensor selected", self)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: grey; font-style: italic;")
        self._grid_host = QWidget()
        self._grid = QGridLayout(self._grid_host)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(6)
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(self._grid_host)
        self.scroll.viewport().installEventFilter(self)  # its height sets the views' height

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.header, 1)
        top.addWidget(self.measureButton)
        top.addWidget(self.overTimeButton)
        lay.addLayout(top)
        lay.addWidget(self.scalars)
        lay.addWidget(self.scroll, 1)
        lay.addWidget(self.placeholder, 1)
        self.setTensor(None)

    # ----------------------------------------------------------------- public
    def views(self) -> dict[str, TensorView]:
        """The views shown now, by ``which`` ("value", "grad", state keys), in order."""
        return dict(self._views)

    def setPlaceholder(self, text: str) -> None:
        """What the panel says when no tensor is shown (e.g. while a session opens)."""
        self.placeholder.setText(text)

    def stateTexts(self) -> dict[str, str]:
        """The non-array state entries as shown, by key."""
        return dict(self._texts)

    def setTensor(self, ts: TensorSnapshot | None, only: tuple[str, ...] | None = None) -> None:
        """Show ``ts``: reuse views of known entries, add new ones, drop vanished ones.

        ``only``: redraw just these entries (e.g. ("value", "grad")) when the views are
        already there; the app uses it to draw the state entries less often while running.
        """
        if ts is None:
            self._name = ""
            self._sync_views({})
            self._texts = {}
            for w in (self.header, self.scalars, self.scroll, self.overTimeButton, self.measureButton):
                w.hide()
            self.placeholder.show()
            return
        self._name = ts.name
        self._shape = tuple(ts.value.shape) if ts.value is not None else ()
        self.placeholder.hide()
        self.scroll.show()
        self.header.show()
        self.overTimeButton.setVisible(self._over_time_offered)
        self._show_measure()
        extra = " · sparse gradient (shown dense)" if ts.grad_sparse else ""
        self.header.setText(f"{html.escape(ts.name)} · group {ts.group} · param {ts.index}{extra}")

        arrays: dict[str, tuple[ArrayView | None, str]] = {"value": (ts.value, ts.name)}
        if ts.grad is not None or not self._read_only:
            arrays["grad"] = (ts.grad, "grad")
        texts: dict[str, str] = {}
        for key, val in ts.state.items():
            if isinstance(val, ArrayView) and not val.is_scalar:
                arrays[key] = (val, key)
            elif isinstance(val, ArrayView):
                texts[key] = fmt(val.values.reshape(()).item(), 8)
            else:
                texts[key] = state_text(val)
        same = ts.name == getattr(self, "_drawn_name", None)
        if not same:
            for view in self._views.values():
                view.forgetExact()
            self._dists = {}
            for strip in self._strips.values():
                strip.setData(None)  # another tensor's history never stays under this one's name
            if "value" in self._strips:
                self._strips["value"].plot.setTitle(ts.name, size="9pt")
        self._sync_views(arrays, only if same else None)
        self._drawn_name = ts.name
        self._texts = texts
        self.scalars.setVisible(bool(texts))
        self.scalars.setText("&nbsp;&nbsp;&nbsp;".join(
            f"{html.escape(k)}&nbsp;<b>{html.escape(v)}</b>" for k, v in texts.items()))

    def setEditable(self, on: bool, why: str = "") -> None:
        """Allow double-click edits, or refuse them saying ``why`` (e.g. while running)."""
        if (on, why) == self._editable:
            return
        self._editable = (on, why)
        for view in self._views.values():
            view.setEditable(on, why) if why else view.setEditable(on)

    def setReadOnly(self, why: str) -> None:
        """Show values only (a checkpoint file, a watched script): no edits (``why`` says so),
        no explain on click, views that say so, and no "grad" slot where there is no gradient
        (a checkpoint has none: it stood empty beside the weights)."""
        self._read_only = True
        self.setEditable(False, why)
        for view in self._views.values():
            self._read_only_view(view)

    def _read_only_view(self, view: TensorView) -> None:
        view.setHint("hover: values")
        view.fillButton.hide()

    def offerOverTime(self, on: bool) -> None:
        """Offer the "over time" button (only where the distributions can be fetched)."""
        self._over_time_offered = bool(on)
        if not on:
            self.setOverTime(False)
        self.overTimeButton.setVisible(on and bool(self._name))
        self._show_measure()

    def setMeasuring(self, busy: bool) -> None:
        """The replay asked for with "measure every step" is under way (pressed again: stop)."""
        self.measureButton.setText("stop measuring" if busy else "measure every step")

    def _show_measure(self) -> None:
        self.measureButton.setVisible(self._over_time_offered and bool(self._name) and self.overTime())

    def overTime(self) -> bool:
        """Whether the entries show their distributions over time (else their values now)."""
        return self.overTimeButton.isChecked()

    def setOverTime(self, on: bool) -> None:
        self.overTimeButton.setChecked(bool(on))

    def tensorName(self) -> str:
        return self._name

    def strips(self) -> dict[str, DensityStrip]:
        """The density strips shown now (over time), by ``which``."""
        return dict(self._strips) if self.overTime() else {}

    def setDistributions(self, tensor_name: str, dists: dict) -> None:
        """``which -> (steps, bin edges, counts) or None`` for the tensor ``tensor_name``
        (core.edits.distribution's answers); an answer for a tensor no longer shown is dropped."""
        if tensor_name != self._name:
            return
        for which, data in dists.items():
            strip = self._strips.get(which)
            if strip is not None:
                self._dists[which] = data
                strip.setData(data)

    def distribution(self, which: str):
        """What the strip of ``which`` was last given (None: nothing measured, or not asked)."""
        return self._dists.get(which)

    @Slot(str, str, tuple, float)
    def showExact(self, tensor_name: str, which: str, index: tuple, value: float) -> None:
        """Route an exact value fetched for ``exactRequested`` to its view."""
        view = self._views.get(which)
        if tensor_name == self._name and view is not None:
            view.showExact(index, value)

    # -------------------------------------------------------------- internals
    def _sync_views(self, arrays: dict[str, tuple[ArrayView | None, str]], only=None) -> None:
        changed = list(arrays) != list(self._views)
        for key in [k for k in self._views if k not in arrays]:
            view = self._views.pop(key)
            self._grid.removeWidget(view)
            view.hide()  # stays a hidden child until deleted (never a stray top-level window)
            view.deleteLater()
            strip = self._strips.pop(key, None)
            self._dists.pop(key, None)
            if strip is not None:
                self._grid.removeWidget(strip)
                strip.hide()
                strip.deleteLater()
        for key, (arr, title) in arrays.items():
            view = self._views.get(key)
            if view is None:
                view = TensorView()
                view.setMinimumWidth(COLUMN_WIDTH - 40)
                # the grid decides the size, never what a view happens to show (plot, "None", a number)
                view.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
                view.exactRequested.connect(partial(self._forward, key))
                view.elementClicked.connect(partial(self._clicked, key))
                view.valueEdited.connect(partial(self._forward_edit, key))
                on, why = self._editable
                view.setEditable(on, why) if why else view.setEditable(on)
                if self._read_only:
                    self._read_only_view(view)
                self._views[key] = view
            elif (only is not None and key not in only) or self.overTime():
                continue  # hidden under its strip: drawn again when "over time" is off (the app redraws)
            view.setView(arr, title)
        # keep the order value, grad, state keys as the snapshot lists them
        self._views = {k: self._views[k] for k in arrays}
        if self.overTime():
            changed |= self._make_strips()
        if changed:
            self._relayout(force=True)

    def _make_strips(self) -> bool:
        """A strip for every entry that has none yet; True if one was made."""
        made = False
        for key in self._views:
            if key not in self._strips:
                strip = DensityStrip(self._grid_host)  # a child from the start: never a stray window
                strip.hide()
                strip.plot.setTitle(key if key != "value" else self._name, size="9pt")
                strip.setMinimumWidth(COLUMN_WIDTH - 40)
                strip.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
                strip.stepClicked.connect(self.stepClicked)
                self._strips[key] = strip
                made = True
        return made

    def _on_over_time(self, on: bool) -> None:
        if on:
            self._make_strips()
        self._show_measure()
        self._relayout(force=True)
        self.overTimeChanged.emit(on)

    def _cells(self) -> list[QWidget]:
        """What the grid shows, in order: the views, or (over time) the strips in their place."""
        if self.overTime():
            return [self._strips[k] for k in self._views if k in self._strips]
        return list(self._views.values())

    def _forward(self, which: str, index: tuple) -> None:
        self.exactRequested.emit(self._name, which, index)

    def _forward_edit(self, which: str, index, value: float) -> None:
        self.valueEdited.emit(self._name, which, index, value)

    def _clicked(self, which: str, index: tuple) -> None:
        view = self._views.get(which)
        if not self._read_only and view is not None and view.view() is not None \
                and tuple(view.view().shape) == self._shape:
            self.explainRequested.emit(self._name, index)

    def _relayout(self, force: bool = False) -> None:
        """Columns by the panel's width; every view the same size, so same-shape tensors are
        drawn alike: the rows share the height when they fit at ``VIEW_MIN_HEIGHT`` each, else
        a view is about as tall as a column is wide (at most half the height: two rows in sight)
        and the column scrolls."""
        width = self.width() - 24  # room for the vertical scroll bar
        cells = self._cells()
        n = len(cells)
        cols = max(1, min(MAX_COLUMNS, width // COLUMN_WIDTH, n or 1))
        if cols != self._columns or force:
            self._columns = cols
            for w in [*self._views.values(), *self._strips.values()]:
                self._grid.removeWidget(w)
                if w not in cells:
                    w.hide()
            for i, w in enumerate(cells):
                self._grid.addWidget(w, i // cols, i % cols)
                w.show()  # only now, as a child: a parentless view shown is a window (it took the focus)
            for c in range(MAX_COLUMNS):
                self._grid.setColumnStretch(c, 1 if c < cols else 0)
        if not n:
            return
        rows = -(-n // cols)
        gap = self._grid.spacing()
        avail = max(VIEW_MIN_HEIGHT, self.scroll.viewport().height())
        if rows * VIEW_MIN_HEIGHT + (rows - 1) * gap <= avail:
            h = (avail - (rows - 1) * gap) // rows
        else:
            col_w = (width - (cols - 1) * gap) // cols  # about square, two rows in sight
            h = max(VIEW_MIN_HEIGHT, min(int(col_w * 0.8), (avail - gap) // 2))
        # the same width too: the grid would hand a column's leftover pixel to one view only
        w = max(COLUMN_WIDTH - 40, (self.scroll.viewport().width() - (cols - 1) * gap) // cols)
        for view in cells:
            if view.height() != h or view.minimumHeight() != h:
                view.setFixedHeight(h)
            if view.width() != w or view.minimumWidth() != w or view.maximumWidth() != w:
                view.setFixedWidth(w)

    def viewSizes(self) -> dict[str, tuple[int, int]]:
        """(width, height) of each view as laid out now."""
        return {k: (v.width(), v.height()) for k, v in self._views.items()}

    def resetViews(self) -> None:
        """Every view back to its whole tensor (a new session: an old zoom means nothing there)."""
        for view in self._views.values():
            view.resetView()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if obj is self.scroll.viewport() and event.type() == QEvent.Type.Resize:
            self._relayout()
        return False

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._relayout()
