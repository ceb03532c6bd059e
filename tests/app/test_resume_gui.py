"""Resume as session: a checkpoint opens in the main window at its step and steps on as the
script that wrote it did; a checkpoint of another model is refused in one sentence."""
from __future__ import annotations

import json

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.checkpoint_view import open_checkpoint_window
from core import spec as specmod
from tests.core.test_resume import TASK, plain_run, session_spec

from .conftest import manual_spec, wait_step

LEFT = Qt.MouseButton.LeftButton


def _files(tmp_path, save_at=7, steps=10, task=TASK):
    ck = tmp_path / "ck.pt"
    model, opt, _ = plain_run("Adam", {"lr": 0.01}, None, steps, save_at=save_at, path=ck, task=task)
    spec = tmp_path / "task.json"
    spec.write_text(json.dumps(specmod.document(session_spec("Adam", {"lr": 0.01}, None))))
    return ck, spec, model


def _resume(qtbot, win, ck, spec):
    view = open_checkpoint_window(win, ck)
    qtbot.addWidget(view)
    assert view.resume_button.isEnabled()
    qtbot.mouseClick(view.resume_button, LEFT)
    dlg = win.resume_dialog
    dlg.task_edit.setText(str(spec))
    dlg.accept()
    return view


def test_a_checkpoint_resumed_from_its_window_stands_at_its_step_and_steps_on_as_the_script(make_window, qtbot,
                                                                                             tmp_path):
    ck, spec, model = _files(tmp_path)
    win = make_window(manual_spec())
    assert any(a.text() == "Resume checkpoint as session…" for a in win.menuBar().actions()[0].menu().actions())
    _resume(qtbot, win, ck, spec)
    wait_step(qtbot, win, 7)
    qtbot.waitUntil(lambda: win.windowTitle() == "ck.pt (resumed) * — optimlab")  # unsaved: Save asks where
    assert win.timeline_strip.slider.minimum() == 7  # no step before the checkpoint's to rewind to
    qtbot.waitUntil(lambda: "Resumed ck.pt at step 7 (from step)" in win.statusBar().currentMessage())
    win.step(3)
    wait_step(qtbot, win, 10)
    shown = {t.name: t.value.values for t in win.snapshot.tensors}
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(shown[n], p.detach().numpy(), err_msg=n)


def test_a_checkpoint_of_another_model_is_refused_in_one_sentence_and_the_session_stays(make_window, qtbot,
                                                                                         tmp_path):
    from core.task_spec import TaskSpec
    other = TaskSpec("mlp", dataset="spirals", n_samples=60, hidden=(16,), activation="tanh", batch_size=16, seed=6)
    ck, spec, _ = _files(tmp_path, task=other)
    win = make_window(manual_spec())
    win.step(2)
    wait_step(qtbot, win, 2)
    win.set_dirty(False)  # as if saved: no question about discarding it
    _resume(qtbot, win, ck, spec)
    qtbot.waitUntil(lambda: bool(win.findChildren(QMessageBox)))
    box = win.findChildren(QMessageBox)[-1]
    assert "fc1.weight has shape [16, 2] in the checkpoint" in box.text() and "\n" not in box.text()
    assert win.snapshot.step == 2 and [t.name for t in win.snapshot.tensors] == ["weight"]


def test_the_dialogs_step_field_gives_the_step_a_checkpoint_does_not_say(make_window, qtbot, tmp_path):
    import torch
    ck = tmp_path / "ck.pt"
    plain_run("SGD", {"lr": 0.05}, None, 4, save_at=4, path=ck)
    saved = torch.load(ck, weights_only=True)
    torch.save({"model": saved["model"], "optimizer": saved["optimizer"]}, ck)  # no step anywhere
    spec = tmp_path / "task.json"
    spec.write_text(json.dumps(specmod.document(session_spec("SGD", {"lr": 0.05}, None))))
    win = make_window(manual_spec())
    view = open_checkpoint_window(win, ck)
    qtbot.addWidget(view)
    qtbot.mouseClick(view.resume_button, LEFT)
    dlg = win.resume_dialog
    dlg.task_edit.setText(str(spec))
    dlg.step_spin.setValue(4)
    dlg.accept()
    wait_step(qtbot, win, 4)
    assert win.snapshot.start_step == 4 and [t.name for t in win.snapshot.tensors][0] == "fc1.weight"
