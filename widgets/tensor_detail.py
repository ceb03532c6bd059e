"""The detail form of one tensor: dtype, init and its parameters, values, manual gradient.

``load`` fills the form from a TensorSpec without signals; ``apply`` reads it back onto a
TensorSpec (raising SpecError for text that is not a number); ``edited`` says the user
changed something. Name and shape live in the tensor table, not here.
"""
from __future__ import annotations

import math
from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit,
                               QVBoxLayout, QWidget)

from core.spec import DTYPES, GRAD_FILLS, INITS, ManualGrad, SpecError, TensorSpec
from widgets.values_grid import MAX_CELLS, ValuesGrid, fit_values, fmt_number

# Which TensorSpec number fields each init uses (seed: every random init).
_INIT_FIELDS = {"constant": ("value",), "normal": ("mean", "std"), "uniform": ("low", "high"),
                "xavier_uniform": ("gain",), "xavier_normal": ("gain",)}
_RANDOM = {"normal", "uniform", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"}
_NUMBERS = ("value", "mean", "std", "low", "high", "gain")
_NO_GRAD = "none"


def _float(text: str, what: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise SpecError(f"Invalid {what}: {text.strip()!r} is not a number") from None


def _fit(values, shape: tuple[int, ...], needed: bool):
    """Explicit values reshaped to ``shape`` (zeros if needed and missing); big tensors untouched."""
    if math.prod(shape) > MAX_CELLS or (values is None and not needed):
        return values
    return fit_values(values, shape)


class TensorDetail(QWidget):
    """Form for the selected tensor's init and manual gradient."""

    edited = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._base = TensorSpec("w", (1,))
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)

        self._form = form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.dtype = QComboBox()
        self.dtype.addItems(DTYPES)
        self.init = QComboBox()
        self.init.addItems(INITS)
        form.addRow("dtype", self.dtype)
        form.addRow("init", self.init)
        self.numbers: dict[str, QLineEdit] = {}
        for key in _NUMBERS:
            edit = QLineEdit()
            self.numbers[key] = edit
            form.addRow(key, edit)
            edit.editingFinished.connect(self._on_text_done)
        self.seed = QLineEdit()
        self.seed.setPlaceholderText("derived from the session seed")
        self.seed.editingFinished.connect(self._on_text_done)
        form.addRow("seed", self.seed)
        self.values = ValuesGrid()
        self.values_note = QLabel()
        self.values_note.setWordWrap(True)
        self.values_note.setStyleSheet("color: #777;")
        form.addRow("values", self.values)
        form.addRow("", self.values_note)
        outer.addLayout(form)

        self.grad_box = QGroupBox("Manual gradient")
        self.grad_box.setToolTip("Used when the gradient source is manual")
        gform = self._gform = QFormLayout(self.grad_box)
        gform.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.grad_fill = QComboBox()
        self.grad_fill.addItems((_NO_GRAD,) + GRAD_FILLS)
        self.grad_value = QLineEdit()
        self.grad_std = QLineEdit()
        self.grad_values = ValuesGrid()
        self.grad_sparse = QCheckBox("sparse")
        gform.addRow("fill", self.grad_fill)
        gform.addRow("value", self.grad_value)
        gform.addRow("std", self.grad_std)
        gform.addRow("values", self.grad_values)
        gform.addRow("", self.grad_sparse)
        outer.addWidget(self.grad_box)

        self.dtype.currentIndexChanged.connect(self._on_change)
        self.init.currentIndexChanged.connect(self._on_init_changed)
        self.values.cellEdited.connect(self._on_values_edited)
        self.grad_fill.currentIndexChanged.connect(self._on_grad_fill_changed)
        self.grad_value.editingFinished.connect(self._on_text_done)
        self.grad_std.editingFinished.connect(self._on_text_done)
        self.grad_values.cellEdited.connect(self._on_grad_values_edited)
        self.grad_sparse.toggled.connect(self._on_change)

    # ----- spec in and out -----

    def load(self, t: TensorSpec) -> None:
        """Show ``t`` (no signals)."""
        self._base = t
        widgets = [self.dtype, self.init, self.grad_fill, self.grad_sparse, *self.numbers.values(),
                   self.seed, self.grad_value, self.grad_std]
        for w in widgets:
            w.blockSignals(True)
        self.dtype.setCurrentText(t.dtype)
        self.init.setCurrentText(t.init)
        for key, edit in self.numbers.items():
            edit.setText(fmt_number(getattr(t, key)))
        self.seed.setText("" if t.seed is None else str(t.seed))
        g = t.grad or ManualGrad()
        self.grad_fill.setCurrentText(t.grad.fill if t.grad else _NO_GRAD)
        self.grad_value.setText(fmt_number(g.value))
        self.grad_std.setText(fmt_number(g.std))
        self.grad_sparse.setChecked(g.sparse)
        for w in widgets:
            w.blockSignals(False)
        small = t.numel <= MAX_CELLS
        if small:
            if self.values.shape() != t.shape or self.values.rowCount() == 0:
                self.values.setShape(t.shape)
                self.grad_values.setShape(t.shape)
            explicit = t.init == "values"
            self.values.setValues(t.values, placeholder=not explicit)
            self.grad_values.setValues(g.values, placeholder=g.fill != "values")
        self._update_rows()

    def apply(self, base: TensorSpec, name: str, shape: tuple[int, ...]) -> TensorSpec:
        """``base`` with this form's fields, renamed and reshaped; SpecError for bad text."""
        init = self.init.currentText()
        kw = {}
        for key in _NUMBERS:
            shown = key in _INIT_FIELDS.get(init, ())
            kw[key] = _float(self.numbers[key].text(), f"{key} for {name}") if shown else getattr(base, key)
        seed_text = self.seed.text().strip()
        if init not in _RANDOM:
            seed = base.seed
        elif not seed_text:
            seed = None
        else:
            try:
                seed = int(seed_text)
            except ValueError:
                raise SpecError(f"Invalid seed for {name}: {seed_text!r} (a whole number, or blank)") from None
            if seed < 0:
                raise SpecError(f"Invalid seed for {name}: {seed} (must be >= 0)")
        values = base.values
        if init == "values" and base.numel <= MAX_CELLS and not self.values.isPlaceholder():
            values = self.values.values()
        values = _fit(values, shape, init == "values")
        return replace(base, name=name, shape=shape, dtype=self.dtype.currentText(), init=init,
                       values=values, seed=seed, grad=self._grad(base, name, shape), **kw)

    def _grad(self, base: TensorSpec, name: str, shape) -> ManualGrad | None:
        fill = self.grad_fill.currentText()
        if fill == _NO_GRAD:
            return None
        old = base.grad or ManualGrad()
        value = _float(self.grad_value.text(), f"gradient value for {name}") if fill == "constant" else old.value
        std = _float(self.grad_std.text(), f"gradient std for {name}") if fill == "normal" else old.std
        values = old.values
        if fill == "values" and base.numel <= MAX_CELLS and not self.grad_values.isPlaceholder():
            values = self.grad_values.values()
        values = _fit(values, shape, fill == "values")
        return replace(old, fill=fill, value=value, std=std, values=values,
                       sparse=self.grad_sparse.isChecked())

    # ----- reactions -----

    def _update_rows(self) -> None:
        init = self.init.currentText()
        used = _INIT_FIELDS.get(init, ())
        for key in _NUMBERS:
            self._form.setRowVisible(self.numbers[key], key in used)
        self._form.setRowVisible(self.seed, init in _RANDOM)
        small = self._base.numel <= MAX_CELLS
        self._form.setRowVisible(self.values, small)
        if small:
            self.values_note.setText("" if init == "values" else "Edit a cell to set explicit values.")
        else:
            self.values_note.setText(f"{self._base.numel} elements: too many to edit here.")
        self._form.setRowVisible(self.values_note, bool(self.values_note.text()))
        fill = self.grad_fill.currentText()
        self._gform.setRowVisible(self.grad_value, fill == "constant")
        self._gform.setRowVisible(self.grad_std, fill == "normal")
        self._gform.setRowVisible(self.grad_values, fill == "values" and small)
        self._gform.setRowVisible(self.grad_sparse, fill != _NO_GRAD)

    def _on_change(self, *_):
        self.edited.emit()

    def _on_text_done(self):
        if self.sender().isModified():
            self.sender().setModified(False)
            self.edited.emit()

    def _on_init_changed(self, *_):
        if self.init.currentText() == "values" and self.values.isPlaceholder():
            self.values.fillBlanks(self._base.values)
        self._update_rows()
        self.edited.emit()

    def _on_values_edited(self):
        if self.values.isPlaceholder():
            self.values.fillBlanks(self._base.values)
        if self.init.currentText() != "values":
            self.init.blockSignals(True)
            self.init.setCurrentText("values")
            self.init.blockSignals(False)
            self._update_rows()
        self.edited.emit()

    def _on_grad_fill_changed(self, *_):
        if self.grad_fill.currentText() == "values" and self.grad_values.isPlaceholder():
            self.grad_values.fillBlanks((self._base.grad or ManualGrad()).values)
        self._update_rows()
        self.edited.emit()

    def _on_grad_values_edited(self):
        if self.grad_values.isPlaceholder():
            self.grad_values.fillBlanks((self._base.grad or ManualGrad()).values)
        if self.grad_fill.currentText() != "values":
            self.grad_fill.blockSignals(True)
            self.grad_fill.setCurrentText("values")
            self.grad_fill.blockSignals(False)
            self._update_rows()
        self.edited.emit()


def reshaped(base: TensorSpec, name: str, shape: tuple[int, ...]) -> TensorSpec:
    """``base`` renamed and reshaped, explicit values (init and gradient) fitted to the shape."""
    grad = base.grad
    if grad is not None:
        grad = replace(grad, values=_fit(grad.values, shape, grad.fill == "values"))
    return replace(base, name=name, shape=shape, values=_fit(base.values, shape, base.init == "values"),
                   grad=grad)
