"""Breakpoints: conditions that pause the run, each with an on/off box, plus a field to add one.
A listed condition is changed in place (double-click or F2, type, Enter).

The widget only asks: ``changeRequested([(condition, enabled), ...])`` is the whole list the
user wants. The app checks it (a bad condition gets one sentence beside the field,
``setRefusal``) and pushes back what the session holds with ``setBreakpoints``; the field
is emptied once its condition is in the list.
"""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

SYNTAX = ("loss nonfinite · params nonfinite · loss > 5 · loss < 0.01 · loss rising 10 · grad_norm > 10 · "
          "grad_norm < 1e-4 · update_norm > 1 · "
          "update_ratio[0] > 0.01 · weight.grad abs > 100 · weight.exp_avg_sq nonfinite · w.Q[1] nonfinite · "
          "step == 120")


def _hint_html(text: str) -> str:
    """The syntax line under the field: wrapped between conditions only ("loss <" and "0.01" had
    been cut apart at the end of a line)."""
    conditions = (html.escape(c).replace(" ", "&nbsp;") for c in text.split(" · "))
    return f"<span style='color: grey'>{' · '.join(conditions)}</span>"


def syntax(tensor: str = "", state_key: str = "") -> str:
    """The conditions' syntax with examples naming the session's own tensor and state entry
    (the generic "weight.grad abs > 100" was refused in a session with no tensor "weight")."""
    if not tensor:
        return SYNTAX
    named = [f"{tensor}.grad abs > 100"] + ([f"{tensor}.{state_key} nonfinite"] if state_key else [])
    return " · ".join(["loss nonfinite", "params nonfinite", "loss > 5", "loss < 0.01", "loss rising 10",
                       "grad_norm > 10", "grad_norm < 1e-4", "update_norm > 1", "update_ratio[0] > 0.01", *named,
                       "step == 120"])


class BreakpointList(QWidget):
    """A checkable list of conditions, Remove, and a field (with Add) for a new one."""

    changeRequested = Signal(list)  # [(text, enabled), ...]

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._shown: tuple[tuple[str, bool], ...] = ()
        self.list = QListWidget()
        self.list.setToolTip("The run pauses at the first step where a ticked condition holds; "
                             "double-click a condition to change it")
        self.field = QLineEdit()
        self.field.setPlaceholderText("e.g. loss < 0.01")
        self.field.setToolTip("A condition, one of:\n" + SYNTAX.replace(" · ", "\n"))
        self.field.setClearButtonEnabled(True)
        self.addButton = QPushButton("Add")
        self.addButton.setToolTip("Add the condition typed in the field (Enter)")
        self.removeButton = QPushButton("Remove")
        self.removeButton.setToolTip("Remove the selected condition")
        self.refusal = QLabel()
        self.refusal.setWordWrap(True)
        self.refusal.setStyleSheet("color: #d32f2f;")
        self.refusal.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.refusal.hide()
        self.hint = QLabel(_hint_html(SYNTAX))
        self.hint.setWordWrap(True)

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.field, 1)
        row.addWidget(self.addButton)
        row.addWidget(self.removeButton)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(3)
        lay.addWidget(self.list, 1)
        lay.addLayout(row)
        lay.addWidget(self.refusal)
        lay.addWidget(self.hint)

        self.field.returnPressed.connect(self._add)
        self.field.textEdited.connect(lambda _: self.setRefusal(""))
        self.addButton.clicked.connect(self._add)
        self.removeButton.clicked.connect(self._remove)
        self.list.itemChanged.connect(lambda _: self.changeRequested.emit(self.entries()))
        self.list.currentRowChanged.connect(lambda r: self.removeButton.setEnabled(r >= 0))
        self.removeButton.setEnabled(False)

    # ----------------------------------------------------------------- public
    def setNames(self, tensor: str, state_key: str = "") -> None:
        """Give the examples under the field the session's tensor (and one of its state entries)."""
        text = syntax(tensor, state_key)
        if text != getattr(self, "_syntax", SYNTAX):
            self._syntax = text
            self.hint.setText(_hint_html(text))
            self.field.setToolTip("A condition, one of:\n" + text.replace(" · ", "\n"))

    def setBreakpoints(self, entries) -> None:
        """Show ``[(text, enabled), ...]`` as the session holds them; a typed condition that is
        now in the list leaves the field."""
        entries = tuple((str(t), bool(on)) for t, on in entries)
        added = {t for t, _ in entries} - {t for t, _ in self._shown}
        self._shown = entries
        if entries == tuple(self.entries()):  # compared with what is on screen: a refused tick goes back
            return
        row = self.list.currentRow()
        self.list.blockSignals(True)
        self.list.clear()
        for text, on in entries:
            item = QListWidgetItem(text)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEditable)
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            self.list.addItem(item)
        self.list.setCurrentRow(min(row, self.list.count() - 1))
        self.list.blockSignals(False)
        self.removeButton.setEnabled(self.list.currentRow() >= 0)
        if added and self.field.text().strip():
            self.field.clear()
            self.setRefusal("")

    def entries(self) -> list[tuple[str, bool]]:
        """The list as shown now: ``[(text, enabled), ...]`` (a condition changed in place
        with its spaces tidied)."""
        return [(" ".join(self.list.item(i).text().split()), self.list.item(i).checkState() == Qt.CheckState.Checked)
                for i in range(self.list.count())]

    def setRefusal(self, sentence: str) -> None:
        """One sentence beside the field saying why its condition was refused ("" hides it)."""
        self.refusal.setText(sentence)
        self.refusal.setVisible(bool(sentence))

    def refusalText(self) -> str:
        return self.refusal.text() if self.refusal.isVisible() else ""

    # -------------------------------------------------------------- internals
    def _add(self) -> None:
        text = " ".join(self.field.text().split())
        if not text:
            self.setRefusal("Type a condition first, e.g. grad_norm > 10")
            return
        self.changeRequested.emit(self.entries() + [(text, True)])

    def _remove(self) -> None:
        row = self.list.currentRow()
        if row < 0:
            return
        entries = self.entries()
        del entries[row]
        self.changeRequested.emit(entries)
