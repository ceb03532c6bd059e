"""The timeline in the window (issue 9): nothing is lost, rewind and fork, branches, undo/redo."""
from __future__ import annotations

import numpy as np
import torch
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from core.session import Session
from tests.widgets.test_timeline_widgets import edit_condition
from tests.widgets.test_wheel_guard import wheel

from . import probes
from .conftest import manual_spec, on_runner, quadratic_spec, shown_values, type_line, wait_idle, wait_step

LEFT = Qt.MouseButton.LeftButton
CTRL = Qt.KeyboardModifier.ControlModifier


def press(win, key, mods=Qt.KeyboardModifier.NoModifier):
    win.tensor_panel.setFocus()
    QTest.keyClick(win, key, mods)


def branch_rows(win):
    """(id, steps) of every branch listed, as the Branches dock shows them."""
    return sorted((b.id, b.steps) for b in win.branch_list.branches())


def expected(spec, steps: int) -> dict[str, np.ndarray]:
    """A plain core session stepped ``steps`` times: the weight and its optimizer state."""
    s = Session(spec)
    s.run(steps)
    p = s.params["weight"]
    out = {"value": p.detach().numpy().copy(), "grad": p.grad.numpy().copy()}
    out.update({k: v.numpy().copy() for k, v in s.optimizer.state[p].items()
                if isinstance(v, torch.Tensor) and v.dim()})
    return out


def test_switching_the_optimizer_keeps_the_old_branch_and_undo_brings_it_back(make_window, qtbot):
    win = make_window(manual_spec(hparams={"lr": 0.1, "momentum": 0.9}))
    win.step(13)
    wait_step(qtbot, win, 13)
    before = shown_values(win)
    win.optimizer_panel.combo.setCurrentText("Adam")
    qtbot.waitUntil(lambda: win.snapshot.optimizer == "Adam" and win.snapshot.step == 0)
    assert branch_rows(win) == [(0, 13), (1, 0)]
    qtbot.waitUntil(lambda: win.statusBar().currentMessage()
                    == "optimizer changed to Adam: new branch 1, branch 0 kept at step 13")
    assert win.undo_action.isEnabled()
    win.undo_action.trigger()  # Edit > Undo
    qtbot.waitUntil(lambda: win.snapshot.branch == 0 and win.snapshot.step == 13)
    qtbot.waitUntil(lambda: win.statusBar().currentMessage() == "Undone: back to step 13 of branch 0")
    np.testing.assert_array_equal(shown_values(win), before)
    qtbot.waitUntil(lambda: win.optimizer_panel.combo.currentText() == "SGD" and win.spec.optimizer == "SGD")
    assert branch_rows(win) == [(0, 13), (1, 0)]  # the Adam branch is kept too


def test_the_wheel_on_a_focused_box_starts_a_branch_and_the_shortcuts_undo_and_redo_it(make_window, qtbot):
    win = make_window(manual_spec(hparams={"lr": 0.1}))
    win.step(5)
    wait_step(qtbot, win, 5)
    win.problem_dock.raise_()
    when = win.problem.when
    when.setFocus()  # clicked into: now the wheel chooses (gradient "once" <-> "every step")
    old_when = when.currentData()
    wheel(when, 120 if when.currentIndex() else -120)
    qtbot.waitUntil(lambda: len(win.snapshot.branches) == 2 and win.snapshot.step == 0)
    assert branch_rows(win) == [(0, 5), (1, 0)]
    qtbot.waitUntil(lambda: win.statusBar().currentMessage()
                    == "problem changed: new branch 1, branch 0 kept at step 5")
    press(win, Qt.Key.Key_Z, CTRL)
    qtbot.waitUntil(lambda: win.snapshot.branch == 0 and win.snapshot.step == 5)
    qtbot.waitUntil(lambda: win.problem.when.currentData() == old_when)
    assert win.redo_action.isEnabled()
    press(win, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: win.snapshot.branch == 1 and win.snapshot.step == 0)
    qtbot.waitUntil(lambda: win.problem.when.currentData() != old_when)


