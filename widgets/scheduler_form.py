"""The lr scheduler chooser: a scheduler of torch.optim.lr_scheduler (or none), its
parameters as an ``HparamForm``, and whether it steps every optimizer step or every epoch.

The scheduler list, the required-argument filler and the validator come from the app
(``core.schedulers``), so this widget stays torch-free. A user change that the validator
accepts is emitted as a ``SchedulerSpec`` (or None); anything else shows its sentence.
"""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QLabel, QVBoxLayout,
                               QWidget)

from core.hparams import OptimizerInfo
from core.spec import SchedulerSpec
from widgets.hparam_form import HparamForm, _same
from widgets.wheel_guard import guard_all

NONE = "None"
EVERY = (("every step", "step"), ("every epoch", "epoch"))

SchedulerValidator = Callable[[str, dict], "str | None"]
RequiredFiller = Callable[[str, dict], dict]


def default_every(info: OptimizerInfo) -> str:
    """"step" for schedulers meant to step every batch (their constraints say so), else "epoch"."""
    return "step" if any("every batch" in c for c in info.constraints) else "epoch"


class SchedulerForm(QWidget):
    """Chooser of an lr scheduler; emits ``schedulerEdited(SchedulerSpec | None)`` for valid edits."""

    schedulerEdited = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._infos: dict[str, OptimizerInfo] = {}
        self._skipped: dict[str, str] = {}
        self._spec: SchedulerSpec | None = None
        self._validator: SchedulerValidator | None = None
        self._filler: RequiredFiller | None = None
        self._explicit: set[str] = set()  # keys kept in params even at their default
        self._loading = False
        self._build_ui()
        self._show_scheduler(None)

    # ----- public API -----

    def setSchedulers(self, infos: list[OptimizerInfo], skipped: dict[str, str] | None = None) -> None:
        """Offer ``infos``; ``skipped`` (name -> reason) are listed in the combo's tooltip."""
        self._infos = {i.name: i for i in infos}
        self._skipped = dict(skipped or {})
        self._loading = True
        self.combo.clear()
        self.combo.addItem(NONE)
        self.combo.setItemData(0, "No scheduler: the lr stays as set", Qt.ItemDataRole.ToolTipRole)
        for info in infos:
            self.combo.addItem(info.name)
            self.combo.setItemData(self.combo.count() - 1, info.summary, Qt.ItemDataRole.ToolTipRole)
        tip = "The lr scheduler built right after the optimizer (torch.optim.lr_scheduler)."
        if self._skipped:
            tip += "\n\nNot offered:\n" + "\n".join(f"• {why}" for why in self._skipped.values())
        self.combo.setToolTip(tip)
        self._loading = False
        self.setScheduler(self._spec)

    def setValidator(self, fn: SchedulerValidator | None) -> None:
        """``fn(name, params) -> None`` when torch would build it, else one sentence."""
        self._validator = fn

    def setRequiredFiller(self, fn: RequiredFiller | None) -> None:
        """``fn(name, params) -> params`` plus a suggested value for every required argument."""
        self._filler = fn

    def setScheduler(self, spec: SchedulerSpec | None) -> None:
        """Show ``spec`` (None: no scheduler) without emitting."""
        self._spec = spec
        self._explicit = set(spec.params) if spec is not None else set()
        self._show_scheduler(spec)

    def scheduler(self) -> SchedulerSpec | None:
        """The last valid choice (set by ``setScheduler`` or by a user edit)."""
        return self._spec

    def setLocked(self, locked: bool) -> None:
        """Read-only while a run is in progress."""
        self._content.setEnabled(not locked)

    def isLocked(self) -> bool:
        return not self._content.isEnabled()

    def errorText(self) -> str:
        """The message shown (a bad field, or a scheduler torch would refuse), or ""."""
        return self.form.errorText() or self.error.text()

    # ----- layout -----

    def _build_ui(self) -> None:
        self._content = QWidget()
        col = QVBoxLayout(self._content)
        col.setContentsMargins(4, 4, 4, 4)
        col.setSpacing(6)
        top = QFormLayout()
        top.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.combo = QComboBox()
        self.combo.addItem(NONE)
        self.every = QComboBox()
        for text, data in EVERY:
            self.every.addItem(text, data)
        self.every.setToolTip("Call scheduler.step() after every optimizer step (per batch) "
                              "or at the end of every epoch")
        top.addRow("scheduler", self.combo)
        top.addRow("step it", self.every)
        self._top = top
        col.addLayout(top)
        self.summary = QLabel(wordWrap=True)
        self.summary.setStyleSheet("color: #666;")
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        col.addWidget(self.summary)
        self.form = HparamForm()
        self.form.setValidator(self._validate_values)
        self.form.valueChanged.connect(self._on_value)
        col.addWidget(self.form)
        self.error = QLabel(wordWrap=True)
        self.error.setStyleSheet("color: #c62828;")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        col.addWidget(self.error)

        self.combo.currentIndexChanged.connect(self._on_chosen)
        self.every.currentIndexChanged.connect(self._on_every)

        # no scroll box of its own: the dock that holds the form scrolls it with the rest
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self._content)
        guard_all(self)

    def _show_scheduler(self, spec: SchedulerSpec | None) -> None:
        self._loading = True
        name = spec.name if spec is not None else NONE
        if self.combo.findText(name) < 0:  # a scheduler this torch does not describe: still show it
            self.combo.addItem(name)
        self.combo.setCurrentIndex(self.combo.findText(name))
        info = self._infos.get(name)
        if spec is not None:
            self.every.setCurrentIndex(max(0, self.every.findData(spec.every)))
        if info is not None:
            self.form.setOptimizer(info, spec.params if spec is not None else {})
        self._show_info(name, info)
        self._show_error("")
        self._loading = False

    def _show_info(self, name: str, info: OptimizerInfo | None) -> None:
        self.form.setVisible(info is not None)
        self._top.setRowVisible(self.every, name != NONE)
        if info is not None:
            self.summary.setText(" ".join((info.summary,) + info.constraints))
        elif name != NONE:
            self.summary.setText(f"{self._skipped.get(name, f'{name} is not described by this torch.')}")
        else:
            self.summary.setText("No scheduler: every group's lr stays as set.")
        self.summary.setVisible(bool(self.summary.text()))

    # ----- edits -----

    def _required(self, name: str) -> dict:
        return dict(self._filler(name, {})) if self._filler else {}

    def _params(self, name: str, values: dict) -> dict:
        """The values that differ from the defaults, plus the required and explicitly given ones."""
        info = self._infos[name]
        keep = set(self._required(name)) | self._explicit
        return {k: v for k, v in values.items()
                if k in keep or (h := info.hparam(k)) is None or not _same(v, h.default)}

    def _check(self, name: str, params: dict) -> str | None:
        if not self._validator:
            return None
        try:
            return self._validator(name, params)
        except ValueError as e:
            return str(e)

    def _validate_values(self, values: dict) -> str | None:
        """HparamForm's validator: the scheduler's own, on the params that would be emitted."""
        name = self.combo.currentText()
        if name not in self._infos:
            return None
        return self._check(name, self._params(name, values))

    def _on_chosen(self, *_) -> None:
        if self._loading:
            return
        name = self.combo.currentText()
        info = self._infos.get(name)
        self._explicit = set()
        if info is None:
            self._show_info(name, None)
            self._show_error("")
            if name == NONE:
                self._emit(None)
            return
        params = self._filler(name, {}) if self._filler else {}
        self._loading = True
        self.every.setCurrentIndex(max(0, self.every.findData(default_every(info))))
        self.form.setOptimizer(info, params)
        self._loading = False
        self._show_info(name, info)
        self._try_emit()

    def _on_every(self, *_) -> None:
        if not self._loading and self.combo.currentText() in self._infos:
            self._try_emit()

    def _on_value(self, key: str, value: object) -> None:
        h = self._infos[self.combo.currentText()].hparam(key)
        if h is not None and _same(value, h.default):
            self._explicit.discard(key)  # typed back to (or reset to) the default
        self._try_emit()

    def _try_emit(self) -> None:
        name = self.combo.currentText()
        params = self._params(name, self.form.values())
        msg = self._check(name, params)
        self._show_error(msg or "")
        if not msg:
            self._emit(SchedulerSpec(name, params, self.every.currentData()))

    def _emit(self, spec: SchedulerSpec | None) -> None:
        if spec != self._spec:
            self._spec = spec
            self.schedulerEdited.emit(spec)

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))
