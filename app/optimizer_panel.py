"""The Optimizer dock: choose a torch.optim class and edit hyperparameters.

The form is generated from the catalogue (read from torch). "Constructor" edits the
spec's defaults (the arguments given to the optimizer; the run restarts from step
0); "group N" edits a live param_group, taking effect at the next step exactly as
assigning ``optimizer.param_groups[N][name]`` does.
"""
from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from core import catalogue
from widgets.hparam_form import HparamForm

CONSTRUCTOR = -1


class OptimizerPanel(QWidget):
    """Optimizer choice, description, constraints, target selector and the form."""

    optimizerChosen = Signal(str)
    defaultChanged = Signal(str, object)  # constructor argument edited (restarts the run)
    groupValueChanged = Signal(int, str, object)  # live param_group edited

    def __init__(self, parent=None):
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.addItems(list(catalogue.optimizer_classes()))
        self.combo.setToolTip("Every optimizer class in the installed torch.optim")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.constraints = QLabel()
        self.constraints.setWordWrap(True)
        self.constraints.setStyleSheet("color: #b26a00;")
        self.target = QComboBox()
        self.target.setToolTip("Constructor: the optimizer's defaults (restarts the run).\n"
                               "Group N: a live param_group, effective at the next step.")
        self.form = HparamForm()
        self.form.setValidator(self._validate)
        top = QFormLayout()
        top.addRow("Optimizer", self.combo)
        top.addRow("Edit", self.target)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.summary)
        lay.addWidget(self.constraints)
        lay.addWidget(scroll, 1)
        self._name = ""
        self._spec_hparams: dict = {}
        self._groups: tuple = ()
        self._shown: tuple | None = None
        self.combo.currentTextChanged.connect(self._on_combo)
        self.target.currentIndexChanged.connect(lambda _: self._refresh_form(force=True))
        self.form.valueChanged.connect(self._on_value)

    def _validate(self, values: dict) -> str | None:
        try:
            catalogue.validate_hparams(self._name, values)
        except ValueError as e:
            return str(e)
        return None

    def target_group(self) -> int:
        data = self.target.currentData()
        return CONSTRUCTOR if data is None else int(data)

    def setState(self, name: str, spec_hparams: dict, groups: tuple) -> None:
        """Show optimizer ``name``, the spec's constructor arguments and the live groups."""
        changed = name != self._name
        self._name = name
        self._spec_hparams = dict(spec_hparams)
        if changed:
            self.combo.blockSignals(True)
            self.combo.setCurrentText(name)
            self.combo.blockSignals(False)
            info = catalogue.info(name)
            self.summary.setText(info.summary)
            self.constraints.setText("\n".join(info.constraints))
            self.constraints.setVisible(bool(info.constraints))
        if changed or len(groups) != len(self._groups):
            keep = self.target_group()
            self.target.blockSignals(True)
            self.target.clear()
            self.target.addItem("Constructor (defaults)", None)
            for g in groups:
                self.target.addItem(f"group {g.index}: {', '.join(g.names)}", g.index)
            idx = self.target.findData(keep) if keep != CONSTRUCTOR else 0
            if keep == CONSTRUCTOR and groups and changed:
                idx = 1
            self.target.setCurrentIndex(max(0, idx))
            self.target.blockSignals(False)
        self._groups = groups
        self._refresh_form(force=changed)

    def revert(self) -> None:
        """Show the running optimizer and its values again (after the runner refused an edit)."""
        if not self._name:
            return
        self.combo.blockSignals(True)
        self.combo.setCurrentText(self._name)
        self.combo.blockSignals(False)
        self._refresh_form(force=True)

    def _current_values(self) -> tuple[dict, set]:
        info = catalogue.info(self._name)
        g = self.target_group()
        if g == CONSTRUCTOR or g >= len(self._groups):
            return dict(self._spec_hparams), set(self._spec_hparams)
        live = {k: v for k, v in self._groups[g].hparams.items() if k in info.defaults}
        over = {k for k, v in live.items() if self._spec_hparams.get(k, info.defaults[k]) != v}
        return live, over

    def _refresh_form(self, force: bool = False) -> None:
        if not self._name:
            return
        values, over = self._current_values()
        key = (self._name, self.target_group(), repr(sorted(values.items(), key=lambda kv: kv[0])))
        if not force and key == self._shown:
            return
        if force or self.form.optimizer() is None or self.form.optimizer().name != self._name:
            self.form.setOptimizer(catalogue.info(self._name), values, over)
        elif not self.form.hasErrors():
            self.form.setValues(values, over)
        self._shown = key

    @Slot(str)
    def _on_combo(self, name: str) -> None:
        if name and name != self._name:
            self.optimizerChosen.emit(name)

    @Slot(str, object)
    def _on_value(self, name: str, value) -> None:
        g = self.target_group()
        if g == CONSTRUCTOR:
            self.defaultChanged.emit(name, value)
        else:
            self.groupValueChanged.emit(g, name, value)
