"""What goes wrong is shown, never swallowed, and the window stays usable; the layout persists."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from core.session import Session
from core.spec import GradientSpec, SessionSpec, TensorSpec
from widgets.problem_editor import SHAPE

from . import probes
from .conftest import on_runner, quadratic_spec, type_into_cell, wait_idle, wait_step

LEFT = Qt.MouseButton.LeftButton


def visible_boxes(win):
    return [b for b in win.findChildren(QMessageBox) if b.isVisible()]


def test_error_inside_the_run_is_shown_with_its_traceback_and_the_window_stays_usable(make_window, qtbot):
    win = make_window(quadratic_spec(shape=(4, 4)))
    on_runner(win, probes.break_loss)
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    qtbot.waitUntil(lambda: "boom from the objective" in win.last_error)
    assert win.last_error == "RuntimeError: boom from the objective"
    assert win.snapshot.error is not None and not win.snapshot.running
    (box,) = visible_boxes(win)
    assert "boom from the objective" in box.text()
    assert "Traceback" in box.detailedText() and "_boom" in box.detailedText()
    assert "boom" in win.statusBar().currentMessage()

    # the user reads it, closes it, fixes the cause and carries on
    qtbot.mouseClick(box.button(QMessageBox.StandardButton.Ok), LEFT)
    qtbot.waitUntil(lambda: not visible_boxes(win))
    on_runner(win, probes.mend_loss)
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    assert win.snapshot.error is None
    assert not visible_boxes(win)  # the old error is not shown again


def test_a_killed_runner_process_stops_the_run_not_the_app_and_reset_starts_again(make_window, qtbot):
    win = make_window(quadratic_spec(shape=(4, 4)))
    qtbot.mouseClick(win.controls.runButton, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.step > 20)
    os.kill(on_runner(win, probes.pid), signal.SIGKILL)  # as the kernel's out-of-memory killer would
    qtbot.waitUntil(lambda: "ended unexpectedly" in win.last_error)
    assert not win.snapshot.running and win.isVisible()
    (box,) = visible_boxes(win)
    qtbot.mouseClick(box.button(QMessageBox.StandardButton.Ok), LEFT)

    qtbot.mouseClick(win.controls.resetButton, LEFT)  # a new runner process, the same problem at step 0
    qtbot.waitUntil(lambda: win.snapshot.step == 0 and win.snapshot.error is None
                    and win.snapshot.tensor("weight") is not None and win.snapshot.tensor("weight").value.shape == (4, 4))
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    assert not visible_boxes(win) and win.bridge.runner.alive

    # the buttons drive the new runner process, not the dead one: a long Step N, then Cancel
    c = win.controls
    c.setStepCount(1_000_000)
    qtbot.mouseClick(c.stepNButton, LEFT)
    qtbot.waitUntil(lambda: c.cancelButton.isVisible() and win.snapshot.step > 1)
    qtbot.mouseClick(c.cancelButton, LEFT)
    qtbot.waitUntil(lambda: not win.snapshot.running and not c.cancelButton.isVisible())
    stopped = win.snapshot.step
    wait_idle(qtbot, win)
    assert 1 < stopped < 1_000_000 and on_runner(win, probes.step_count) == stopped


def test_after_a_killed_runner_process_recover_rebuilds_the_branch_where_it_stood(make_window, qtbot):
    """Nothing the user did is lost when the runner process dies: steps, an edit while paused,
    a rewind and a breakpoint come back, with the values a plain session with the same journal
    has (the steps are replayed in a new process)."""
    from core.spec import SetHparam
    from .conftest import shown_values
    spec = quadratic_spec(shape=(4, 4))
    win = make_window(spec)
    win.step(12)
    wait_step(qtbot, win, 12)
    win.apply(SetHparam(0, "lr", 0.01))  # an edit while paused, in the journal
    win.step(8)
    wait_step(qtbot, win, 20)
    win.set_breakpoints([("loss > 1e9", True)])
    win.goto(15, 0)  # rewound: the branch goes on to 20, the window stands at 15
    qtbot.waitUntil(lambda: win.snapshot.step == 15 and not win.snapshot.at_head)
    wait_idle(qtbot, win)
    bps = win.snapshot.breakpoints
    assert [t for t, _ in bps] == ["loss > 1e+09"]
    qtbot.waitUntil(lambda: win._recovery is not None and win._recovery["step"] == 15
                    and win._recovery["breakpoints"] == bps)
    os.kill(on_runner(win, probes.pid), signal.SIGKILL)
    qtbot.waitUntil(lambda: "ended unexpectedly" in win.last_error)
    (box,) = visible_boxes(win)
    assert "Recover replays branch 0 from its journal to step 15" in box.text()
    qtbot.mouseClick(win.recover_button, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.step == 15 and win.snapshot.error is None and win.bridge.runner.alive
                    and win.snapshot.head_step == 20)
    wait_idle(qtbot, win)
    plain = Session(spec)
    plain.run(12)
    plain.apply(SetHparam(0, "lr", 0.01))
    plain.run(3)
    np.testing.assert_array_equal(shown_values(win), plain.params["weight"].detach().numpy())
    assert win.snapshot.breakpoints == bps and not win.snapshot.at_head
    assert win.snapshot.groups[0].hparams["lr"] == 0.01
    qtbot.waitUntil(lambda: win.statusBar().currentMessage().startswith("Recovered"))
    win.step(1)  # and it carries on (from the rewound step: a new branch, as before the crash)
    qtbot.waitUntil(lambda: win.snapshot.step == 16 and win.snapshot.at_head)


def forked_window(make_window, qtbot):
    """10 steps on branch 0, then back to step 4 and 2 steps on: branch 1, standing at step 6."""
    win = make_window(quadratic_spec(shape=(3, 3)))
    win.step(10)
    wait_step(qtbot, win, 10)
    win.goto(4, 0)
    qtbot.waitUntil(lambda: win.snapshot.step == 4 and not win.snapshot.at_head)
    win.step(2)  # forks branch 1 at step 4
    qtbot.waitUntil(lambda: win.snapshot.step == 6 and win.snapshot.branch == 1)
    return win


def test_recover_brings_the_other_branches_back_too(make_window, qtbot):
    """A fork made before the runner process died: Recover stands on the branch it was on, and
    the other branch is listed and goes to its own last step with its own values and curves."""
    from .conftest import shown_values
    win = forked_window(make_window, qtbot)
    wait_idle(qtbot, win)
    on_branch1 = shown_values(win).copy()
    qtbot.waitUntil(lambda: win._recovery is not None and win._recovery["branches"] == 2
                    and win._recovery["step"] == 6)
    os.kill(on_runner(win, probes.pid), signal.SIGKILL)
    qtbot.waitUntil(lambda: "ended unexpectedly" in win.last_error)
    (box,) = visible_boxes(win)
    assert "its 1 other branch comes back too, with its curves" in box.text()
    qtbot.mouseClick(win.recover_button, LEFT)
    qtbot.waitUntil(lambda: win.bridge.runner.alive and win.snapshot.error is None and win.snapshot.step == 6
                    and win.snapshot.branch == 1 and len(win.snapshot.branches) == 2)
    wait_idle(qtbot, win)
    np.testing.assert_array_equal(shown_values(win), on_branch1)
    win.goto(None, 0)
    qtbot.waitUntil(lambda: win.snapshot.branch == 0 and win.snapshot.step == 10)
    wait_idle(qtbot, win)
    plain = Session(quadratic_spec(shape=(3, 3)))
    plain.run(10)
    np.testing.assert_array_equal(shown_values(win), plain.params["weight"].detach().numpy())
    h = win.snapshot.history  # branch 0's curves came back with it
    assert list(h.step) == list(range(1, 11)) and float(h.loss[-1]) == plain.loss_value()


def test_an_edit_made_while_running_is_kept_for_recovery(make_window, qtbot, monkeypatch):
    """While the run goes on the window asks for the recovery state every RUNNING_EVERY seconds
    (made short here): an lr set mid-run is in it, and Recover brings the branch back with it."""
    from app import recovery_ui
    from core.spec import SetHparam
    monkeypatch.setattr(recovery_ui, "RUNNING_EVERY", 0.2)
    win = make_window(quadratic_spec(shape=(4, 4)))
    qtbot.mouseClick(win.controls.runButton, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.step > 20 and win.snapshot.running)
    win.apply(SetHparam(0, "lr", 0.0025))
    qtbot.waitUntil(lambda: win._recovery is not None and any(
        isinstance(a, SetHparam) and a.value == 0.0025 for a in win._recovery["journal"]))
    kept = win._recovery["step"]
    assert win.snapshot.running  # asked while running, the run going on
    os.kill(on_runner(win, probes.pid), signal.SIGKILL)
    qtbot.waitUntil(lambda: "ended unexpectedly" in win.last_error)
    assert win._recovery["step"] >= kept
    qtbot.mouseClick(win.recover_button, LEFT)
    qtbot.waitUntil(lambda: win.bridge.runner.alive and win.snapshot.error is None
                    and win.snapshot.step == win._recovery["step"] and win.snapshot.groups
                    and win.snapshot.groups[0].hparams["lr"] == 0.0025)


def test_non_finite_loss_pauses_and_the_status_bar_names_it(make_window, qtbot):
    win = make_window(quadratic_spec(optimizer="SGD", hparams={"lr": 10.0}, shape=(8,), condition=100.0))
    qtbot.mouseClick(win.controls.runButton, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.paused_reason is not None and not win.snapshot.running)
    reason = win.snapshot.paused_reason
    assert reason.startswith("Paused at step") and "the loss became" in reason
    assert win.statusBar().currentMessage() == reason
    assert win.controls.runButton.text() == "Run"
    assert not visible_boxes(win)  # a pause, not a crash
    # after a reset the next step clears the note
    qtbot.mouseClick(win.controls.resetButton, LEFT)
    wait_step(qtbot, win, 0)
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    assert win.snapshot.paused_reason is None
    assert win.statusBar().currentMessage() == ""


def test_optimizer_that_cannot_take_the_tensors_is_refused_and_the_run_goes_on(make_window, qtbot):
    win = make_window(quadratic_spec(optimizer="SGD", hparams={"lr": 0.01}, shape=(64,)))
    qtbot.mouseClick(win.controls.runButton, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.running and win.snapshot.step > 0)
    win.optimizer_panel.combo.setCurrentText("Muon")
    qtbot.waitUntil(lambda: "Muon" in win.last_error)
    assert "2-D" in win.last_error
    assert win.optimizer_panel.combo.currentText() == "SGD"  # the choice is undone
    at = win.snapshot.step
    qtbot.waitUntil(lambda: win.snapshot.step > at and win.snapshot.running)
    assert win.snapshot.optimizer == "SGD" and win.spec.optimizer == "SGD"
    qtbot.mouseClick(win.controls.runButton, LEFT)
    qtbot.waitUntil(lambda: not win.snapshot.running)


def test_spec_edit_that_cannot_be_built_is_refused_and_the_old_session_stays(make_window, qtbot):
    spec = SessionSpec(optimizer="Muon", tensors=(TensorSpec("weight", (2, 2)),),
                       gradient=GradientSpec(kind="objective", objective="quadratic"))
    win = make_window(spec)
    win.controls.setStepCount(3)
    qtbot.mouseClick(win.controls.stepNButton, LEFT)
    wait_step(qtbot, win, 3)
    before = win.snapshot.tensor("weight").value.values.copy()

    win.problem_dock.raise_()
    type_into_cell(qtbot, win.problem.table, 0, SHAPE, "4", wait=False)  # a 1-D tensor: Muon takes matrices only
    qtbot.waitUntil(lambda: "Muon optimizes only 2-D tensors" in win.last_error)
    wait_idle(qtbot, win)
    assert win.snapshot.step == 3 and win.snapshot.optimizer == "Muon"
    assert (win.snapshot.tensor("weight").value.values == before).all()
    assert win.problem.table.item(0, SHAPE).text() == "2, 2"  # the editor shows what runs
    assert win.problem.spec() == win.spec
    qtbot.mouseClick(win.controls.stepButton, LEFT)  # and it still steps
    wait_step(qtbot, win, 4)


def test_layout_is_saved_on_close_and_restored_at_the_next_start(make_window, qtbot, settings_path):
    win = make_window(quadratic_spec(shape=(4, 4)))
    L = Qt.DockWidgetArea.LeftDockWidgetArea
    win.landscape_dock.toggleViewAction().trigger()
    win.addDockWidget(L, win.state_dock)
    assert win.landscape_dock.isHidden()
    win.close()
    assert settings_path.exists()

    win2 = make_window(quadratic_spec(shape=(4, 4)))
    assert win2.landscape_dock.isHidden()
    assert not win2.landscape_dock.toggleViewAction().isChecked()
    assert win2.dockWidgetArea(win2.state_dock) == L

    # View > Reset layout brings every dock back where it started
    reset = next(a for a in win2.menuBar().actions() if a.text() == "&View").menu()
    next(a for a in reset.actions() if a.text() == "Reset layout").trigger()
    assert not win2.landscape_dock.isHidden()
    assert win2.dockWidgetArea(win2.state_dock) == Qt.DockWidgetArea.RightDockWidgetArea


def one_line(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text


def test_a_text_file_named_pt_is_refused_in_one_sentence_naming_it(make_window, qtbot, tmp_path):
    win = make_window(quadratic_spec(shape=(4, 4)))
    notes = tmp_path / "notes.pt"
    notes.write_text("these are my notes, not a torch.save file\n")
    win.open_path(notes)
    qtbot.waitUntil(lambda: win.last_error != "")
    (box,) = visible_boxes(win)
    assert one_line(box.text()) and "notes.pt" in box.text()
    assert box.windowTitle() == "Cannot load notes.pt"
    assert "Traceback" in box.detailedText()  # the technical details, behind "Show Details…"
    wait_idle(qtbot, win)
    assert win.snapshot.step == 0


def test_a_broken_json_session_is_refused_in_one_sentence_naming_it(make_window, qtbot, tmp_path):
    win = make_window(quadratic_spec(shape=(4, 4)))
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "optimlab-spec", "spec": {')
    win.open_path(bad)
    qtbot.waitUntil(lambda: win.last_error != "")
    (box,) = visible_boxes(win)
    assert one_line(box.text()) and "bad.json" in box.text()
    assert win.snapshot.tensor("weight").value.shape == (4, 4)  # nothing changed


def test_a_traceback_never_becomes_the_message_only_its_details(make_window, qtbot):
    win = make_window(quadratic_spec(shape=(4, 4)))
    tb = ('Traceback (most recent call last):\n  File "task.py", line 3, in make_model\n'
          '    raise RuntimeError("my model is broken")\nRuntimeError: my model is broken')
    win.show_error("Cannot open the script", tb)
    (box,) = visible_boxes(win)
    assert box.text() == "RuntimeError: my model is broken"
    assert box.detailedText().startswith("Traceback (most recent call last)")


def test_the_kept_state_is_on_disk_and_a_later_window_reopens_it_if_the_window_process_ended(make_window, qtbot):
    """The window's own process can end too (a crash in Qt): what it keeps for recovery is also
    a .json session on disk (removed when the window closes as asked); a window started later
    finds one whose process is gone and offers it: Reopen replays it to where it stood."""
    import json
    import subprocess
    import sys
    from app import recovery_ui
    from core.spec import SetHparam
    from .conftest import shown_values
    spec = quadratic_spec(shape=(3, 3))
    win = make_window(spec)
    win.step(6)
    wait_step(qtbot, win, 6)
    win.apply(SetHparam(0, "lr", 0.02))
    win.step(3)
    wait_step(qtbot, win, 9)
    f = win.recovery_file
    def kept():
        doc = json.loads(f.read_text()) if f.exists() else {"journal": []}
        return [(a["op"], a.get("n", a.get("value"))) for a in doc["journal"]]
    qtbot.waitUntil(lambda: kept() == [("step", 6), ("set_hparam", 0.02), ("step", 3)])
    shown = shown_values(win).copy()
    # as if this window's process had ended: its file under a process id that is gone
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    left = f.with_name(f"session-{dead}.json")
    left.write_bytes(f.read_bytes())
    assert recovery_ui.left_behind() == [left]
    other = make_window(quadratic_spec(shape=(3, 3)))
    assert other.offer_left_behind()
    qtbot.mouseClick(other.reopen_button, LEFT)
    qtbot.waitUntil(lambda: other.snapshot.step == 9 and other.snapshot.groups[0].hparams["lr"] == 0.02)
    wait_idle(qtbot, other)
    np.testing.assert_array_equal(shown_values(other), shown)
    assert not left.exists() and other.windowTitle() == "recovered session * — optimlab"
    win.dirty = False
    win.close()  # closed as asked: its file goes
    assert not f.exists()


def test_a_recovery_file_that_takes_long_to_write_is_written_less_often_while_running(tmp_path):
    """A big checkpoint's data embedded in the recovery file is encoded at each write: while the
    run goes on, writing keeps to about 1% of the time."""
    from app import recovery_ui
    f = recovery_ui.RecoveryFile("session-test.json")
    try:
        assert f.running_every() == recovery_ui.RUNNING_EVERY
        f.write(lambda: (time.sleep(0.2), b"{}")[1], {})
        f._writer.submit(lambda: None).result(10)  # the write is done
        assert f.path.read_bytes() == b"{}" and f.took >= 0.2
        assert f.running_every() >= 0.2 / recovery_ui.WRITE_SHARE
    finally:
        f.forget()
    assert not f.path.exists()


def test_a_session_with_a_fork_left_open_when_optimlab_ended_reopens_with_both_branches(make_window, qtbot):
    import json
    import subprocess
    import sys
    win = forked_window(make_window, qtbot)
    f = win.recovery_file

    def kept():
        doc = json.loads(f.read_text()) if f.exists() else {}
        t = doc.get("timeline") or {}
        return len(t.get("branches", ())), t.get("current"), "optimlab:recovery-curves" in doc.get("blobs", {})
    qtbot.waitUntil(lambda: kept() == (2, 1, True))
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    left = f.with_name(f"session-{dead}.json")
    left.write_bytes(f.read_bytes())
    other = make_window(quadratic_spec(shape=(3, 3)))
    assert other.offer_left_behind()
    qtbot.mouseClick(other.reopen_button, LEFT)
    qtbot.waitUntil(lambda: other.snapshot.step == 6 and other.snapshot.branch == 1
                    and len(other.snapshot.branches) == 2)
    other.goto(None, 0)
    qtbot.waitUntil(lambda: other.snapshot.branch == 0 and other.snapshot.step == 10)
    assert list(other.snapshot.history.step) == list(range(1, 11))  # its curves came back with it
