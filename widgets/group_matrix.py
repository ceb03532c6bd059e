"""Parameter-group membership as a check matrix: one row per tensor, one column per group.

Tensors are known by a stable id (so renaming needs no bookkeeping here). An empty group
list is the implicit single group of every tensor (``SessionSpec.groups == ()``); it is
shown as one "all" column and becomes explicit on the first change. Each group's
``hparams`` dict travels untouched: it is edited in the optimizer form.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

_ROW_H = 22


class GroupMatrix(QWidget):
    """Check which tensors go in which param_group; emits ``changed`` on user edits."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._tensors: list[tuple[int, str]] = []
        self._groups: list[tuple[list[int], dict]] = []
        self.table = QTableWidget()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(_ROW_H)
        self.table.horizontalHeader().setMinimumSectionSize(64)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemChanged.connect(self._on_item_changed)
        self.add_button = QPushButton("Add group")
        self.remove_button = QPushButton("Remove group")
        self.add_button.setToolTip("A new param_group; it takes the tensors that are in no group")
        self.remove_button.setToolTip("Remove the group of the selected column")
        self.add_button.clicked.connect(self._add_group)
        self.remove_button.clicked.connect(self._remove_group)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)

    # ----- content -----

    def setContent(self, tensors: list[tuple[int, str]], groups: list[tuple[list[int], dict]]) -> None:
        """Show ``tensors`` (id, name) and ``groups`` (ids, hparams); no signal."""
        self._tensors = list(tensors)
        known = {i for i, _ in self._tensors}
        self._groups = [([i for i in ids if i in known], dict(hp)) for ids, hp in groups]
        self._render()

    def groups(self) -> list[tuple[list[int], dict]]:
        """Explicit groups as (tensor ids, hparams); [] is the implicit group."""
        return [(list(ids), dict(hp)) for ids, hp in self._groups]

    def addTensor(self, tid: int, name: str) -> None:
        """A new tensor joins the first group (the implicit group takes it anyway)."""
        self._tensors.append((tid, name))
        if self._groups:
            self._groups[0][0].append(tid)
        self._render()

    # ----- internals -----

    def _render(self) -> None:
        t = self.table
        t.blockSignals(True)
        cols = max(1, len(self._groups))
        t.clear()
        t.setRowCount(len(self._tensors))
        t.setColumnCount(cols)
        t.setVerticalHeaderLabels([name for _, name in self._tensors])
        if self._groups:
            labels = [f"group {g}" + (" *" if hp else "") for g, (_, hp) in enumerate(self._groups)]
        else:
            labels = ["group 0 (all)"]
        t.setHorizontalHeaderLabels(labels)
        for g in range(cols):
            if self._groups:
                tip = "hyperparameter overrides: " + ", ".join(self._groups[g][1]) if self._groups[g][1] else ""
                t.horizontalHeaderItem(g).setToolTip(tip)
        for r, (tid, _) in enumerate(self._tensors):
            for g in range(cols):
                inside = tid in self._groups[g][0] if self._groups else True
                item = QTableWidgetItem()
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable
                              | Qt.ItemFlag.ItemIsSelectable)
                item.setCheckState(Qt.CheckState.Checked if inside else Qt.CheckState.Unchecked)
                t.setItem(r, g, item)
        t.blockSignals(False)
        rows = min(max(len(self._tensors), 1), 6)
        t.setFixedHeight(max(t.horizontalHeader().sizeHint().height(), _ROW_H) + rows * _ROW_H
                         + t.horizontalScrollBar().sizeHint().height() * (cols > 4) + 2 * t.frameWidth() + 2)
        self.remove_button.setEnabled(bool(self._groups))

    def _materialize(self) -> None:
        if not self._groups:
            self._groups = [([i for i, _ in self._tensors], {})]

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        self._materialize()
        tid = self._tensors[item.row()][0]
        ids = self._groups[item.column()][0]
        if item.checkState() == Qt.CheckState.Checked and tid not in ids:
            ids.append(tid)  # appended: a group's tensor order is its parameter order
        elif item.checkState() != Qt.CheckState.Checked and tid in ids:
            ids.remove(tid)
        if self.table.horizontalHeaderItem(0).text().endswith("(all)"):
            self.table.horizontalHeaderItem(0).setText("group 0")
        self.remove_button.setEnabled(True)
        self.changed.emit()

    def _add_group(self) -> None:
        self._materialize()
        taken = {i for ids, _ in self._groups for i in ids}
        self._groups.append(([i for i, _ in self._tensors if i not in taken], {}))
        self._render()
        self.changed.emit()

    def _remove_group(self) -> None:
        if not self._groups:
            return
        col = self.table.currentColumn()
        self._groups.pop(col if 0 <= col < len(self._groups) else len(self._groups) - 1)
        self._render()
        self.changed.emit()
