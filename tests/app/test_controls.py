"""The run controls, their shortcuts, the Optimizer dock and the status bar, driven as a user would."""
from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from .conftest import (manual_spec, on_runner, quadratic_spec, shown_values, type_line, wait_idle,
                       wait_step)
from . import probes

LEFT = Qt.MouseButton.LeftButton


def press(qtbot, win, key):
    """A key press as the window receives it (focus on the tensors, not in a text field)."""
    win.tensor_panel.setFocus()
    QTest.keyClick(win, key)


def test_run_button_starts_and_pauses_the_run(make_window, qtbot):
    win = make_window(quadratic_spec())
    button = win.controls.runButton
    qtbot.mouseClick(button, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.running and win.snapshot.step > 0)
    assert button.text() == "Pause"
    assert win.problem.isLocked()
    qtbot.mouseClick(button, LEFT)
    qtbot.waitUntil(lambda: not win.snapshot.running)
    assert button.text() == "Run"
    assert not win.problem.isLocked()
    stopped = win.snapshot.step
    wait_idle(qtbot, win)
    assert on_runner(win, probes.step_count) == stopped


def test_space_toggles_run_and_pause(make_window, qtbot):
    win = make_window(quadratic_spec())
    press(qtbot, win, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: win.snapshot.running and win.snapshot.step > 0)
    press(qtbot, win, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: not win.snapshot.running)
    assert win.controls.runButton.text() == "Run"


def test_right_arrow_takes_one_step(make_window, qtbot):
    win = make_window(manual_spec(hparams={"lr": 0.5}))
    before = shown_values(win)
    press(qtbot, win, Qt.Key.Key_Right)
    wait_step(qtbot, win, 1)
    np.testing.assert_allclose(shown_values(win), before - 0.5, rtol=0, atol=1e-6)
    press(qtbot, win, Qt.Key.Key_Right)
    wait_step(qtbot, win, 2)


def test_step_n_shows_progress_and_cancel_stops_it(make_window, qtbot):
    win = make_window(quadratic_spec(shape=(64, 64)))  # 10^6 steps: minutes, so it is running when cancelled
    c = win.controls
    c.stepCountBox.setFocus()
    c.stepCountBox.lineEdit().selectAll()
    qtbot.keyClicks(c.stepCountBox, "1000000")
    assert c.stepCount() == 1_000_000
    qtbot.mouseClick(c.stepNButton, LEFT)
    qtbot.waitUntil(lambda: c.progressBar.isVisible() and c.progressBar.value() > 0)
    assert c.cancelButton.isVisible()
    assert c.progressBar.maximum() == 1_000_000
    assert not c.stepButton.isEnabled() and not c.stepNButton.isEnabled()
    qtbot.mouseClick(c.cancelButton, LEFT)
    qtbot.waitUntil(lambda: not win.snapshot.running and win.snapshot.batch_total == 0)
    qtbot.waitUntil(lambda: not c.progressBar.isVisible())
    assert not c.cancelButton.isVisible()
    assert c.stepButton.isEnabled()
    done = win.snapshot.step
    assert 0 < done < 1_000_000
    wait_idle(qtbot, win)
    assert on_runner(win, probes.step_count) == done


def test_speed_limit_slows_the_run(make_window, qtbot):
    win = make_window(quadratic_spec())
    c = win.controls
    c.speedBox.setFocus()
    c.speedBox.lineEdit().selectAll()
    qtbot.keyClicks(c.speedBox, "40")
    assert c.speedLimit() == 40
    t0 = time.perf_counter()
    qtbot.mouseClick(c.runButton, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.step >= 9)
    elapsed = time.perf_counter() - t0
    qtbot.mouseClick(c.runButton, LEFT)
    qtbot.waitUntil(lambda: not win.snapshot.running)
    assert win.snapshot.rate_limit == 40
    assert elapsed >= 8 / 40 * 0.9  # 9 steps at 40 steps/s take at least 8 intervals


def test_reset_returns_to_step_zero(make_window, qtbot):
    win = make_window(manual_spec(hparams={"lr": 0.5}))
    start = shown_values(win)
    win.controls.setStepCount(5)
    qtbot.mouseClick(win.controls.stepNButton, LEFT)
    wait_step(qtbot, win, 5)
    qtbot.mouseClick(win.controls.resetButton, LEFT)
    wait_step(qtbot, win, 0)
    np.testing.assert_array_equal(shown_values(win), start)
    assert "step 0 " in win.status.text()


