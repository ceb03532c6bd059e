"""Files from the window: sessions, optimizer state_dicts, refusals, drops, recent files, closing."""
from __future__ import annotations

import os

import numpy as np
import torch
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from core import files

from .conftest import manual_spec, on_runner, quadratic_spec, shown_values, wait_idle, wait_step
from . import probes

LEFT = Qt.MouseButton.LeftButton


def answer(monkeypatch, button):
    """Make every QMessageBox.exec (the unsaved-changes question) answer ``button``."""
    asked = []

    def exec_(box):
        asked.append(box.text())
        return button
    monkeypatch.setattr(QMessageBox, "exec", exec_)
    return asked


def step_n(qtbot, win, n):
    target = win.snapshot.step + n
    win.controls.setStepCount(n)
    qtbot.mouseClick(win.controls.stepNButton, LEFT)
    wait_step(qtbot, win, target)


def everything_shown(win) -> dict:
    """Every array the window draws for every tensor: value, grad and state entries."""
    out = {}
    for t in win.snapshot.tensors:
        out[(t.name, "value")] = np.array(t.value.values)
        if t.grad is not None:
            out[(t.name, "grad")] = np.array(t.grad.values)
        for k, v in t.state.items():
            out[(t.name, k)] = np.array(getattr(v, "values", v))
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=str(k))


def save_and_wait(qtbot, win, path):
    done = []
    win.save_session_to(path, on_done=lambda: done.append(True))
    qtbot.waitUntil(lambda: bool(done))


def test_saved_session_reopens_and_continues_identically(make_window, qtbot, tmp_path, monkeypatch):
    answer(monkeypatch, QMessageBox.StandardButton.Discard)
    win = make_window(quadratic_spec(shape=(4, 4)))
    step_n(qtbot, win, 5)
    path = tmp_path / "run.optimlab"
    save_and_wait(qtbot, win, path)
    assert not win.dirty and win.path == path
    assert win.windowTitle().startswith("run.optimlab ")
    step_n(qtbot, win, 7)
    continued = everything_shown(win)

    win.open_path(path)
    qtbot.waitUntil(lambda: win.snapshot.step == 5 and not win.dirty)
    step_n(qtbot, win, 7)
    assert_same(everything_shown(win), continued)


def test_saved_optimizer_state_dict_loads_back(make_window, qtbot, tmp_path):
    win = make_window(quadratic_spec(shape=(4, 4)))
    step_n(qtbot, win, 5)
    path = tmp_path / "optimizer.pt"
    win.save_torch_to(files.save_optimizer, path)
    qtbot.waitUntil(lambda: "Saved optimizer.pt" in win.statusBar().currentMessage())
    saved = torch.load(path, weights_only=True)
    assert saved["state"][0]["step"].item() == 5
    step_n(qtbot, win, 3)

    win.open_path(path)
    qtbot.waitUntil(lambda: "Loaded the optimizer state_dict" in win.statusBar().currentMessage())
    wait_idle(qtbot, win)
    assert win.snapshot.step == 8  # the parameters stay; the optimizer state is the file's
    np.testing.assert_array_equal(shown_values(win, "exp_avg"), saved["state"][0]["exp_avg"].numpy())
    np.testing.assert_array_equal(shown_values(win, "exp_avg_sq"), saved["state"][0]["exp_avg_sq"].numpy())
    assert win.state_tree.text_of(("state", "0", "step")) == "step: 5.0"
    assert str(path.resolve()) in win.recent()


def _plain_state(opt_class, groups, **hp) -> dict:
    """A state_dict made by a plain script: one step with gradients of ones."""
    opt = opt_class(groups, **hp)
    for g in opt.param_groups:
        for p in g["params"]:
            p.grad = torch.ones_like(p)
    opt.step()
    return opt.state_dict()


def _refused(qtbot, win, path, *words):
    before = everything_shown(win)
    journal = on_runner(win, probes.journal)
    win.open_path(path)
    qtbot.waitUntil(lambda: win.last_error != "")
    wait_idle(qtbot, win)
    for w in words:
        assert w in win.last_error
    assert_same(everything_shown(win), before)
    assert on_runner(win, probes.journal) == journal


def test_adam_state_into_sgd_session_is_refused_naming_the_mismatch(make_window, qtbot, tmp_path):
    win = make_window(manual_spec(hparams={"lr": 0.1, "momentum": 0.9}))
    step_n(qtbot, win, 2)
    path = tmp_path / "adam.pt"
    torch.save(_plain_state(torch.optim.Adam, [torch.zeros(2, 2, requires_grad=True)]), path)
    _refused(qtbot, win, path, "Adam", "SGD")


