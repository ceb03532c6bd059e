"""The "Task" dock: edit a TaskSpec (model, data, batches, evaluation, seed).

Every user edit rebuilds the task from the visible fields with ``dataclasses.replace`` and
runs ``TaskSpec.check()``. A task that fails is not emitted: its sentence shows in red and
the last good task stays current. Fields that do not apply to the chosen kind are hidden
and keep their last good value. ``setTask`` fills the widgets silently.
"""
from __future__ import annotations

import re
from dataclasses import replace

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QFrame, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QScrollArea,
                               QVBoxLayout, QWidget)

from core.task_spec import (ACTIVATIONS, DATASETS, DEFAULT_HIDDEN, TASK_KINDS, TWO_D_KINDS,
                            TaskSpec)
from widgets.wheel_guard import guard_all

HIDDEN_KINDS = tuple(DEFAULT_HIDDEN)  # kinds with hidden layers (or conv channels)
GENERATED_KINDS = ("linear_regression",) + TWO_D_KINDS  # data made from n_samples / noise

_KIND_TIPS = {
    "linear_regression": "Fit a linear model to noisy linear data (MSE loss)",
    "logistic_regression": "A linear classifier of a 2-D data set (cross-entropy)",
    "mlp": "A multilayer perceptron classifying a 2-D data set",
    "digits_mlp": "A multilayer perceptron on the 8x8 digits (1,797 images)",
    "digits_cnn": "A small convolutional net on the 8x8 digits",
    "script": "Your own Python file defining the model, data and loss",
}


def parse_hidden(text: str) -> tuple[int, ...]:
    """Read "16, 16", "16 16" or "(16, 16)"; empty means the kind's default."""
    s = text.strip().strip("()[] ")
    parts = [p for p in re.split(r"[,\s]+", s) if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"Invalid hidden sizes: {text.strip()!r} "
                         "(whole numbers from 1 to 4096, like 16, 16)") from None


def hidden_text(hidden: tuple[int, ...]) -> str:
    return ", ".join(map(str, hidden))


def _number(text: str, kind: type):
    """``kind(text)``, or the text itself so that ``TaskSpec.check`` names the bad field."""
    t = text.strip()
    try:
        return kind(t)
    except ValueError:
        if kind is int:  # "1e3" and "10.0" are whole numbers too
            try:
                f = float(t)
            except ValueError:
                return t
            return int(f) if f.is_integer() else t
        return t


def _fmt(v) -> str:
    if isinstance(v, float):
        r = repr(v)
        return r if len(r) <= 12 else f"{v:.10g}"
    return str(v)


