"""A hyperparameter form generated from an `OptimizerInfo`.

Every field is parsed with `HyperParam.parse` and then checked by a validator
(torch's own rule, as one sentence) before its value is emitted. A bad field keeps
its text and a red border, its message shows right under it, and nothing is emitted:
the last accepted value stays in force (``inForce``), which ``errorsChanged`` lets the
app say where the user looks.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGridLayout, QLabel, QLineEdit,
                               QStyle, QToolButton, QVBoxLayout, QWidget)

from core.hparams import BOOL, CHOICE, OPT_BOOL, HyperParam, OptimizerInfo
from widgets.wheel_guard import guard

Validator = Callable[[dict[str, object]], "str | None"]

_ERROR_COLOUR = "#d32f2f"


def _same(a: object, b: object) -> bool:  # shared with scheduler_form
    """Equality that never raises and tells None, False and 0 apart."""
    if (a is None) != (b is None) or isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - odd types compare as different
        return False


@dataclass
class _Row:
    hp: HyperParam
    label: QLabel
    editor: QWidget
    reset: QToolButton
    options: list[object]  # for combo boxes: the value of each item
    error: QLabel  # the row's message, right under its editor


class HparamForm(QWidget):
    """One row per hyperparameter; emits ``valueChanged(name, value)`` for valid edits.

    Implementation flags (``hp.advanced``) sit in a collapsible "Advanced" section.
    A row whose value differs from the default (or that is listed as overridden)
    has a bold label and a reset button.
    """

    valueChanged = Signal(str, object)
    errorsChanged = Signal()  # a field became invalid or valid again

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._info: OptimizerInfo | None = None
        self._values: dict[str, object] = {}
        self._overridden: set[str] = set()
        self._rows: dict[str, _Row] = {}
        self._errors: dict[str, str] = {}
        self._validator: Validator | None = None

        self._basic = QWidget()
        self._advanced = QWidget()
        self._toggle = QToolButton(text="Advanced", checkable=True, autoRaise=True)
        self._toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self._toggle.setArrowType(Qt.ArrowType.RightArrow)
        self._toggle.setToolTip("Flags that pick an implementation, not the maths")
        self._toggle.setStyleSheet("QToolButton { border: none; padding: 2px 0; }")
        self._toggle.toggled.connect(self.setAdvancedExpanded)
        self._shown_errors: dict[str, str] = {}

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        for w in (self._basic, self._toggle, self._advanced):
            lay.addWidget(w)
        lay.addStretch(1)
        self._toggle.hide()
        self._advanced.hide()

    # ---- public API --------------------------------------------------------
    def setOptimizer(self, info: OptimizerInfo, values: dict[str, object] | None = None,
                     overridden: Iterable[str] = ()) -> None:
        """Rebuild the form for ``info`` showing ``values`` (defaults where missing)."""
        self._info = info
        self._values = {h.name: h.default for h in info.hparams}
        self._values.update({k: v for k, v in (values or {}).items() if k in self._values})
        self._overridden = set(overridden)
        self._rows.clear()
        self._errors.clear()
        self._basic = self._replace(self._basic, [h for h in info.hparams if not h.advanced])
        self._advanced = self._replace(self._advanced, [h for h in info.hparams if h.advanced])
        has_advanced = any(h.advanced for h in info.hparams)
        self._toggle.setVisible(has_advanced)
        self._advanced.setVisible(has_advanced and self._toggle.isChecked())
        self._align_labels()
        self._show_errors()

    def optimizer(self) -> OptimizerInfo | None:
        return self._info

    def setValidator(self, fn: Validator | None) -> None:
        """``fn(all_values) -> None`` when fine, else a one-sentence message."""
        self._validator = fn

    def values(self) -> dict[str, object]:
        """The accepted values (pending invalid edits are not included)."""
        return dict(self._values)

    def setValues(self, values: dict[str, object], overridden: Iterable[str] | None = None) -> None:
        """Show ``values`` (a subset is fine) without emitting anything."""
        if overridden is not None:
            self._overridden = set(overridden)
        for name, value in values.items():
            if name in self._rows:
                self._values[name] = value
                self._errors.pop(name, None)
                self._show_value(name)
        for name in self._rows:
            self._update_mark(name)
        self._show_errors()

    def editor(self, name: str) -> QWidget:
        return self._rows[name].editor

    def resetButton(self, name: str) -> QToolButton:
        return self._rows[name].reset

    def isMarked(self, name: str) -> bool:
        """True when the row shows as changed from its default."""
        return self._rows[name].label.font().bold()

    def errorText(self) -> str:
        """Every message shown, one per line ("" when all fields are valid)."""
        return "\n".join(dict.fromkeys(self._errors.values()))

    def errorLabel(self, name: str) -> QLabel:
        """The message line under ``name``'s editor."""
        return self._rows[name].error

    def invalidFields(self) -> dict[str, tuple[str, object]]:
        """Invalid fields: name -> (the text typed, the value still in force)."""
        out = {}
        for name in self._errors:
            ed = self._rows[name].editor
            typed = ed.text() if isinstance(ed, QLineEdit) else ed.currentText() if isinstance(ed, QComboBox) \
                else str(ed.isChecked())
            out[name] = (typed, self._values[name])
        return out

    def hasErrors(self) -> bool:
        return bool(self._errors)

    def isAdvancedExpanded(self) -> bool:
        return self._toggle.isChecked()

    def setAdvancedExpanded(self, expanded: bool) -> None:
        if self._toggle.isChecked() != expanded:
            self._toggle.setChecked(expanded)  # re-enters through toggled
            return
        self._toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self._advanced.setVisible(expanded and self._toggle.isVisible())

    # ---- building ----------------------------------------------------------
    def _replace(self, old: QWidget, hparams: list[HyperParam]) -> QWidget:
        new = QWidget()
        grid = QGridLayout(new)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(3)
        grid.setColumnStretch(1, 1)
        for r, hp in enumerate(hparams):
            row = self._make_row(hp)
            self._rows[hp.name] = row
            grid.addWidget(row.label, 2 * r, 0)
            grid.addWidget(row.editor, 2 * r, 1)
            grid.addWidget(row.reset, 2 * r, 2)
            grid.addWidget(row.error, 2 * r + 1, 1, 1, 2)
            self._show_value(hp.name)
            self._update_mark(hp.name)
        self.layout().replaceWidget(old, new)
        new.setVisible(old.isVisibleTo(self))
        old.deleteLater()
        return new

    def _make_row(self, hp: HyperParam) -> _Row:
        label = QLabel(hp.name)
        label.setToolTip(hp.doc)
        options: list[object] = []
        if hp.kind == BOOL:
            editor: QWidget = QCheckBox()
            editor.clicked.connect(partial(self._commit, hp.name))
        elif hp.kind in (OPT_BOOL, CHOICE):
            editor = QComboBox()
            options = [None, True, False] if hp.kind == OPT_BOOL else list(hp.choices)
            editor.addItems([hp.format(c) for c in options])
            editor.activated.connect(partial(self._commit, hp.name))
            guard(editor)
        else:
            editor = QLineEdit()
            editor.editingFinished.connect(partial(self._commit, hp.name))
            editor.installEventFilter(self)
        editor.setToolTip(hp.doc)
        editor.setProperty("hparam", hp.name)
        reset = QToolButton(autoRaise=True)
        reset.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_BrowserReload))
        reset.setToolTip(f"Reset to default ({hp.format(hp.default)})")
        policy = reset.sizePolicy()
        policy.setRetainSizeWhenHidden(True)  # no column jump when a row gets marked
        reset.setSizePolicy(policy)
        reset.clicked.connect(partial(self._reset, hp.name))
        error = QLabel(wordWrap=True)
        error.setStyleSheet(f"color: {_ERROR_COLOUR};")
        error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        error.hide()
        return _Row(hp, label, editor, reset, options, error)

    def _align_labels(self) -> None:
        """Same label column width in both sections, so editors line up."""
        width = max((r.label.sizeHint().width() for r in self._rows.values()), default=0)
        for w in (self._basic, self._advanced):
            w.layout().setColumnMinimumWidth(0, width)

    # ---- editing -----------------------------------------------------------
    def _show_value(self, name: str) -> None:
        row = self._rows[name]
        value = self._values[name]
        ed = row.editor
        ed.blockSignals(True)
        if isinstance(ed, QCheckBox):
            ed.setChecked(bool(value))
        elif isinstance(ed, QComboBox):
            idx = next((i for i, o in enumerate(row.options) if _same(o, value)), -1)
            if idx < 0:  # a value outside the known choices: show it rather than lie
                row.options.append(value)
                ed.addItem(row.hp.format(value))
                idx = len(row.options) - 1
            ed.setCurrentIndex(idx)
        else:
            ed.setText(row.hp.format(value))
            ed.setCursorPosition(0)
        ed.blockSignals(False)
        self._set_invalid(name, False)

    def _editor_value(self, row: _Row) -> object:
        ed = row.editor
        if isinstance(ed, QCheckBox):
            return ed.isChecked()
        if isinstance(ed, QComboBox):
            return row.options[ed.currentIndex()]
        return row.hp.parse(ed.text())

    def _commit(self, name: str, *_args) -> None:
        try:
            value = self._editor_value(self._rows[name])
        except ValueError as e:
            self._errors[name] = str(e)
            self._set_invalid(name, True)
        else:
            if self._accept(name, value):
                self._retry_pending(skip=name)
        self._show_errors()

    def _accept(self, name: str, value: object, force_emit: bool = False) -> bool:
        """Validate ``value`` with every other accepted value; store and emit if fine."""
        candidate = dict(self._values)
        candidate[name] = value
        try:
            msg = self._validator(candidate) if self._validator else None
        except ValueError as e:
            msg = str(e)
        if msg:
            self._errors[name] = msg
            self._set_invalid(name, True)
            return False
        self._errors.pop(name, None)
        changed = not _same(self._values[name], value)
        self._values[name] = value
        self._show_value(name)  # normalised text, e.g. "1e-3" -> "0.001"
        self._update_mark(name)
        if changed or force_emit:
            self.valueChanged.emit(name, value)
        return True

    def _retry_pending(self, skip: str) -> None:
        """A fix elsewhere can make a waiting field valid (nesterov needs momentum)."""
        for name in list(self._errors):
            if name == skip:
                continue
            try:
                value = self._editor_value(self._rows[name])
            except ValueError:
                continue
            self._accept(name, value)

    def _reset(self, name: str) -> None:
        self._overridden.discard(name)
        self._errors.pop(name, None)
        hp = self._rows[name].hp
        old = self._values[name]
        self._values[name] = hp.default
        self._show_value(name)
        self._values[name] = old
        if self._accept(name, hp.default, force_emit=True):
            self._retry_pending(skip=name)
        self._update_mark(name)
        self._show_errors()

    def _revert(self, name: str) -> None:
        self._errors.pop(name, None)
        self._show_value(name)
        self._show_errors()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if (event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Escape
                and isinstance(obj, QLineEdit)):
            name = obj.property("hparam")
            if name in self._rows and self._rows[name].editor is obj:
                self._revert(name)
                return True  # Esc is spent here, not on closing a dialog
        return super().eventFilter(obj, event)

    # ---- marks -------------------------------------------------------------
    def _update_mark(self, name: str) -> None:
        row = self._rows[name]
        marked = name in self._overridden or not _same(self._values[name], row.hp.default)
        font = QFont(row.label.font())
        font.setBold(marked)
        row.label.setFont(font)
        row.reset.setVisible(marked)

    def _set_invalid(self, name: str, invalid: bool) -> None:
        ed = self._rows[name].editor
        ed.setProperty("invalid", invalid)
        cls = type(ed).__name__
        ed.setStyleSheet(f"{cls} {{ border: 1px solid {_ERROR_COLOUR}; border-radius: 2px; "
                         "padding: 1px 2px; }" if invalid else "")

    def _show_errors(self) -> None:
        for name, row in self._rows.items():
            msg = self._errors.get(name, "")
            if row.error.text() != msg:
                row.error.setText(msg)
            row.error.setVisible(bool(msg))
        if self._errors != self._shown_errors:
            self._shown_errors = dict(self._errors)
            self.errorsChanged.emit()
