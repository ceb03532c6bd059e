"""Training tasks in the window: the Problem dock's task page, the scheduler form, the
decision-boundary dock and "Open training script…".

Mixed into MainWindow (needs ``bridge``, ``replace_session``, ``show_error``, ``_mark``).
Every change builds a new session from the spec on the runner thread, as the Problem
dock's other edits do; refusals change nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from PySide6.QtWidgets import QComboBox, QFileDialog, QFormLayout, QStackedWidget, QVBoxLayout, QWidget

from core import edits, schedulers, trust
from core.task_spec import TaskSpec
from widgets.decision_view import DecisionView
from widgets.scheduler_form import SchedulerForm
from widgets.task_editor import TaskEditor
from widgets.wheel_guard import guard

from . import script_trust

TENSORS, TASK = 0, 1


def _scheduler_validator(n_groups_fn):
    def validate(name, params):
        # a throwaway optimizer with as many groups: the GUI never touches the live one
        groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": 0.1} for _ in range(max(1, n_groups_fn()))]
        return schedulers.validate_scheduler(name, params, torch.optim.SGD(groups))
    return validate


class TrainingUI:
    """The pieces of the window that deal with models trained on data."""

    def build_training(self, problem_editor) -> QWidget:
        """The Problem dock's widget: a mode switch over the tensor editor and the task editor."""
        self.task_editor = TaskEditor()
        self.problem_mode = QComboBox()
        self.problem_mode.addItems(["Hand-made tensors", "Training task (model + data)"])
        self.problem_mode.setToolTip("Optimize tensors you make by hand, or a model's parameters on data")
        self.problem_stack = QStackedWidget()
        self.problem_stack.addWidget(problem_editor)
        self.problem_stack.addWidget(self.task_editor)
        host = QWidget()
        form = QFormLayout()
        form.addRow("Problem", self.problem_mode)
        lay = QVBoxLayout(host)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(form)
        lay.addWidget(self.problem_stack, 1)
        self.problem_mode.currentIndexChanged.connect(self.on_problem_mode)
        guard(self.problem_mode)
        self.task_editor.taskEdited.connect(self.on_task_edited)
        self.task_editor.decayGroupsRequested.connect(self.on_decay_groups)
        self.task_editor.layerGroupsRequested.connect(
            lambda: self.replace_session(edits.set_fields, {"groups": ()}, on_ok=self._mark))
        self.task_editor.oneGroupRequested.connect(
            lambda: self.replace_session(edits.one_group, on_ok=self._mark))
        self.scheduler_form = SchedulerForm()
        self.scheduler_form.setSchedulers(schedulers.catalogue(), schedulers.skipped())
        self.scheduler_form.setRequiredFiller(schedulers.with_required)
        self.scheduler_form.setValidator(_scheduler_validator(
            lambda: len(self.snapshot.groups) if self.snapshot is not None else 1))
        self.scheduler_form.schedulerEdited.connect(self.on_scheduler_edited)
        self.decision = DecisionView()
        return host

    def sync_training(self, spec) -> None:
        """Show ``spec`` in the mode switch, the task editor and the scheduler form (no signals)."""
        is_task = spec.gradient.kind == "task"
        self.problem_mode.blockSignals(True)
        self.problem_mode.setCurrentIndex(TASK if is_task else TENSORS)
        self.problem_mode.blockSignals(False)
        self.problem_stack.setCurrentIndex(TASK if is_task else TENSORS)
        if is_task:
            self.task_editor.setTask(spec.gradient.task)
        self.scheduler_form.setScheduler(spec.scheduler)
        two_d = is_task and spec.gradient.task.two_d
        self.decision_dock.setEnabled(two_d)
        if two_d and not getattr(self, "_decision_raised", False):
            self.decision_dock.raise_()
        self._decision_raised = two_d

    def on_problem_mode(self, index: int) -> None:
        self.replace_session(edits.task_mode if index == TASK else edits.tensor_mode, on_ok=self._mark)

    def on_task_edited(self, task: TaskSpec) -> None:
        self.replace_session(edits.with_task, task, on_ok=self._mark)

    def on_decay_groups(self) -> None:
        """The common recipe: weights decay, biases and norms get weight_decay 0."""
        self.bridge.call(edits.decay_groups,
                         on_ok=lambda g: self.replace_session(edits.set_fields, {"groups": g}, on_ok=self._mark),
                         on_error=lambda msg, tb: self.show_error("Cannot regroup", msg, tb))

    def on_scheduler_edited(self, spec) -> None:
        self.replace_session(edits.set_fields, {"scheduler": spec}, on_ok=self._mark)

    def open_script_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open training script", "", "Python (*.py)")
        if path:
            self.open_script(path)

    def open_script(self, path) -> None:
        """A user script defining make_model, make_data and loss_fn opens as a task. Choosing the
        file is the user's agreement to run it (as it is now; a later change asks again)."""
        path = os.path.abspath(path)
        try:
            digest = trust.digest(path)
        except ValueError as e:
            self.show_error("Cannot open the script", str(e))
            return
        script_trust.remember(self.settings, path, digest)
        self.bridge.call(edits.trust_scripts, [(path, digest)])
        task = TaskSpec(kind="script", script=path)
        self.replace_session(edits.task_mode, task, on_ok=self._mark, fail_title="Cannot open the script",
                             about=Path(path).name)

    def draw_decision(self, s) -> None:
        self.decision.setDecision(s.decision)