class TaskEditor(QWidget):
    """Editor of a TaskSpec; emits ``taskEdited(TaskSpec)`` for each valid user edit."""

    taskEdited = Signal(object)
    decayGroupsRequested = Signal()
    layerGroupsRequested = Signal()
    oneGroupRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._task = TaskSpec()
        self._loading = False
        self._line_edits: list[QLineEdit] = []
        self._build_ui()
        self.setTask(self._task)

    # ----- public API -----

    def task(self) -> TaskSpec:
        """The last valid task (set by ``setTask`` or by a user edit)."""
        return self._task

    def setTask(self, task: TaskSpec) -> None:
        """Show ``task`` without emitting."""
        self._loading = True
        self._task = task
        self.kind.setCurrentIndex(max(0, self.kind.findText(task.kind)))
        self.script.setText(task.script)
        self.script.setModified(False)
        self.script.setToolTip(task.script or self._script_tip)
        self.dataset.setCurrentIndex(max(0, self.dataset.findText(task.dataset)))
        self.n_samples.setText(_fmt(task.n_samples))
        self.noise.setText(_fmt(task.noise))
        self.n_features.setText(_fmt(task.n_features))
        self.hidden.setText(hidden_text(task.hidden))
        self.activation.setCurrentIndex(max(0, self.activation.findText(task.activation)))
        self.batch_size.setText(_fmt(task.batch_size))
        self.shuffle.setChecked(bool(task.shuffle))
        self.val_fraction.setText(_fmt(task.val_fraction))
        self.eval_every.setText(_fmt(task.eval_every))
        self.seed.setText(_fmt(task.seed))
        for ed in self._line_edits:
            ed.setModified(False)
            ed.setCursorPosition(0)
        self.script.end(False)  # the file name is the telling part of a long path
        self._update_rows()
        self._show_error("")
        self._loading = False

    @Slot(str)
    def setScriptPath(self, path: str) -> None:
        """Set the script path as if the user had picked it (switches the kind to script)."""
        self.script.setText(path)
        self.script.setToolTip(path or self._script_tip)
        if self.kind.currentText() != "script":
            self.kind.setCurrentText("script")  # commits through currentIndexChanged
        else:
            self._commit()

    def setLocked(self, locked: bool) -> None:
        """Read-only while a run is in progress (scrolling still works)."""
        self._content.setEnabled(not locked)
        self._locked_note.setVisible(locked)

    def isLocked(self) -> bool:
        return not self._content.isEnabled()

    def errorText(self) -> str:
        return self.error.text()

    def isRowShown(self, field: QWidget) -> bool:
        """Whether the form row of ``field`` is shown for the current kind."""
        form = self._form if self._form.indexOf(field) >= 0 else self._tform
        return form.isRowVisible(field)

    # ----- layout -----

    def _build_ui(self) -> None:
        self._content = QWidget()
        col = QVBoxLayout(self._content)
        col.setContentsMargins(4, 4, 4, 4)

        box = QGroupBox("Task")
        self._form = form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)

        self.kind = QComboBox()
        for k in TASK_KINDS:
            self.kind.addItem(k)
            self.kind.setItemData(self.kind.count() - 1, _KIND_TIPS.get(k, ""), Qt.ItemDataRole.ToolTipRole)
        self.script = QLineEdit()
        self.script.setPlaceholderText("path/to/task.py")
        self._script_tip = "A trusted Python file defining make_model(), make_data() and loss_fn(output, target)"
        self.script.setToolTip(self._script_tip)
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self._browse)
        self._script_row = QWidget()
        row = QHBoxLayout(self._script_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.script, 1)
        row.addWidget(self.browse)
        self.dataset = QComboBox()
        self.dataset.addItems(DATASETS)
        self.n_samples = self._line("Number of generated samples (4 to 100,000)")
        self.noise = self._line("Standard deviation of the noise added to the data (>= 0)")
        self.n_features = self._line("Inputs of the linear model (1 to 1000)")
        self.hidden = self._line("Sizes of the hidden layers, like 16, 16; empty for the default")
        self.activation = QComboBox()
        self.activation.addItems(ACTIVATIONS)
        self.batch_size = self._line("Samples per optimizer step (>= 1)")
        self.shuffle = QCheckBox("shuffle every epoch")
        self.val_fraction = self._line("Share of the data held out for validation (between 0 and 1)")
        self.eval_every = self._line("Evaluate on the validation set every K steps")
        self.seed = self._line("Seeds data, initial weights and batch order (a whole number >= 0)")
        self._hidden_label = QLabel("hidden")

        form.addRow("kind", self.kind)
        form.addRow("script", self._script_row)
        form.addRow("data set", self.dataset)
        form.addRow("samples", self.n_samples)
        form.addRow("noise", self.noise)
        form.addRow("features", self.n_features)
        form.addRow(self._hidden_label, self.hidden)
        form.addRow("activation", self.activation)
        col.addWidget(box)

        box = QGroupBox("Training")
        tform = QFormLayout(box)
        tform.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        tform.addRow("batch size", self.batch_size)
        tform.addRow("", self.shuffle)
        tform.addRow("validation", self.val_fraction)
        tform.addRow("eval every", self.eval_every)
        tform.addRow("seed", self.seed)
        self._tform = tform
        col.addWidget(box)

        box = QGroupBox("Parameter groups")
        glay = QVBoxLayout(box)
        # short texts (the whole story in the tooltips): longer ones clipped the dock at 1024x700
        self.decay_button = QPushButton("Weights, biases (no decay)")
        self.decay_button.setToolTip("Two param_groups: weights, and biases with weight_decay=0")
        self.layer_button = QPushButton("One group per layer")
        self.layer_button.setToolTip("One param_group for the parameters of each layer")
        self.one_button = QPushButton("One group for all (LBFGS)")
        self.one_button.setToolTip("A single param_group holding every parameter of the model "
                                   "(what LBFGS needs)")
        for b in (self.decay_button, self.layer_button, self.one_button):
            b.setStyleSheet("text-align: left; padding: 3px 6px;")
            glay.addWidget(b)
        self.decay_button.clicked.connect(self.decayGroupsRequested)
        self.layer_button.clicked.connect(self.layerGroupsRequested)
        self.one_button.clicked.connect(self.oneGroupRequested)
        col.addWidget(box)
        col.addStretch(1)

        self.kind.currentIndexChanged.connect(self._on_kind_changed)
        self.dataset.currentIndexChanged.connect(self._commit)
        self.activation.currentIndexChanged.connect(self._commit)
        self.shuffle.toggled.connect(self._commit)
        for ed in self._line_edits + [self.script]:
            ed.editingFinished.connect(self._on_text_done)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self._content)
        self._locked_note = QLabel("Locked while a run is in progress.")
        self._locked_note.setStyleSheet("color: #777; padding: 2px 4px;")
        self._locked_note.hide()
        self.error = QLabel()
        self.error.setStyleSheet("color: #c62828; padding: 2px 4px;")
        self.error.setWordWrap(True)  # a long message must not widen the dock
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        outer.addWidget(self._locked_note)
        outer.addWidget(scroll, 1)
        outer.addWidget(self.error)
        guard_all(self)

    def _line(self, tip: str) -> QLineEdit:
        ed = QLineEdit()
        ed.setToolTip(tip)
        self._line_edits.append(ed)
        return ed

    def _update_rows(self) -> None:
        kind = self.kind.currentText()
        form = self._form
        form.setRowVisible(self._script_row, kind == "script")
        form.setRowVisible(self.dataset, kind in TWO_D_KINDS)
        form.setRowVisible(self.n_samples, kind in GENERATED_KINDS)
        form.setRowVisible(self.noise, kind in GENERATED_KINDS)
        form.setRowVisible(self.n_features, kind == "linear_regression")
        form.setRowVisible(self.hidden, kind in HIDDEN_KINDS)
        form.setRowVisible(self.activation, kind in HIDDEN_KINDS)
        self._tform.setRowVisible(self.val_fraction, kind != "script")
        self._hidden_label.setText("channels" if kind == "digits_cnn" else "hidden")
        default = DEFAULT_HIDDEN.get(kind, ())
        self.hidden.setPlaceholderText(f"default: {hidden_text(default)}" if default else "")
        self.hidden.setToolTip("Channels of each conv layer (1 to 3), like 8, 16; empty for the default"
                               if kind == "digits_cnn" else
                               "Sizes of the hidden layers, like 16, 16; empty for the default")

    # ----- edits -----

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Task script", self.script.text(), "Python (*.py)")
        if path:
            self.setScriptPath(path)

    def _on_kind_changed(self, *_) -> None:
        self._update_rows()
        self._commit()

    def _on_text_done(self) -> None:
        ed = self.sender()
        if isinstance(ed, QLineEdit) and ed.isModified():
            ed.setModified(False)
            self._commit()

    def _build(self) -> TaskSpec:
        """A task from the visible fields; hidden ones keep the last good value."""
        kind = self.kind.currentText()
        old = self._task
        changes: dict[str, object] = {"kind": kind, "batch_size": _number(self.batch_size.text(), int),
                                      "shuffle": self.shuffle.isChecked(),
                                      "eval_every": _number(self.eval_every.text(), int),
                                      "seed": _number(self.seed.text(), int)}
        changes["script"] = self.script.text().strip() if kind == "script" else ""
        if kind != "script":
            changes["val_fraction"] = _number(self.val_fraction.text(), float)
        if kind in TWO_D_KINDS:
            changes["dataset"] = self.dataset.currentText()
        if kind in GENERATED_KINDS:
            changes["n_samples"] = _number(self.n_samples.text(), int)
            changes["noise"] = _number(self.noise.text(), float)
        if kind == "linear_regression":
            changes["n_features"] = _number(self.n_features.text(), int)
        changes["hidden"] = parse_hidden(self.hidden.text()) if kind in HIDDEN_KINDS else ()
        if kind in HIDDEN_KINDS:
            changes["activation"] = self.activation.currentText()
        return replace(old, **changes)

    def _commit(self, *_) -> None:
        if self._loading:
            return
        try:
            new = self._build()
            new.check()
        except ValueError as e:
            self._show_error(str(e))
            return
        self._show_error("")
        if new != self._task:
            self._task = new
            self.taskEdited.emit(new)

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setToolTip(text)
        self.error.setVisible(bool(text))
