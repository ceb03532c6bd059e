"""The "Add param group" dialog: a new tensor joins the optimizer in its own group.

The same as the seed's ``optimizer.add_param_group({"params": weight2, "lr": 0.0001,
"nesterov": True})`` at the current step.
"""
from __future__ import annotations

import ast
import re

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel,
                               QLineEdit, QVBoxLayout)

from core import catalogue
from core.spec import AddGroup, ManualGrad, SpecError, TensorSpec
from widgets.problem_editor import parse_shape
from widgets.wheel_guard import guard


class AddGroupDialog(QDialog):
    """Asks for a tensor (name, shape, init, values, gradient) and group hyperparameters."""

    def __init__(self, optimizer: str, taken: set[str], parent=None, defaults: dict | None = None):
        super().__init__(parent)
        self.setWindowTitle("Add param group")
        self.optimizer = optimizer
        self.taken = taken
        # the live optimizer's defaults: add_param_group fills the group's missing keys from them,
        # so nesterov=True is fine when the constructor was given momentum=0.9
        self.defaults = dict(defaults or {})
        n = 2
        while f"weight{n}" in taken:
            n += 1
        self.name = QLineEdit(f"weight{n}")
        self.shape = QLineEdit("3, 3")
        self.init = QComboBox()
        self.init.addItems(["normal", "zeros", "ones", "uniform", "xavier_uniform", "values"])
        self.values = QLineEdit()
        self.values.setPlaceholderText("[[1, 2, 3], [4, 5, 6], [7, 8, 9]] (for init 'values')")
        self.grad = QCheckBox("manual gradient of ones (like the seed's weight.grad = torch.ones)")
        self.hparams = QLineEdit()
        self.hparams.setPlaceholderText("lr=0.0001, nesterov=True")
        self.error = QLabel()
        self.error.setStyleSheet("color: #d32f2f;")
        self.error.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Tensor name", self.name)
        form.addRow("Shape", self.shape)
        form.addRow("Init", self.init)
        form.addRow("Values", self.values)
        form.addRow("", self.grad)
        form.addRow("Group hyperparameters", self.hparams)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.result_action: AddGroup | None = None
        guard(self.init)
        self.resize(460, self.sizeHint().height())

    def parse_hparams(self, text: str) -> dict:
        info = catalogue.info(self.optimizer)
        out = {}
        for part in _split_top(text):
            if not part.strip():
                continue
            if "=" not in part:
                raise SpecError(f"Write hyperparameters as name=value, not {part.strip()!r}")
            k, v = (x.strip() for x in part.split("=", 1))
            hp = info.hparam(k)
            if hp is None:
                raise SpecError(f"{self.optimizer} has no hyperparameter {k!r}")
            out[k] = hp.parse(v)
        return out

    def build(self) -> AddGroup:
        """The action the dialog describes, or SpecError/ValueError with one sentence."""
        name = self.name.text().strip()
        if name in self.taken:
            raise SpecError(f"There is already a tensor named {name!r}")
        shape = parse_shape(self.shape.text(), name)
        values = None
        init = self.init.currentText()
        if init == "values":
            try:
                values = ast.literal_eval(self.values.text())
            except (ValueError, SyntaxError):
                raise SpecError("Values must be a nested list of numbers, e.g. [[1, 2], [3, 4]]") from None
        grad = ManualGrad("constant", 1.0) if self.grad.isChecked() else None
        t = TensorSpec(name, shape, init=init, values=values, grad=grad)
        t.check()
        hp = self.parse_hparams(self.hparams.text())
        known = catalogue.info(self.optimizer).defaults
        inherited = {k: v for k, v in self.defaults.items() if k in known and k not in hp}
        try:
            catalogue.validate_hparams(self.optimizer, {**inherited, **hp})
        except ValueError as e:
            raise SpecError(inherited_note(str(e), inherited)) from None
        return AddGroup((t,), hp)

    def _accept(self) -> None:
        try:
            self.result_action = self.build()
        except ValueError as e:
            self.error.setText(str(e))
            return
        self.accept()


def inherited_note(message: str, inherited: dict) -> str:
    """``message`` plus which of the defaults it names the group inherits (add_param_group
    fills a group's missing keys from the optimizer's defaults: the cause is not in sight)."""
    named = {k: v for k, v in inherited.items() if re.search(rf"\b{re.escape(k)}\b", message, re.IGNORECASE)}
    if not named:
        return message
    what = " and ".join(f"{k}={v!r}" for k, v in named.items())
    keys = " and ".join(named)
    return (f"{message.rstrip('.')}: this group inherits {what} from the optimizer's defaults "
            f"(set {keys} here, e.g. {next(iter(named))}=..., or in the Optimizer dock's constructor)")


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets ("betas=(0.9, 0.99), lr=1" -> two parts)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts
