"""The Explain dialog: one element's update, the optimizer's rule with its real numbers.

The window opens it when the user clicks an element of a tensor while paused. It only
shows what the runner computed (``core.edits.explain_update`` -> ``core.explain``'s
``Explanation``): each term recomputed in float64 and in the parameter's dtype beside
torch's value, the distance in ULPs, and the change torch made against the formula's.
Choosing another step asks again (the runner replays to it; the session does not move).
"""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout)

from core.explain import Explanation, render

COLUMNS = ("term", "float64", "dtype", "torch", "ulp", "formula")
MISMATCH = QColor(255, 200, 200)


def _num(v: float | None, dtype: str) -> str:
    if v is None:
        return ""
    return f"{v:.17g}" if dtype == "float64" else f"{v:.9g}"


class ExplainDialog(QDialog):
    """Non-modal; ``requested(tensor, index, step)`` asks the window for another step's update."""

    requested = Signal(str, tuple, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Explain one update")
        self.setModal(False)
        self.resize(900, 460)
        self.tensor, self.index = "", ()
        self.explanation: Explanation | None = None
        self.show_branch = True
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.step = QSpinBox()
        self.step.setRange(1, 2**31 - 1)
        self.step.setPrefix("step ")
        self.step.setToolTip("The update from step K-1 to step K (replayed on a copy: the session stays put)")
        self.go = QPushButton("Explain")
        self.go.clicked.connect(self._ask)
        self.step.editingFinished.connect(self._ask)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.step)
        top.addWidget(self.go)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.verdict)

    def request(self, bridge, fn, *args) -> None:
        """Ask the runner for an explanation (``bridge.call(fn, *args)``); only the newest
        question's answer is shown (an older one arriving late must not replace it)."""
        self._token = token = getattr(self, "_token", 0) + 1

        def ok(e):
            if token == self._token:
                self.showExplanation(e)

        def fail(msg, _tb):
            if token == self._token:
                self.showRefusal(msg)
        bridge.call(fn, *args, on_ok=ok, on_error=fail)

    def ask(self, tensor: str, index: tuple, step: int) -> None:
        """Show that ``tensor[index]`` at ``step`` is being computed (the window sends the request)."""
        self.tensor, self.index = tensor, tuple(index)
        self.step.blockSignals(True)
        self.step.setValue(max(1, step))
        self.step.blockSignals(False)
        self.title.setText(f"{html.escape(tensor)}[{', '.join(map(str, index))}]: computing step {step:,}…")
        self.go.setEnabled(False)

    def _ask(self) -> None:
        if self.tensor and self.go.isEnabled():
            self.requested.emit(self.tensor, self.index, self.step.value())

    def showRefusal(self, message: str) -> None:
        """The runner's one sentence (no update at that step, a tensor that is gone...)."""
        self.explanation = None
        self.go.setEnabled(True)
        self.table.setRowCount(0)
        self.title.setText(f"{html.escape(self.tensor)}[{', '.join(map(str, self.index))}]")
        self.verdict.setText(html.escape(message))

    def showExplanation(self, e: Explanation) -> None:
        self.explanation = e
        self.go.setEnabled(True)
        idx = ", ".join(map(str, e.index))
        hp = ", ".join(f"{k}={v}" for k, v in e.hparams.items() if k != "params")
        where = f" (branch {e.branch})" if self.show_branch else ""  # a comparison's run has no branches to name
        self.title.setText(f"<b>{e.optimizer}</b>, step {e.step:,}{where}: "
                           f"<b>{html.escape(e.tensor)}[{idx}]</b> ({e.dtype}, {e.device}), "
                           f"{e.implementation} implementation<br><small>{html.escape(e.source)}<br>"
                           f"group {e.group}: {html.escape(hp)}</small>")
        self.table.setRowCount(len(e.terms))
        for r, t in enumerate(e.terms):
            cells = (t.name, _num(t.value, "float64"), _num(t.value_dtype, e.dtype), _num(t.torch, e.dtype),
                     "" if t.ulps is None else str(t.ulps), t.formula)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if t.ulps is not None and t.ulps > e.tolerance:
                    item.setBackground(MISMATCH)
                self.table.setItem(r, c, item)
        last = render(e).splitlines()[-1]  # "torch: X  formula: Y  diff: N ulp", as the CLI prints it
        # X and Y are the change to the element, not its value: say so, with the values before and
        # after as the CLI prints them (without this line a user read 1.4e-06 as the new weight)
        values = (f"theta before: {_num(e.before, e.dtype)}; after: torch {_num(e.torch_after, e.dtype)}, "
                  f"formula {_num(e.formula_after, e.dtype)} ({e.dtype}), "
                  f"{_num(e.reference_after, 'float64')} (float64)")
        notes = "".join(f"<br>note: {html.escape(n)}" for n in e.notes)
        flag = (f"<br><b style='color:#c00'>MISMATCH beyond the {e.tolerance} ulp tolerance of the "
                f"{e.implementation} implementation</b>" if e.mismatch else
                f"<br>within the {e.tolerance} ulp tolerance of the {e.implementation} implementation")
        self.verdict.setText(f"{html.escape(values)}<br>the change to the element (after - before): "
                             f"<tt>{html.escape(last)}</tt>{flag}{notes}")

    def lastLine(self) -> str:
        """The verdict's first line as plain text (tests and copy-paste)."""
        return render(self.explanation).splitlines()[-1] if self.explanation else ""
