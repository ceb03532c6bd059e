"""Edit while paused: double-click a cell of a tensor view (or its number), type a value, Enter.

Mixed into ``TensorView``. A double-click opens a one-line editor in place of the hover
read-out, prefilled with the cell's value; Enter asks for the edit (``valueEdited(index,
value)``, the full tensor's index: a preview cell maps through the preview's stride), Esc
cancels. "fill…" does the same for every element (index None). While editing is off (the run
is going) a double-click says why instead. The widget asks; the app does it on the runner.
"""
from __future__ import annotations

import math

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QToolButton, QWidget

NOT_EDITABLE = "pause the run to edit values"


class CellEditing:
    """The editor row, the "fill…" button and the double-click handling of a TensorView."""

    def _make_editor(self, head: QHBoxLayout) -> QWidget:
        """Build the editor row (returned, for the view's layout) and put "fill…" in ``head``."""
        self._editable = True
        self._why_not = NOT_EDITABLE
        self._edit_index: tuple[int, ...] | None = None
        self.fillButton = QToolButton(self)
        self.fillButton.setText("fill…")
        self.fillButton.setAutoRaise(True)
        self.fillButton.setToolTip("Set every element to one value (journaled: it replays and rewinds "
                                   "like a step). Double-click a cell to set just that one.")
        self.fillButton.clicked.connect(lambda: self.beginEdit(None))
        head.addWidget(self.fillButton)
        row = QWidget(self)
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        self.editPrompt = QLabel(row)
        self.editField = QLineEdit(row)
        self.editField.setToolTip("A number; Enter sets it (used by the next step), Esc cancels")
        self.editField.installEventFilter(self)
        self.editField.returnPressed.connect(self._commit_edit)
        self.editNote = QLabel(row)
        self.editNote.setStyleSheet("color: #d32f2f;")
        lay.addWidget(self.editPrompt)
        lay.addWidget(self.editField, 1)
        lay.addWidget(self.editNote)
        row.hide()
        self.editRow = row
        self.scalar.installEventFilter(self)  # a 0-d tensor: double-click its number
        return row

    # ----------------------------------------------------------------- public
    def setEditable(self, on: bool, why: str = NOT_EDITABLE) -> None:
        """Allow edits, or refuse them saying ``why`` (e.g. while the run goes on)."""
        self._editable = bool(on)
        self._why_not = why
        self.fillButton.setEnabled(self._editable and self._view is not None and self._view.numel > 0)
        self.fillButton.setToolTip(self.fillButton.toolTip() if on else f"Not now: {why}")
        if not on and self.isEditing():
            self.cancelEdit()

    def isEditing(self) -> bool:
        return self.editRow.isVisible()

    def editAt(self, row: int, col: int) -> None:
        """What a double-click on display cell ``(row, col)`` does (a 0-d tensor: ``(0, 0)``)."""
        if self._view is not None and self._view.is_scalar:
            self.beginEdit(())
            return
        index, _ = self.valueAt(row, col)
        self.beginEdit(index)

    def beginEdit(self, index: tuple[int, ...] | None) -> None:
        """Open the editor for element ``index`` of the full tensor (None: every element)."""
        v = self._view
        if v is None or v.numel == 0:
            return
        if not self._editable:
            self.hover.show()
            self.hover.setText(f"<span style='color: #d32f2f'>Not now: {self._why_not}</span>")
            return
        self._edit_index = None if index is None else tuple(int(i) for i in index)
        name = self.title.text()
        if index is None:
            self.editPrompt.setText(f"fill all {v.numel:,} of {name} with")
            self.editField.setText("")
        else:
            self.editPrompt.setText(f"{name}{self._index_text(self._edit_index)} =")
            self.editField.setText(f"{self._current_value(self._edit_index):.8g}")
        self.editNote.setText("")
        self.hover.hide()
        self.editRow.show()
        self.editField.setFocus()
        self.editField.selectAll()

    def cancelEdit(self) -> None:
        self.editRow.hide()
        self._edit_index = None
        if self._view is not None and not self._view.is_scalar:
            self.hover.show()

    # -------------------------------------------------------------- internals
    def _current_value(self, index: tuple[int, ...]) -> float:
        v = self._view
        if v.is_scalar:
            return float(v.values.reshape(()).item())
        ex = self._exact
        if ex is not None and ex[0] == index:
            return ex[1]
        # a preview holds every stride-th element exactly: the element at a cell's index is there
        pidx = tuple(i // s for i, s in zip(index, v.stride)) if not v.exact else index
        return float(v.values[pidx])

    def _commit_edit(self) -> None:
        text = self.editField.text().strip()
        try:
            value = float(text)
        except ValueError:
            self.editNote.setText(f"{text or 'nothing'} is not a number")
            return
        if not math.isfinite(value):
            self.editNote.setText("the value must be a finite number")
            return
        index = self._edit_index
        self.cancelEdit()
        self.valueEdited.emit(index, value)

    def _double_clicked(self, pos) -> None:
        """A double-click on the image or the bars (``pos`` in the plot's viewport) edits the cell there."""
        page = self.pages.currentWidget()
        if page not in (self._image_page, self._bars_page):
            return
        p = page.getPlotItem().getViewBox().mapSceneToView(page.mapToScene(pos))
        cell = self.cellAt(p.x(), p.y())
        if cell is not None:
            self.editAt(*cell)

    def _edit_event(self, obj, event) -> bool:
        """Esc in the editor cancels; a double-click on a cell, a bar or a scalar's number edits it.
        (Watched on the plots' viewports: pyqtgraph's own click signal reports a double-click
        only at the release after it.)"""
        if obj is self.editField and event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Escape:
            self.cancelEdit()
            return True
        if event.type() != QEvent.Type.MouseButtonDblClick or event.button() != Qt.MouseButton.LeftButton:
            return False
        if obj is self.scalar:
            self.beginEdit(())
            return True
        page = self.pages.currentWidget()
        if page in (self._image_page, self._bars_page) and obj is page.viewport():
            self._double_clicked(event.position().toPoint())
            return True
        return False
