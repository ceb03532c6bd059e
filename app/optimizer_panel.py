"""The Optimizer dock: choose a torch.optim class and edit hyperparameters.

The form is generated from the catalogue (read from torch). "Constructor" edits the
spec's defaults (the arguments given to the optimizer; the run restarts from step
0); "group N" edits a live param_group, taking effect at the next step exactly as
assigning ``optimizer.param_groups[N][name]`` does.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from core import catalogue, extra_optimizers, optimizer_names
from widgets.hparam_form import HparamForm
from widgets.wheel_guard import guard
from widgets.state_tree import format_value as fmt_value

CONSTRUCTOR = -1
# the combo's last entries: they load more names rather than name an optimizer
MORE = "More: the installed collections…"
FROM_FILE = "From a Python file…"


class OptimizerPanel(QWidget):
    """Optimizer choice, description, constraints, target selector and the form."""

    optimizerChosen = Signal(str)
    fileRequested = Signal()  # "From a Python file…" was chosen (the window asks which file, and consent)
    defaultChanged = Signal(str, object)  # constructor argument edited (restarts the run)
    groupValueChanged = Signal(int, str, object)  # live param_group edited
    invalidChanged = Signal(str)  # what is in force while a field holds a refused value ("" when none)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.addItems(list(catalogue.optimizer_classes()))
        self.combo.insertSeparator(self.combo.count())
        if extra_optimizers.installed():  # imported only when asked for: pytorch_optimizer takes seconds
            self.combo.addItem(MORE)
        self.combo.addItem(FROM_FILE)
        self.combo.setToolTip("Every optimizer class in the installed torch.optim; more from the installed "
                              "collections (pytorch_optimizer, schedulefree, ...) or from your own Python file")
        self._extras_loaded = False
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.constraints = QLabel()
        self.constraints.setWordWrap(True)
        self.constraints.setStyleSheet("color: #b26a00;")
        self.target = QComboBox()
        self.target.setToolTip("Constructor: the optimizer's defaults (restarts the run).\n"
                               "Group N: a live param_group, effective at the next step.")
        self.target_note = QLabel()
        self.target_note.setWordWrap(True)
        self.target_note.setStyleSheet("color: #888;")
        self.form = HparamForm()
        self.form.setValidator(self._validate)
        top = QFormLayout()
        top.addRow("Optimizer", self.combo)
        top.addRow("Edit", self.target)
        top.addRow("", self.target_note)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.summary)
        lay.addWidget(self.constraints)
        lay.addWidget(self.form)  # no scroll box of its own: the Optimizer dock scrolls as a whole
        self._name = ""
        self._spec_hparams: dict = {}
        self._groups: tuple = ()
        self._shown: tuple | None = None
        self._step = 0
        self._chosen_target: int | None = None  # what the user picked in "Edit" (None: the default)
        self.combo.currentTextChanged.connect(self._on_combo)
        self.target.currentIndexChanged.connect(self._on_target)
        guard(self.combo, self.target)  # the user's choice (ours are silent)
        self.form.valueChanged.connect(self._on_value)
        self.form.errorsChanged.connect(self._on_errors)

    def _validate(self, values: dict) -> str | None:
        try:
            catalogue.validate_hparams(self._name, values)
        except ValueError as e:
            return str(e)
        return None

    def target_group(self) -> int:
        data = self.target.currentData()
        return CONSTRUCTOR if data is None else int(data)

    def default_target(self) -> int:
        """Before the first step the constructor (what the seed's walkthrough edits: momentum
        set there is inherited by groups added later); after it, group 0 (a live edit that
        does not restart the run)."""
        return CONSTRUCTOR if self._step == 0 or not self._groups else 0

    def setState(self, name: str, spec_hparams: dict, groups: tuple, step: int = 0) -> None:
        """Show optimizer ``name``, the spec's constructor arguments, the live groups and the step."""
        changed = name != self._name
        self._name = name
        self._spec_hparams = dict(spec_hparams)
        self._step = step
        if changed:
            self._chosen_target = None
            self.combo.blockSignals(True)
            self._ensure_listed(name)
            self.combo.setCurrentText(name)
            self.combo.blockSignals(False)
            info = catalogue.info(name)
            self.summary.setText(info.summary)
            self.constraints.setText("\n".join(info.constraints))
            self.constraints.setVisible(bool(info.constraints))
        self._groups = groups
        if changed or self.target.count() != len(groups) + 1:
            self.target.blockSignals(True)
            self.target.clear()
            self.target.addItem("Constructor (defaults)", None)
            for g in groups:
                self.target.addItem(f"group {g.index}: {', '.join(g.names)}", g.index)
            self.target.blockSignals(False)
        want = self._chosen_target if self._chosen_target is not None else self.default_target()
        idx = 0 if want == CONSTRUCTOR else self.target.findData(want)
        if idx >= 0 and idx != self.target.currentIndex():
            self.target.blockSignals(True)
            self.target.setCurrentIndex(idx)
            self.target.blockSignals(False)
            changed = True
        g = self.target_group()
        self.target_note.setText("Edits restart the run from step 0 with these arguments." if g == CONSTRUCTOR
                                 else f"Edits change param_groups[{g}] live, from the next step on.")
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

    def invalidText(self) -> str:
        """One line for the status bar: the refused fields and the values still in force."""
        bad = self.form.invalidFields()
        if not bad:
            return ""
        where = "the constructor" if self.target_group() == CONSTRUCTOR else f"group {self.target_group()}"
        kept = ", ".join(f"{k} = {fmt_value(v)}" for k, (_, v) in bad.items())
        typed = ", ".join(f"{k} = {t}" for k, (t, _) in bad.items())
        return f"{typed} refused: {where} keeps {kept} until the field is fixed (Esc restores it)"

    @Slot()
    def _on_errors(self) -> None:
        self.invalidChanged.emit(self.invalidText())

    @Slot(int)
    def _on_target(self, _index: int) -> None:
        self._chosen_target = self.target_group()
        self._refresh_form(force=True)

    @Slot(str)
    def _on_combo(self, name: str) -> None:
        if name in (MORE, FROM_FILE):
            self.combo.blockSignals(True)
            self.combo.setCurrentText(self._name)  # the running optimizer stays shown
            self.combo.blockSignals(False)
            if name == MORE:
                self.loadCollections()
                QTimer.singleShot(0, self.combo.showPopup)  # the list, now with them
            else:
                self.fileRequested.emit()
        elif name and name != self._name:
            self.optimizerChosen.emit(name)

    # ----- names beyond torch.optim -----

    def loadCollections(self) -> None:
        """List every class of the installed collections; a skipped one greyed out, its reason
        as its tooltip (``optimlab optimizers`` says the same)."""
        if self._extras_loaded:
            return
        self._extras_loaded = True
        self.combo.removeItem(self.combo.findText(MORE))
        for found in extra_optimizers.listing():
            self._add(found.name, found.reason)

    def addNames(self, names) -> None:
        """Add optimizer names (a user file's classes) before the combo's last entries."""
        for name in names:
            if self.combo.findText(name) < 0:
                self._add(name)

    def _ensure_listed(self, name: str) -> None:
        """A session opened with a collection's or a file's class shows its name."""
        if self.combo.findText(name) >= 0:
            return
        if optimizer_names.parse(name).kind == "collection":
            self.loadCollections()
        if self.combo.findText(name) < 0:
            self._add(name)

    def _add(self, name: str, reason: str | None = None) -> None:
        at = self.combo.findText(FROM_FILE)
        if self.combo.findText(MORE) >= 0:
            at = self.combo.findText(MORE)
        self.combo.insertItem(at, name)
        if reason is not None:
            self.combo.model().item(at).setEnabled(False)
            self.combo.setItemData(at, f"Skipped: {name.rpartition('.')[2]} {reason}.", Qt.ItemDataRole.ToolTipRole)

    @Slot(str, object)
    def _on_value(self, name: str, value) -> None:
        g = self.target_group()
        if g == CONSTRUCTOR:
            self.defaultChanged.emit(name, value)
        else:
            self.groupValueChanged.emit(g, name, value)
