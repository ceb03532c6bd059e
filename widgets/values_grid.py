"""A small editable grid of explicit numbers (initial values or a manual gradient).

Shown only for small tensors (numel <= ``MAX_CELLS``). 1-D tensors are one row; tensors
with more than 2 dimensions are shown with their leading dimensions folded into rows.
"""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from core.spec import SpecError

MAX_CELLS = 64
_ROW_H = 22
_GREY = QBrush(QColor("#8a8a8a"))


def fmt_number(v) -> str:
    """Shortest text that reads back as the same float (``1.0`` shows as ``1``)."""
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def fit_values(values, shape: tuple[int, ...]):
    """``values`` as nested lists of ``shape``: as is if it fits, else flattened, cut or zero-padded."""
    try:
        if values is not None and np.shape(values) == tuple(shape):
            return values
    except ValueError:  # ragged
        pass
    flat = np.zeros(0) if values is None else np.asarray(values, dtype=float).ravel()
    out = np.zeros(math.prod(shape))
    n = min(out.size, flat.size)
    out[:n] = flat[:n]
    return out.reshape(shape).tolist()


def grid_dims(shape: tuple[int, ...]) -> tuple[int, int]:
    """Rows and columns used to draw a tensor of ``shape``."""
    if len(shape) == 0:
        return 1, 1
    return math.prod(shape[:-1]), shape[-1]


class ValuesGrid(QTableWidget):
    """Editable cells for a small tensor; emits ``cellEdited`` after the user changes a number.

    ``setValues(values, placeholder=True)`` shows the numbers greyed out (or blank cells for
    ``None``): a hint of what editing would start from, not the tensor's current init.
    """

    cellEdited = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._shape: tuple[int, ...] = (1,)
        self._placeholder = False
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                             | QAbstractItemView.EditTrigger.EditKeyPressed
                             | QAbstractItemView.EditTrigger.AnyKeyPressed)
        self.verticalHeader().setDefaultSectionSize(_ROW_H)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.horizontalHeader().setDefaultSectionSize(64)
        self.horizontalHeader().setMinimumSectionSize(36)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.itemChanged.connect(self._on_item_changed)

    # ----- content -----

    def setShape(self, shape: tuple[int, ...]) -> None:
        """Resize the grid for a tensor of ``shape`` (cells keep no numbers)."""
        self._shape = tuple(shape)
        rows, cols = grid_dims(self._shape)
        self.blockSignals(True)
        self.clearContents()
        self.setRowCount(rows)
        self.setColumnCount(cols)
        lead = self._shape[:-1]
        labels = [",".join(map(str, np.unravel_index(r, lead))) if len(lead) > 1 else str(r)
                  for r in range(rows)] if lead else [""]
        self.setVerticalHeaderLabels(labels)
        self.verticalHeader().setVisible(len(self._shape) >= 2)  # one row needs no index
        self.setHorizontalHeaderLabels([str(c) for c in range(cols)])
        for r in range(rows):
            for c in range(cols):
                item = QTableWidgetItem("")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(r, c, item)
        self.blockSignals(False)
        self.setFixedHeight(self._fit_height(rows))

    def setValues(self, values, placeholder: bool = False) -> None:
        """Show ``values`` (nested lists of the grid's shape, or None for blank cells)."""
        self._placeholder = placeholder
        rows, cols = grid_dims(self._shape)
        flat = None if values is None else np.asarray(fit_values(values, self._shape), dtype=float).ravel()
        self.blockSignals(True)
        for i in range(rows * cols):
            item = self.item(i // cols, i % cols)
            item.setText("" if flat is None else fmt_number(flat[i]))
            item.setForeground(_GREY if placeholder else QBrush())
        self.blockSignals(False)

    def shape(self) -> tuple[int, ...]:
        return self._shape

    def isPlaceholder(self) -> bool:
        return self._placeholder

    def values(self):
        """The numbers as nested lists of the grid's shape; blank cells count as 0.

        Raises SpecError naming the first cell that is not a number.
        """
        rows, cols = grid_dims(self._shape)
        flat = []
        for i in range(rows * cols):
            text = self.item(i // cols, i % cols).text().strip()
            try:
                flat.append(float(text) if text else 0.0)
            except ValueError:
                raise SpecError(f"Invalid number {text!r} in row {i // cols}, column {i % cols}") from None
        return np.asarray(flat).reshape(self._shape).tolist()

    def fillBlanks(self, values) -> None:
        """Leave placeholder mode: cells the user has not typed in take ``values`` (or 0)."""
        rows, cols = grid_dims(self._shape)
        flat = np.asarray(fit_values(values, self._shape), dtype=float).ravel()
        self.blockSignals(True)
        for i in range(rows * cols):
            item = self.item(i // cols, i % cols)
            if item.foreground() == _GREY or not item.text().strip():
                item.setText(fmt_number(flat[i]))
            item.setForeground(QBrush())
        self.blockSignals(False)
        self._placeholder = False

    # ----- internals -----

    def _fit_height(self, rows: int) -> int:
        shown = min(rows, 8)
        scroll = self.horizontalScrollBar().sizeHint().height() if self.columnCount() > 4 else 0
        header = max(self.horizontalHeader().sizeHint().height(), _ROW_H)  # the style may grow it when shown
        return header + shown * _ROW_H + scroll + 2 * self.frameWidth() + 2

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        item.setForeground(QBrush())  # a typed number is never a placeholder
        self.cellEdited.emit()
