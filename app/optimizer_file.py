"""Choosing an optimizer defined in the user's own Python file.

The file is Python code: it runs only after the same consent a task script gets
(``app.script_trust``, per path and SHA-256), in this process (the form is read from
the class) and in the runner (which steps it). Its ``torch.optim.Optimizer``
subclasses join the optimizer list and the first one is chosen.
"""
from __future__ import annotations

import os

from PySide6.QtWidgets import QFileDialog

from core import edits, extra_optimizers, trust
from core.spec import SpecError

FILTER = "Python files (*.py)"


def choose(win) -> None:
    """Ask for a file, then for consent; list its classes and choose the first.
    ``win``: the main window (``ask_trust``, ``bridge``, ``optimizer_panel``, ``show_error``)."""
    path, _ = QFileDialog.getOpenFileName(win, "Optimizer from a Python file", "", FILTER)
    if path:
        open_file(win, os.path.abspath(path))


def open_file(win, path: str) -> None:
    """Consent (unless already given for these bytes), then the file's optimizer classes."""
    title = "Cannot use this optimizer file"
    try:
        digest = trust.digest(path)
    except SpecError as e:
        win.show_error(title, str(e), about=path)
        return
    if (os.path.realpath(path), digest) not in trust.trusted():
        if not win.ask_trust(path, digest, "optimizer file"):
            return
        win.bridge.call(edits.trust_scripts, [(path, digest)])  # the runner steps it: it needs the agreement
    try:
        names = list(extra_optimizers.file_classes(path))
    except (SpecError, ValueError) as e:  # changed since it was hashed, or failed when run: one sentence
        win.show_error(title, str(e), about=path)
        return
    if not names:
        win.show_error(title, f"{path} defines no subclass of torch.optim.Optimizer", about=path)
        return
    win.optimizer_panel.addNames(names)
    win.on_optimizer_chosen(names[0])