def test_the_strip_rewinds_exactly_and_stepping_from_there_forks(make_window, qtbot):
    spec = quadratic_spec("Adam", {"lr": 0.05}, shape=(3, 3))
    win = make_window(spec)
    win.step(20)
    wait_step(qtbot, win, 20)
    strip = win.timeline_strip
    assert strip.slider.maximum() == 20
    type_line(qtbot, strip.stepBox.lineEdit(), "7")
    qtbot.waitUntil(lambda: win.snapshot.step == 7 and not win.snapshot.at_head)
    wait_idle(qtbot, win)
    want = expected(spec, 7)
    for which in ("value", "grad", "exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(shown_values(win, which), want[which], err_msg=which)
    assert strip.positionText() == "rewound to step 7 of branch 0 (of 20) — stepping forks a new branch"

    qtbot.mouseClick(win.controls.stepButton, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.step == 8 and win.snapshot.at_head)
    assert branch_rows(win) == [(0, 20), (1, 8)]
    qtbot.waitUntil(lambda: win.statusBar().currentMessage()
                    == "New branch 1 from step 7; branch 0 kept (20 steps)")
    np.testing.assert_array_equal(shown_values(win), expected(spec, 8)["value"])
    # back to the old branch by a click on its row: all 20 steps are there
    win.branches_dock.raise_()
    tree = win.branch_list.tree
    rect = tree.visualItemRect(tree.topLevelItem(0))
    x = tree.header().sectionViewportPosition(3) + 5  # on its steps (the first column is the overlay box)
    QTest.mouseClick(tree.viewport(), LEFT, pos=rect.center().__class__(x, rect.center().y()))
    qtbot.waitUntil(lambda: win.snapshot.branch == 0 and win.snapshot.step == 20)
    wait_idle(qtbot, win)
    np.testing.assert_array_equal(shown_values(win), expected(spec, 20)["value"])


def test_left_steps_back_one_step_at_a_time_and_end_goes_to_the_last(make_window, qtbot):
    """Run > Step back (Left) rewinds one step, exactly; pressed quickly several times it goes
    back that many steps; at step 0 it says there is none before; End goes to the last step.
    In a text field Left moves the cursor and leaves the step alone."""
    spec = quadratic_spec("Adam", {"lr": 0.05}, shape=(3, 3))
    win = make_window(spec)
    win.step(6)
    wait_step(qtbot, win, 6)
    press(win, Qt.Key.Key_Left)
    qtbot.waitUntil(lambda: win.snapshot.step == 5 and not win.snapshot.at_head)
    wait_idle(qtbot, win)
    want = expected(spec, 5)
    for which in ("value", "grad", "exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(shown_values(win, which), want[which], err_msg=which)
    for _ in range(5):  # without waiting for the window to draw each
        press(win, Qt.Key.Key_Left)
    qtbot.waitUntil(lambda: win.snapshot.step == 0)
    wait_idle(qtbot, win)
    press(win, Qt.Key.Key_Left)
    qtbot.waitUntil(lambda: win.statusBar().currentMessage()
                    == "Step 0 is the session's first step: there is no step before it on this branch")
    assert win.snapshot.step == 0 and branch_rows(win) == [(0, 6)]  # nothing forked or lost
    press(win, Qt.Key.Key_End)
    qtbot.waitUntil(lambda: win.snapshot.step == 6 and win.snapshot.at_head)
    field = win.optimizer_panel.form.editor("lr")
    field.setFocus()
    field.setCursorPosition(len(field.text()))
    QTest.keyClick(field, Qt.Key.Key_Left)
    assert field.cursorPosition() == len(field.text()) - 1
    qtbot.wait(200)
    assert win.snapshot.step == 6 and win.snapshot.at_head


def test_a_ticked_branch_is_overlaid_on_the_curves(make_window, qtbot):
    win = make_window(quadratic_spec("SGD", {"lr": 0.01}, shape=(2, 2)))
    win.step(30)
    wait_step(qtbot, win, 30)
    win.optimizer_panel.combo.setCurrentText("Adam")
    qtbot.waitUntil(lambda: len(win.snapshot.branches) == 2)
    win.step(10)
    wait_step(qtbot, win, 10)
    win.branch_list.setOverlay(0, True)
    qtbot.waitUntil(lambda: 0 in win.curves.overlays.shown())
    loss = win.curves.overlays.shown()[0]["loss"]
    assert len(loss) == 30 and np.isfinite(loss).all()
    win.branch_list.setOverlay(0, False)
    qtbot.waitUntil(lambda: not win.curves.overlays.shown())


def test_a_breakpoint_pauses_the_run_and_the_status_bar_names_it(make_window, qtbot):
    win = make_window(quadratic_spec(shape=(2, 2)))
    bl = win.breakpoint_list
    assert bl.entries() == [("loss nonfinite", True), ("params nonfinite", True)]
    type_line(qtbot, bl.field, "grad_norm >")
    assert bl.refusalText().startswith("Cannot read the breakpoint 'grad_norm >'")
    type_line(qtbot, bl.field, "nosuch nonfinite")  # well formed, but not a tensor of this session
    qtbot.waitUntil(lambda: "'nosuch', which is not a tensor of this session" in bl.refusalText())
    assert len(bl.entries()) == 2
    type_line(qtbot, bl.field, "step==7")
    qtbot.waitUntil(lambda: ("step == 7", True) in bl.entries())
    assert bl.field.text() == "" and bl.refusalText() == ""
    edit_condition(qtbot, bl, 2, "step ==")  # changed in place to nonsense: refused, and back as it was
    qtbot.waitUntil(lambda: bl.refusalText().startswith("Cannot read the breakpoint 'step =='"))
    qtbot.waitUntil(lambda: bl.entries()[2] == ("step == 7", True))
    qtbot.mouseClick(win.controls.runButton, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.step == 7 and not win.snapshot.running)
    qtbot.waitUntil(lambda: win.statusBar().currentMessage() == "Paused at step 7: step == 7")
    wait_idle(qtbot, win)
    assert on_runner(win, probes.step_count) == 7


def test_a_double_click_edit_changes_the_value_and_the_next_step_uses_it(make_window, qtbot):
    from core.spec import EditTensor

    from tests.widgets.test_cell_edit import double_click_cell
    spec = manual_spec(hparams={"lr": 0.1, "momentum": 0.9})
    win = make_window(spec)
    win.step(3)
    wait_step(qtbot, win, 3)
    view = win.tensor_panel.views()["value"]
    double_click_cell(qtbot, view, 0.5, 1.5)  # row 1, column 0
    qtbot.waitUntil(view.isEditing)
    type_line(qtbot, view.editField, "0.5")
    qtbot.waitUntil(lambda: shown_values(win)[1, 0] == 0.5)
    momentum = win.tensor_panel.views()["momentum_buffer"]
    unfilled = shown_values(win, "momentum_buffer")
    qtbot.mouseClick(momentum.fillButton, LEFT)
    type_line(qtbot, momentum.editField, "0.25")
    qtbot.waitUntil(lambda: (shown_values(win, "momentum_buffer") == 0.25).all())
    win.undo_action.trigger()  # an edit is undone like any other change, and redone
    qtbot.waitUntil(lambda: np.array_equal(shown_values(win, "momentum_buffer"), unfilled))
    assert shown_values(win)[1, 0] == 0.5  # only the last edit
    win.redo_action.trigger()
    qtbot.waitUntil(lambda: (shown_values(win, "momentum_buffer") == 0.25).all())
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 4)

    plain = Session(spec)
    plain.run(3)
    plain.apply(EditTensor("weight", "value", (1, 0), 0.5))
    plain.apply(EditTensor("weight", "momentum_buffer", None, 0.25))
    plain.run(1)
    p = plain.params["weight"]
    np.testing.assert_array_equal(shown_values(win), p.detach().numpy())
    np.testing.assert_array_equal(shown_values(win, "momentum_buffer"), plain.optimizer.state[p]["momentum_buffer"])

    qtbot.mouseClick(win.controls.runButton, LEFT)  # while running, an edit is refused, saying why
    qtbot.waitUntil(lambda: win.snapshot.running)
    qtbot.waitUntil(lambda: not view.fillButton.isEnabled())
    view.editAt(0, 0)
    assert not view.isEditing() and "pause the run" in view.hover.text()
    qtbot.mouseClick(win.controls.runButton, LEFT)
    qtbot.waitUntil(lambda: not win.snapshot.running)


def test_at_unlimited_speed_every_step_is_on_the_curves(make_window, qtbot):
    win = make_window(quadratic_spec(shape=(4, 4)))
    assert win.controls.speedLimit() == 0
    qtbot.mouseClick(win.controls.runButton, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.step > 300)
    qtbot.mouseClick(win.controls.runButton, LEFT)
    qtbot.waitUntil(lambda: not win.snapshot.running)
    wait_idle(qtbot, win)
    n = win.snapshot.step
    qtbot.waitUntil(lambda: len(win.curves.curves["loss"].getData()[0]) == n)
    x, y = win.curves.curves["loss"].getData()
    np.testing.assert_array_equal(x, np.arange(1, n + 1))
    assert np.isfinite(y).all()
    assert len(win.curves.ratioCurves) == 1 and len(win.curves.ratioCurves[0].getData()[0]) > 0


def test_past_the_series_capacity_the_curves_draw_the_min_max_band(make_window, qtbot):
    win = make_window(quadratic_spec("SGD", {"lr": 0.01}, shape=(2, 2)))
    win.step(9000)
    wait_step(qtbot, win, 9000, timeout=60_000)
    qtbot.waitUntil(lambda: win.curves.history().bucket == 2)
    h = win.curves.history()
    assert h.step[0] == 2 and h.step[-1] == 9000  # every step is in a bucket, from 1 to now
    env = win.curves.envelopes["loss"]
    assert env.isVisible()
    lo, hi = env.data()
    np.testing.assert_array_equal(lo, h.loss_min)
    np.testing.assert_array_equal(hi, h.loss_max)
    assert (hi >= lo).all() and (hi > lo).any()


def test_the_checkpoint_bound_is_shown_set_and_remembered(make_window, qtbot, settings_path):
    from PySide6.QtCore import QSettings
    win = make_window(manual_spec())
    bl = win.branch_list
    assert bl.budgetBox.value() == 512
    type_line(qtbot, bl.budgetBox.lineEdit(), "64")
    qtbot.waitUntil(lambda: win.snapshot.checkpoint_budget == 64 * 2 ** 20)
    assert bl.memory.text().endswith("of 64 MB")
    win2 = make_window(manual_spec(), settings=QSettings(str(settings_path), QSettings.Format.IniFormat))
    qtbot.waitUntil(lambda: win2.snapshot.checkpoint_budget == 64 * 2 ** 20)


def test_a_saved_timeline_reopens_with_its_branches_at_the_step_it_was_saved_at(make_window, qtbot, tmp_path,
                                                                                 monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from .test_files_gui import answer, save_and_wait
    answer(monkeypatch, QMessageBox.StandardButton.Discard)
    spec = quadratic_spec("SGD", {"lr": 0.05}, shape=(3, 3))
    win = make_window(spec)
    win.step(12)
    wait_step(qtbot, win, 12)
    win.optimizer_panel.combo.setCurrentText("Adam")
    qtbot.waitUntil(lambda: len(win.snapshot.branches) == 2)
    win.goto(7, 0)  # back on the SGD branch, rewound
    qtbot.waitUntil(lambda: (win.snapshot.branch, win.snapshot.step) == (0, 7))
    qtbot.waitUntil(lambda: win.spec.optimizer == "SGD")
    path = tmp_path / "two.optimlab"
    save_and_wait(qtbot, win, path)

    win.optimizer_panel.combo.setCurrentText("RMSprop")  # a third branch, not saved
    qtbot.waitUntil(lambda: len(win.snapshot.branches) == 3)
    win.open_path(path)
    qtbot.waitUntil(lambda: len(win.snapshot.branches) == 2 and (win.snapshot.branch, win.snapshot.step) == (0, 7))
    assert branch_rows(win) == [(0, 12), (1, 0)]
    qtbot.waitUntil(lambda: win.optimizer_panel.combo.currentText() == "SGD")
    assert win.timeline_strip.positionText().startswith("rewound to step 7 of branch 0 (of 12)")
    wait_idle(qtbot, win)
    np.testing.assert_array_equal(shown_values(win), expected(spec, 7)["value"])


def test_norms_at_every_step_from_the_view_menu_put_every_step_on_the_norm_curves(make_window, qtbot):
    win = make_window(quadratic_spec(shape=(4, 4)))
    win.norms_action.setChecked(True)  # View > Norms at every step
    win.step(300)
    wait_step(qtbot, win, 300)
    wait_idle(qtbot, win)
    for name in ("grad_norm", "update_norm"):
        qtbot.waitUntil(lambda: len(win.curves.curves[name].getData()[0]) == 300)
        x, y = win.curves.curves[name].getData()
        np.testing.assert_array_equal(x, np.arange(1, 301))
        assert np.isfinite(y).all()
    win.norms_action.setChecked(False)
    win.step(300)
    wait_step(qtbot, win, 600)
    wait_idle(qtbot, win)
    qtbot.waitUntil(lambda: win.curves.history().step[-1] == 600)
    assert np.isnan(win.curves.history().grad_norm[300:]).any()  # back within the time budget


def _click_at_step(qtbot, graphics_view, viewbox, step: float) -> None:
    """A left click in ``viewbox`` at x = ``step`` (half-way up), as the user clicks it."""
    from PySide6.QtCore import QPointF
    lo, hi = viewbox.viewRange()[1]
    scene = viewbox.mapViewToScene(QPointF(step, (lo + hi) / 2))
    QTest.mouseClick(graphics_view.viewport(), LEFT, pos=graphics_view.mapFromScene(scene))


def test_a_click_on_a_curve_or_on_a_distribution_column_goes_to_that_step(make_window, qtbot):
    """The loss spiked at step k: a click there stands the session on step k (its tensors,
    exactly), as typing k into the strip would; so does a click on a density strip's column."""
    spec = quadratic_spec("Adam", {"lr": 0.05}, shape=(3, 3))
    win = make_window(spec)
    win.step(30)
    wait_step(qtbot, win, 30)
    wait_idle(qtbot, win)
    curves = win.curves
    assert "click: go to that step" in curves.hover.text()
    _click_at_step(qtbot, curves.graphics, curves.plots["loss"].getViewBox(), 12.2)
    qtbot.waitUntil(lambda: win.snapshot.step == 12 and not win.snapshot.at_head)
    wait_idle(qtbot, win)
    np.testing.assert_array_equal(shown_values(win, "exp_avg"), expected(spec, 12)["exp_avg"])

    win.goto(None, 0)  # back to the head, then over time: a column of the gradient's strip
    qtbot.waitUntil(lambda: win.snapshot.step == 30 and win.snapshot.at_head)
    panel = win.tensor_panel
    qtbot.mouseClick(panel.overTimeButton, LEFT)
    qtbot.waitUntil(lambda: panel.distribution("grad") is not None)
    strip = panel.strips()["grad"]
    qtbot.waitUntil(lambda: strip.plot.isVisible() and strip.plot.getViewBox().viewRange()[0][1] >= 30)
    _click_at_step(qtbot, strip.plot, strip.plot.getViewBox(), 20.5)  # inside step 21's column (20, 21]
    qtbot.waitUntil(lambda: win.snapshot.step == 21 and not win.snapshot.at_head)
    assert branch_rows(win) == [(0, 30)]  # going there forks nothing


def test_a_click_on_a_curve_while_running_keeps_the_run_going(make_window, qtbot):
    spec = quadratic_spec("Adam", {"lr": 0.05}, shape=(3, 3))
    win = make_window(spec)
    win.bridge.set_rate_limit(200)
    win.run()
    qtbot.waitUntil(lambda: win.snapshot.step > 20 and win.snapshot.running)
    box = win.curves.plots["loss"].getViewBox()
    # the curves redraw a few times a second while running: click once they show step 5
    qtbot.waitUntil(lambda: len(win.curves.history().step) and win.curves.history().step[-1] > 10
                    and box.viewRange()[0][0] < 5 < box.viewRange()[0][1])
    _click_at_step(qtbot, win.curves.graphics, box, 5)
    qtbot.waitUntil(lambda: "Pause to go to step" in win.statusBar().currentMessage())
    at = win.snapshot.step
    qtbot.waitUntil(lambda: win.snapshot.step > at + 10 and win.snapshot.running)
    win.pause()
