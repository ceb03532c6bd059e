"""Resume as session: a checkpoint opens in the main window at its step, for a task the user names.

The dialog asks for the task (a session spec's JSON file naming a built-in task, or a task
script) and, if the checkpoint does not say it, the step it was saved at. The runner reads
the checkpoint and builds the session (``core.edits.resume_checkpoint``): the GUI thread
touches no tensor. A refusal is one sentence and leaves the window's session as it was.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit,
                               QPushButton, QSpinBox, QWidget)

from core import edits

FROM_CHECKPOINT = -1  # the step box's special value: the checkpoint's own step
TASK_FILTER = "Task (*.json *.py);;Session spec (*.json);;Task script (*.py);;All files (*)"


class ResumeDialog(QDialog):
    """The task whose model the checkpoint holds, and the step (default: the checkpoint's own)."""

    def __init__(self, checkpoint, parent: QWidget | None = None):
        super().__init__(parent)
        self.checkpoint = str(checkpoint)
        self.setWindowTitle(f"Resume {Path(checkpoint).name} as a session")
        self.task_edit = QLineEdit()
        self.task_edit.setPlaceholderText("a session spec (.json) naming a task, or a task script (.py)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.task_edit, 1)
        row.addWidget(browse)
        self.step_spin = QSpinBox()
        self.step_spin.setRange(FROM_CHECKPOINT, 2 ** 31 - 1)
        self.step_spin.setSpecialValueText("the checkpoint's")
        self.step_spin.setValue(FROM_CHECKPOINT)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.task_edit.textChanged.connect(self._enable)
        form = QFormLayout(self)
        form.addRow("Task:", row)
        form.addRow("Saved at step:", self.step_spin)
        form.addRow(self.buttons)
        self._enable()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "The task whose model the checkpoint holds", "", TASK_FILTER)
        if path:
            self.task_edit.setText(path)

    def _enable(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.task_edit.text().strip()))

    @property
    def step(self) -> int | None:
        v = self.step_spin.value()
        return None if v == FROM_CHECKPOINT else v


def resume_into(window, checkpoint, task, step: int | None = None) -> None:
    """Build the resumed session on ``window``'s runner and show it (``window``: the MainWindow)."""
    if window.dirty and not window.confirm_discard():
        return
    name = Path(checkpoint).name

    def ok():
        window._set_document(None, f"{name} (resumed)")
        window.set_dirty(True)  # nothing on disk holds this session yet
    window.replace_session(edits.resume_checkpoint, str(checkpoint), str(task), step, on_ok=ok,
                           fail_title=f"Cannot resume {name}", about=name)


def ask_and_resume(window, checkpoint) -> ResumeDialog:
    """The dialog, non-blocking; on OK the window resumes the checkpoint."""
    dlg = ResumeDialog(checkpoint, window)

    def done(code):
        if code:
            resume_into(window, dlg.checkpoint, dlg.task_edit.text().strip(), dlg.step)
    dlg.finished.connect(done)
    dlg.open()
    window.resume_dialog = dlg  # tests fill it in
    return dlg