def test_reset_cancels_a_step_n_in_progress(make_window, qtbot):
    win = make_window(quadratic_spec(shape=(64, 64)))
    win.controls.setStepCount(1_000_000)
    qtbot.mouseClick(win.controls.stepNButton, LEFT)
    qtbot.waitUntil(lambda: win.snapshot.step > 0)
    qtbot.mouseClick(win.controls.resetButton, LEFT)
    wait_step(qtbot, win, 0)
    wait_idle(qtbot, win)
    assert on_runner(win, probes.step_count) == 0
    assert not win.controls.progressBar.isVisible()


def test_hyperparameter_edit_while_paused_takes_effect_at_the_next_step(make_window, qtbot):
    win = make_window(manual_spec(hparams={"lr": 0.1}))
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    panel = win.optimizer_panel
    assert panel.target.currentText() == "group 0: weight"
    type_line(qtbot, panel.form.editor("lr"), "0.25")
    qtbot.waitUntil(lambda: win.snapshot.groups[0].hparams["lr"] == 0.25)
    assert win.snapshot.step == 1  # a live param_group edit, not a restart
    assert win.state_tree.text_of(("param_groups", "0", "lr")) == "lr: 0.25"
    before = shown_values(win)
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 2)
    np.testing.assert_allclose(before - shown_values(win), np.full((2, 2), 0.25), atol=1e-6)


def test_invalid_learning_rate_shows_torch_message_and_changes_nothing(make_window, qtbot):
    win = make_window(manual_spec(hparams={"lr": 0.1}))
    journal = on_runner(win, probes.journal)
    panel = win.optimizer_panel
    for target in ("group 0: weight", "Constructor (defaults)"):
        panel.target.setCurrentText(target)
        type_line(qtbot, panel.form.editor("lr"), "-1")
        assert "Invalid learning rate: -1" in panel.form.errorText()
        wait_idle(qtbot, win)
        assert win.snapshot.groups[0].hparams["lr"] == 0.1
        assert win.snapshot.defaults["lr"] == 0.1
        assert on_runner(win, probes.journal) == journal
    assert not win.dirty


def test_choosing_adam_rebuilds_the_session_with_adam(make_window, qtbot):
    win = make_window(quadratic_spec(optimizer="SGD", hparams={"lr": 0.01, "momentum": 0.9}))
    win.optimizer_panel.combo.setCurrentText("Adam")
    # the snapshot shows Adam first, then the runner's answer brings the window its new spec
    qtbot.waitUntil(lambda: win.snapshot.optimizer == "Adam" and win.spec.optimizer == "Adam")
    assert win.spec.hparams == {"lr": 0.01}  # momentum is not Adam's
    assert "betas" in win.snapshot.defaults
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    assert {"exp_avg", "exp_avg_sq"} <= set(win.tensor_panel.views())
    assert win.state_tree.text_of(("state", "0", "step")) == "step: 1.0"
    assert win.optimizer_panel.form.optimizer().name == "Adam"


def test_status_bar_shows_step_loss_speed_and_device(make_window, qtbot):
    win = make_window(quadratic_spec())
    win.controls.setStepCount(3)
    qtbot.mouseClick(win.controls.stepNButton, LEFT)
    wait_step(qtbot, win, 3)
    text = win.status.text()
    loss = on_runner(win, probes.loss_value)
    assert text.startswith("step 3 · loss ")
    assert f"loss {loss:.4g}" in text
    assert text.endswith(" · paused · cpu")  # an instant Step N has no meaningful rate
    # while running, the speed is measured over at least half a second and shown
    qtbot.mouseClick(win.controls.runButton, LEFT)

    def rate():
        part = win.status.text().split(" · ")[2]
        return float(part.split()[0].replace(",", "")) if part.endswith("steps/s") else None
    qtbot.waitUntil(lambda: rate() is not None and rate() > 0)
    qtbot.mouseClick(win.controls.runButton, LEFT)
    qtbot.waitUntil(lambda: not win.snapshot.running)
    assert win.status.text().endswith(" · paused · cpu")  # not the last rate, frozen
