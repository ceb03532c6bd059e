"""Starting, New, the title and Save: what a new user meets in the first minute."""
from __future__ import annotations

import json
import shutil

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFileDialog

from app.new_dialog import NewSessionDialog
from app.startup import EXAMPLES, RUNNER_PRELOAD, peek_spec, resolve
from core import session_file
from core.cli import example_paths

from .conftest import wait_step

LEFT = Qt.MouseButton.LeftButton


def no_dialog(monkeypatch):
    """Fail if Save (Ctrl+S) asks where: it must save to the session's own file."""
    def refuse(*a, **k):
        raise AssertionError("Save asked for a file name")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", refuse)


def press(win, key, mods=Qt.KeyboardModifier.NoModifier):
    win.tensor_panel.setFocus()
    QTest.keyClick(win, key, mods)


def test_new_offers_an_empty_problem_and_every_example_with_a_picture(make_window, qtbot):
    win = make_window()
    press(win, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: getattr(win, "new_session_dialog", None) is not None
                    and win.new_session_dialog.isVisible())
    dlg = win.new_session_dialog
    assert dlg.names() == [NewSessionDialog.EMPTY] + list(example_paths())
    for name in dlg.names():
        pic, text = dlg.entry(name)
        assert not pic.isNull() and pic.width() >= 100, name
        assert text.startswith("<b>") and "." in text, name
    dlg.choose("adam_rosenbrock")
    qtbot.waitUntil(lambda: win.snapshot.optimizer == "Adam" and win.snapshot.step == 400)
    assert win.windowTitle() == "adam_rosenbrock (example) — optimlab"

    win.new_dialog()
    win.new_session_dialog.choose(NewSessionDialog.EMPTY)
    qtbot.waitUntil(lambda: win.snapshot.step == 0 and win.snapshot.optimizer == "SGD")
    qtbot.waitUntil(lambda: not win.bridge.pending)  # the answer (the new spec) follows the snapshot
    assert [(t.name, t.value.shape) for t in win.snapshot.tensors] == [("weight", (2, 2))]
    assert win.windowTitle() == "untitled — optimlab" and win.path is None
    assert win.problem.table.rowCount() == 1


def test_the_start_screen_shows_at_start_unless_turned_off(make_window, qtbot, settings_path):
    win = make_window(bare=True)
    win.open_initial(EXAMPLES / "seed_walkthrough.json", "seed_walkthrough", start_screen=True)
    qtbot.waitUntil(lambda: getattr(win, "new_session_dialog", None) is not None
                    and win.new_session_dialog.isVisible())
    win.new_session_dialog.show_at_start.setChecked(False)
    win.new_session_dialog.reject()
    win.close()
    win2 = make_window(bare=True)
    win2.open_initial(EXAMPLES / "seed_walkthrough.json", "seed_walkthrough", start_screen=True)
    qtbot.waitUntil(lambda: win2.snapshot.step == 51 and win2._opening is None)
    assert getattr(win2, "new_session_dialog", None) is None


def test_a_file_opened_at_start_is_named_in_the_title_and_ctrl_s_saves_to_it(make_window, qtbot, tmp_path,
                                                                          monkeypatch):
    path = tmp_path / "mine.json"
    shutil.copy(EXAMPLES / "seed_walkthrough.json", path)
    win = make_window(bare=True)
    assert win.windowTitle() == "untitled — optimlab"
    win.open_initial(path)
    qtbot.waitUntil(lambda: win.snapshot.step == 51 and win._opening is None)
    assert win.windowTitle() == "mine.json — optimlab"
    assert win.problem.table.item(0, 0).text() == "weight"  # drawn once open, not the stand-in

    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 52)
    assert win.windowTitle() == "mine.json * — optimlab"
    no_dialog(monkeypatch)
    press(win, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not win.dirty)
    assert win.windowTitle() == "mine.json — optimlab"
    saved = json.loads(path.read_text())
    assert sum(a["n"] for a in saved["journal"] if a["op"] == "step") == 52


def test_save_as_asks_and_an_example_is_never_saved_over(make_window, qtbot, tmp_path, monkeypatch):
    win = make_window()
    win.open_example("seed_walkthrough")
    qtbot.waitUntil(lambda: win.snapshot.step == 51 and win.windowTitle().startswith("seed_walkthrough"))
    before = (EXAMPLES / "seed_walkthrough.json").read_text()
    asked = []
    target = tmp_path / "copy.optimlab"

    def ask(*a, **k):
        asked.append(a)
        return str(target), ""
    monkeypatch.setattr(QFileDialog, "getSaveFileName", ask)
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 52)
    press(win, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # an example: Save asks where
    qtbot.waitUntil(lambda: target.exists() and not win.dirty)
    assert len(asked) == 1 and (EXAMPLES / "seed_walkthrough.json").read_text() == before
    assert win.windowTitle() == "copy.optimlab — optimlab" and win.path == target

    other = tmp_path / "other.optimlab"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (asked.append(a), (str(other), ""))[1])
    win.save_session_as()  # Save As always asks, even with a file
    qtbot.waitUntil(lambda: other.exists() and win.path == other)
    assert len(asked) == 2
    assert session_file.load_session(other).step_count == 52


def test_start_reads_the_spec_without_building_and_uses_the_runners_preload():
    spec = peek_spec(EXAMPLES / "moons_mlp.json")
    assert spec.gradient.task.dataset == "moons"
    assert peek_spec(EXAMPLES / "nothing.json") is None
    assert resolve("sparse_adam") == (EXAMPLES / "sparse_adam.json", "sparse_adam")
    from multiprocessing import forkserver

    from core import runner_process
    runner_process.context()  # what the runner preloads, the early start preloads too
    assert set(forkserver._forkserver._preload_modules) <= set(RUNNER_PRELOAD)


def test_a_double_click_opens_an_entry_once_the_button_is_released(qtbot, settings_path):
    from PySide6.QtCore import QSettings
    dlg = NewSessionDialog(QSettings(str(settings_path), QSettings.Format.IniFormat))
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    row = dlg.names().index("moons_mlp")
    pos = dlg.list.visualItemRect(dlg.list.item(row)).center()
    qtbot.mouseClick(dlg.list.viewport(), LEFT, pos=pos)
    qtbot.mouseDClick(dlg.list.viewport(), LEFT, pos=pos)  # QTest sends the double-click alone...
    assert dlg.isVisible()  # ...and the dialog stays until the button comes up
    with qtbot.waitSignal(dlg.chosen) as sig:
        qtbot.mouseRelease(dlg.list.viewport(), LEFT, pos=pos)
    assert sig.args == ["moons_mlp"] and not dlg.isVisible()
