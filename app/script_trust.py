"""Asking before a session runs a user's Python script, and remembering the answer.

Agreements are kept per (real path, SHA-256) in QSettings, so a script that changed
is asked about again. They are loaded into ``core.trust`` at start (a runner process
started later receives them) and sent to the running runner when given.
"""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from core import trust

KEY = "trust/scripts"


def load_agreements(settings) -> None:
    """Give ``core.trust`` the agreements remembered in ``settings``."""
    for item in settings.value(KEY, []) or []:
        path, _, digest = str(item).rpartition("|")
        if path and len(digest) == 64:
            trust.trust(path, digest)


def remember(settings, path: str, digest: str) -> None:
    trust.trust(path, digest)
    items = [str(i) for i in (settings.value(KEY, []) or [])]
    entry = f"{path}|{digest}"
    if entry not in items:
        settings.setValue(KEY, items + [entry])
        settings.sync()


INTROS = {"task script": "This session trains a model defined by a Python script:",
          "optimizer file": "This optimizer is defined in a Python file:"}


def ask(parent: QWidget | None, path: str, digest: str, what: str = "task script") -> bool:
    """The question, with the script's absolute path and a short hash; True if the user agrees.
    ``what`` ("task script", "optimizer file") says what the script is for."""
    box = QMessageBox(QMessageBox.Icon.Warning, "Run this Python script?",
                      INTROS.get(what, INTROS["task script"]), QMessageBox.StandardButton.NoButton, parent)
    box.setInformativeText(f"{path}\nsha256 {digest[:trust.SHORT]}\n\nThe script runs with your permissions and "
                           "can do anything you can. Run it only if you trust where it came from. You will be "
                           "asked again if it changes.")
    run = box.addButton("Run script", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is run
