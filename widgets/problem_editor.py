"""The "Problem" dock: edit a SessionSpec (tensors, groups, gradient source, device, seed).

Every user edit rebuilds the spec from the widgets and runs ``SessionSpec.check()``. A spec
that fails is not emitted: its message shows in red at the bottom and the last good spec
stays current until the user fixes the field. ``setSpec`` fills the widgets silently.
"""
from __future__ import annotations

import re
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFormLayout, QFrame,
                               QGroupBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton,
                               QScrollArea, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout,
                               QWidget)

from core.spec import (OBJECTIVES, GroupSpec, ManualGrad, SessionSpec, SpecError,
                       TensorSpec)
from widgets.group_matrix import GroupMatrix
from widgets.wheel_guard import guard_all
from widgets.tensor_detail import TensorDetail, reshaped
from widgets.values_grid import fmt_number

NAME, SHAPE, INIT = range(3)
_ROW_H = 22
_WHEN = (("once", "once"), ("every step", "every_step"))


def parse_shape(text: str, name: str) -> tuple[int, ...]:
    """Read "2, 2", "2x2", "(3,)" or "()" (a scalar); SpecError for anything else."""
    s = text.strip()
    if not s:
        raise SpecError(f"The shape of {name} is empty: write sizes like '2, 2' (or () for a scalar)")
    s = re.sub(r"(?<=\d)\s*[x×]\s*(?=\d)", ",", s.strip("()[] "))
    parts = [p for p in re.split(r"[,\s]+", s) if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise SpecError(f"Invalid shape for {name}: {text.strip()!r} (write sizes like '2, 2' or '2x2')") from None


def shape_text(shape: tuple[int, ...]) -> str:
    return ", ".join(map(str, shape)) if shape else "()"


class ProblemEditor(QWidget):
    """Editor of a SessionSpec; emits ``specEdited(SessionSpec)`` for each valid user edit."""

    specEdited = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._spec = SessionSpec()
        self._ids: list[int] = []  # tensor id per table row; ids survive renames
        self._base: dict[int, TensorSpec] = {}  # per tensor: the fields not shown in the table
        self._grad_ids: list[int] = []  # GradientSpec.tensors, as ids
        self._next_id = 0
        self._added: list[tuple[str, tuple[int, ...], int]] = []  # rows of tensors add_param_group added
        self._loading = False
        self._build_ui()
        self.setSpec(self._spec)

    # ----- public API -----

    def spec(self) -> SessionSpec:
        """The last valid spec (set by ``setSpec`` or by a user edit)."""
        return self._spec

    def setSpec(self, spec: SessionSpec) -> None:
        """Show ``spec`` without emitting; the selected tensor row is kept when possible."""
        self._loading = True
        row = max(self.table.currentRow(), 0)
        self._spec = spec
        self._ids, self._base = [], {}
        for t in spec.tensors:
            self._ids.append(self._next_id)
            self._base[self._next_id] = t
            self._next_id += 1
        by_name = {t.name: i for i, t in zip(self._ids, spec.tensors)}
        self._grad_ids = [by_name[n] for n in spec.gradient.tensors if n in by_name]
        self.table.setRowCount(0)
        for tid in self._ids:
            self._append_row(tid)
        self._append_added()
        self._fit_table()
        self.groups.setContent(self._named_ids(), [([by_name[n] for n in g.tensors if n in by_name], g.hparams)
                                                   for g in spec.groups])
        g = spec.gradient
        self.kind.setCurrentText(g.kind)
        self.when.setCurrentIndex(max(0, self.when.findData(g.when)))
        self.objective.setCurrentText(g.objective)
        self.condition.setText(fmt_number(g.condition))
        if self.device.findText(spec.device) < 0:
            self.device.addItem(spec.device)
        self.device.setCurrentText(spec.device)
        self.seed.setValue(min(spec.seed, self.seed.maximum()) if isinstance(spec.seed, int) else 0)
        self.set_to_none.setChecked(spec.set_to_none)
        self.zero_each_step.setChecked(spec.zero_grad_each_step)
        if self._ids:
            self.table.setCurrentCell(min(row, len(self._ids) - 1), NAME)
        self._load_detail()
        self._update_gradient_rows()
        self._show_error("")
        self._loading = False

    def setAddedTensors(self, added: list[tuple[str, tuple[int, ...], int]]) -> None:
        """Tensors the run got from add_param_group (name, shape, group): listed after the
        problem's own, read-only (they belong to the run's history, not to the problem)."""
        added = [(n, tuple(s), g) for n, s, g in added]
        if added == self._added:
            return
        self._added = added
        self.table.blockSignals(True)
        self.table.setRowCount(len(self._ids))
        self.table.blockSignals(False)
        self._append_added()
        self._fit_table()

    def addedTensors(self) -> list[tuple[str, tuple[int, ...], int]]:
        return list(self._added)

    def _append_added(self) -> None:
        tip = ("Added to the run by Add group (optimizer.add_param_group) into group {g}. It is part of the "
               "run, not of the problem: an edit of the problem restarts the run without it.")
        self.table.blockSignals(True)
        for name, shape, group in self._added:
            r = self.table.rowCount()
            self.table.insertRow(r)
            for col, text in ((NAME, name), (SHAPE, shape_text(shape)), (INIT, f"added · group {group}")):
                item = QTableWidgetItem(text)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled)  # read-only, not selectable
                item.setForeground(QBrush(QColor("#8a8a8a")))
                item.setToolTip(tip.format(g=group))
                self.table.setItem(r, col, item)
        self.table.blockSignals(False)

    def setDevices(self, devices: list[str]) -> None:
        """Offer ``devices`` (e.g. ["cpu", "cuda:0"]); the spec's device stays listed."""
        self._loading = True
        self.device.clear()
        self.device.addItems(list(devices))
        if self.device.findText(self._spec.device) < 0:
            self.device.addItem(self._spec.device)
        self.device.setCurrentText(self._spec.device)
        self._loading = False

    def setLocked(self, locked: bool) -> None:
        """Read-only while a run is in progress (scrolling still works)."""
        self._content.setEnabled(not locked)
        self._locked_note.setVisible(locked)

    def isLocked(self) -> bool:
        return not self._content.isEnabled()

    def errorText(self) -> str:
        return self.error.text()

    # ----- layout -----

    def _build_ui(self) -> None:
        self._content = QWidget()
        col = QVBoxLayout(self._content)
        col.setContentsMargins(4, 4, 4, 4)

        box = QGroupBox("Tensors")
        lay = QVBoxLayout(box)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["name", "shape", "init"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(_ROW_H)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        head.setSectionResizeMode(SHAPE, QHeaderView.ResizeMode.Interactive)
        head.setSectionResizeMode(INIT, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(SHAPE, 80)
        self.table.setColumnWidth(INIT, 110)
        self.table.itemChanged.connect(self._on_cell_changed)
        self.table.currentCellChanged.connect(self._on_row_changed)
        self.add_button = QPushButton("+")
        self.remove_button = QPushButton("−")
        self.add_button.setToolTip("Add a tensor (2x2, normal init) to the first group")
        self.remove_button.setToolTip("Remove the selected tensor")
        for b in (self.add_button, self.remove_button):
            b.setFixedWidth(32)
        self.add_button.clicked.connect(self._add_tensor)
        self.remove_button.clicked.connect(self._remove_tensor)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        hint = QLabel("double-click a name or shape to edit")
        hint.setWordWrap(True)  # on one line it made the dock's content wider than the dock at 1024x700
        row.addWidget(hint, 1)
        lay.addWidget(self.table)
        lay.addLayout(row)
        col.addWidget(box)

        self.detail_box = QGroupBox("Selected tensor")
        QVBoxLayout(self.detail_box).addWidget(detail := TensorDetail())
        self.detail = detail
        detail.edited.connect(self._commit)
        col.addWidget(self.detail_box)

        box = QGroupBox("Parameter groups")
        self.groups = GroupMatrix()
        self.groups.changed.connect(self._commit)
        QVBoxLayout(box).addWidget(self.groups)
        col.addWidget(box)

        box = QGroupBox("Gradient source")
        self._gform = form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.kind = QComboBox()
        self.kind.addItems(["manual", "objective"])
        self.when = QComboBox()
        for text, data in _WHEN:
            self.when.addItem(text, data)
        self.objective = QComboBox()
        self.objective.addItems(OBJECTIVES)
        self.condition = QLineEdit()
        self.condition.setToolTip("Ratio of largest to smallest curvature (>= 1)")
        form.addRow("source", self.kind)
        form.addRow("when", self.when)
        form.addRow("objective", self.objective)
        form.addRow("condition", self.condition)
        self.kind.currentIndexChanged.connect(self._on_gradient_changed)
        self.when.currentIndexChanged.connect(self._commit)
        self.objective.currentIndexChanged.connect(self._on_gradient_changed)
        self.condition.editingFinished.connect(self._on_text_done)
        col.addWidget(box)

        box = QGroupBox("Session")
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.device = QComboBox()
        self.device.addItem("cpu")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setKeyboardTracking(False)  # one edit per typed number, not per digit
        self.set_to_none = QCheckBox("zero_grad(set_to_none=True)")
        self.zero_each_step = QCheckBox("zero_grad before every step")
        form.addRow("device", self.device)
        form.addRow("seed", self.seed)
        form.addRow("", self.set_to_none)
        form.addRow("", self.zero_each_step)
        self.device.currentIndexChanged.connect(self._commit)
        self.seed.valueChanged.connect(self._commit)
        self.set_to_none.toggled.connect(self._commit)
        self.zero_each_step.toggled.connect(self._commit)
        col.addWidget(box)
        col.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self._content)
        self._locked_note = QLabel("Locked while a run is in progress.")
        self._locked_note.setStyleSheet("color: #777; padding: 2px 4px;")
        self._locked_note.hide()
        self.error = QLabel()
        self.error.setStyleSheet("color: #c62828; padding: 2px 4px;")
        self.error.setWordWrap(True)  # a long message must not widen the dock
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        outer.addWidget(self._locked_note)
        outer.addWidget(scroll, 1)
        outer.addWidget(self.error)
        guard_all(self)

    # ----- tensor table -----

    def _append_row(self, tid: int) -> None:
        t = self._base[tid]
        r = self.table.rowCount()
        self.table.blockSignals(True)
        self.table.insertRow(r)
        self.table.setItem(r, NAME, QTableWidgetItem(t.name))
        self.table.setItem(r, SHAPE, QTableWidgetItem(shape_text(t.shape)))
        init = QTableWidgetItem()
        init.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
        self.table.setItem(r, INIT, init)
        self._set_init_text(r, t)
        self.table.blockSignals(False)

    def _set_init_text(self, r: int, t: TensorSpec) -> None:
        item = self.table.item(r, INIT)
        blocked = self.table.blockSignals(True)
        item.setText(t.init + ("  ·f64" if t.dtype == "float64" else ""))
        self.table.blockSignals(blocked)

    def _fit_table(self) -> None:
        rows = min(max(self.table.rowCount(), 2), 6)
        self.table.setFixedHeight(max(self.table.horizontalHeader().sizeHint().height(), _ROW_H) + rows * _ROW_H
                                  + 2 * self.table.frameWidth() + 2)

    def _named_ids(self) -> list[tuple[int, str]]:
        return [(tid, self.table.item(r, NAME).text().strip()) for r, tid in enumerate(self._ids)]

    def _add_tensor(self) -> None:
        taken = {name for _, name in self._named_ids()}
        name = next(f"w{k}" for k in range(len(taken) + 1) if f"w{k}" not in taken)
        tid, self._next_id = self._next_id, self._next_id + 1
        self._base[tid] = TensorSpec(name, (2, 2), init="normal", grad=ManualGrad())
        self._ids.append(tid)
        self._append_row(tid)
        self._fit_table()
        self.groups.addTensor(tid, name)
        self.table.setCurrentCell(len(self._ids) - 1, NAME)
        self._commit()

    def _remove_tensor(self) -> None:
        r = self.table.currentRow()
        if not 0 <= r < len(self._ids):
            return
        tid = self._ids.pop(r)
        self._base.pop(tid)
        self._grad_ids = [i for i in self._grad_ids if i != tid]
        self.table.blockSignals(True)
        self.table.removeRow(r)
        self.table.blockSignals(False)
        self._fit_table()
        self.groups.setContent(self._named_ids(), self.groups.groups())
        self._load_detail()
        self._commit()

    def _on_cell_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == NAME and item.row() == self.table.currentRow():
            self.detail_box.setTitle(f"Tensor {item.text().strip()}")
        self._commit()

    def _on_row_changed(self, row: int, _col: int, prev: int, _pcol: int) -> None:
        if row != prev and not self._loading:
            self._load_detail()
            self._commit()  # an unfinished edit of the previous row is dropped: re-check

    def _load_detail(self) -> None:
        r = self.table.currentRow()
        self.detail_box.setVisible(0 <= r < len(self._ids))
        if 0 <= r < len(self._ids):
            self.detail.load(self._base[self._ids[r]])
            self.detail_box.setTitle(f"Tensor {self.table.item(r, NAME).text().strip()}")

    # ----- gradient source -----

    def _update_gradient_rows(self) -> None:
        manual = self.kind.currentText() == "manual"
        self._gform.setRowVisible(self.when, manual)
        self._gform.setRowVisible(self.objective, not manual)
        self._gform.setRowVisible(self.condition, not manual and self.objective.currentText() == "quadratic")
        self.detail.grad_box.setEnabled(manual)

    def _on_gradient_changed(self, *_):
        self._update_gradient_rows()
        self._commit()

    def _on_text_done(self):
        if self.sender().isModified():
            self.sender().setModified(False)
            self._commit()

    # ----- spec out -----

    def _build(self) -> SessionSpec:
        """A spec from the widgets (SpecError for a field that cannot be read)."""
        current = self.table.currentRow()
        tensors, names = [], {}
        for r, tid in enumerate(self._ids):
            name = self.table.item(r, NAME).text().strip()
            shape = parse_shape(self.table.item(r, SHAPE).text(), name or f"row {r}")
            try:
                if r == current:
                    t = self.detail.apply(self._base[tid], name, shape)
                else:
                    t = reshaped(self._base[tid], name, shape)
            except SpecError as e:  # TensorSpec refuses a bad shape at construction
                raise SpecError(f"{e} for {name}" if str(e).startswith("Invalid shape") else str(e)) from None
            self._base[tid] = t  # keep what parsed, so switching rows loses nothing
            tensors.append(t)
            names[tid] = name
        groups = tuple(GroupSpec(tuple(names[i] for i in ids), hp) for ids, hp in self.groups.groups())
        old = self._spec.gradient
        kind, objective = self.kind.currentText(), self.objective.currentText()
        condition = old.condition
        if kind == "objective" and objective == "quadratic":
            text = self.condition.text().strip()
            try:
                condition = float(text)
            except ValueError:
                raise SpecError(f"Invalid condition number: {text!r} is not a number") from None
        gradient = replace(old, kind=kind, when=self.when.currentData(), objective=objective,
                           condition=condition, tensors=tuple(names[i] for i in self._grad_ids))
        return replace(self._spec, tensors=tuple(tensors), groups=groups, gradient=gradient,
                       device=self.device.currentText(), seed=self.seed.value(),
                       set_to_none=self.set_to_none.isChecked(),
                       zero_grad_each_step=self.zero_each_step.isChecked())

    def _commit(self, *_) -> None:
        if self._loading:
            return
        try:
            new = self._build()
            new.check()
        except SpecError as e:
            self._show_error(str(e))
            return
        self._show_error("")
        self._refresh(new)
        if new != self._spec:
            self._spec = new
            self.specEdited.emit(new)

    def _refresh(self, new: SessionSpec) -> None:
        """Show derived text (init column, group row names, detail) of a valid spec."""
        for r, t in enumerate(new.tensors):
            self._set_init_text(r, t)
        if [t.name for t in new.tensors] != [t.name for t in self._spec.tensors]:
            self.groups.setContent(self._named_ids(), self.groups.groups())
        r = self.table.currentRow()
        if 0 <= r < len(self._ids):
            self.detail.load(self._base[self._ids[r]])

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setToolTip(text)
        self.error.setVisible(bool(text))