def test_state_with_wrong_group_count_is_refused_naming_the_counts(make_window, qtbot, tmp_path):
    win = make_window(manual_spec(hparams={"lr": 0.1, "momentum": 0.9}))
    step_n(qtbot, win, 2)
    path = tmp_path / "two_groups.pt"
    groups = [{"params": [torch.zeros(2, 2, requires_grad=True)]},
              {"params": [torch.zeros(2, 2, requires_grad=True)]}]
    torch.save(_plain_state(torch.optim.SGD, groups, lr=0.1, momentum=0.9), path)
    _refused(qtbot, win, path, "2 parameter group(s)", "has 1")


class _Evil:
    """Unpickling this would create a folder: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_malicious_pickle_is_refused_and_never_executed(make_window, qtbot, tmp_path):
    win = make_window(manual_spec())
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state": {}, "param_groups": [], "payload": _Evil(str(marker))}, path)
    _refused(qtbot, win, path, "Refused")
    assert not marker.exists()


def _urls(*paths) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def test_dropping_a_session_file_on_the_window_opens_it(make_window, qtbot, tmp_path):
    win = make_window(quadratic_spec(shape=(4, 4)))
    step_n(qtbot, win, 4)
    path = tmp_path / "dropped.optimlab"
    save_and_wait(qtbot, win, path)
    expected = everything_shown(win)
    qtbot.mouseClick(win.controls.resetButton, LEFT)
    wait_step(qtbot, win, 0)

    mime = _urls(path)
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, LEFT, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(win, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, LEFT, Qt.KeyboardModifier.NoModifier)
    win.dirty = False  # the reset above is not worth a question here
    QApplication.sendEvent(win, drop)
    qtbot.waitUntil(lambda: win.snapshot.step == 4 and win.path == path)
    assert_same(everything_shown(win), expected)


def test_recent_files_list_opened_files(make_window, qtbot, tmp_path, settings_path):
    win = make_window(quadratic_spec(shape=(4, 4)))
    a, b = tmp_path / "a.optimlab", tmp_path / "b.json"
    save_and_wait(qtbot, win, a)
    save_and_wait(qtbot, win, b)
    assert win.recent()[:2] == [str(b.resolve()), str(a.resolve())]  # saved files count too
    win.open_path(a)
    qtbot.waitUntil(lambda: win.recent()[:1] == [str(a.resolve())])
    assert win.path == a and not win.dirty
    assert win.recent()[:2] == [str(a.resolve()), str(b.resolve())]
    assert [act.text() for act in win.recent_menu.actions()][:2] == [str(a.resolve()), str(b.resolve())]
    assert win.recent_menu.isEnabled()

    # the list survives a restart, and its entries open
    win.dirty = False
    win.close()
    win2 = make_window(quadratic_spec(shape=(2, 2)))
    entries = {act.text(): act for act in win2.recent_menu.actions()}
    assert str(a.resolve()) in entries
    entries[str(a.resolve())].trigger()
    qtbot.waitUntil(lambda: win2.path == a and win2.snapshot.tensor("weight").value.shape == (4, 4))


def test_closing_with_unsaved_changes_asks_and_cancel_keeps_the_window(make_window, qtbot, monkeypatch):
    win = make_window(manual_spec())
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    assert win.dirty and win.windowTitle().startswith("untitled *")
    asked = answer(monkeypatch, QMessageBox.StandardButton.Cancel)
    assert not win.close()
    assert asked and "unsaved changes" in asked[0]
    assert win.isVisible() and win.bridge.runner.alive
    qtbot.mouseClick(win.controls.stepButton, LEFT)  # still usable
    wait_step(qtbot, win, 2)


def test_save_in_the_close_question_saves_then_closes(make_window, qtbot, monkeypatch, tmp_path):
    win = make_window(manual_spec())
    path = tmp_path / "kept.optimlab"
    save_and_wait(qtbot, win, path)
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    assert win.dirty
    answer(monkeypatch, QMessageBox.StandardButton.Save)
    assert win.close()
    assert not win.bridge.runner.alive
    from core import session_file
    assert session_file.load_session(path).step_count == 1


def test_save_in_the_close_question_of_an_untitled_session_asks_where_then_closes(
        make_window, qtbot, monkeypatch, tmp_path):
    win = make_window(manual_spec())
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    assert win.dirty and win.path is None
    target = tmp_path / "untitled"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    answer(monkeypatch, QMessageBox.StandardButton.Save)
    assert win.close()
    assert not win.bridge.runner.alive
    from core import session_file
    assert session_file.load_session(target.with_suffix(".optimlab")).step_count == 1


def test_closing_while_running_stops_the_runner_thread(make_window, qtbot, monkeypatch):
    win = make_window(quadratic_spec(shape=(64, 64)))
    qtbot.mouseClick(win.controls.runButton, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.running and win.snapshot.step > 0)
    answer(monkeypatch, QMessageBox.StandardButton.Discard)
    assert win.close()
    assert not win.bridge.runner.alive
    assert not win.bridge.timer.isActive()
