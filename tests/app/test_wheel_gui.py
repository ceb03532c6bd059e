"""Scrolling the docks with the mouse wheel never edits the session (issue 9's lost runs)."""
from __future__ import annotations

from tests.widgets.test_wheel_guard import wheel

from .conftest import manual_spec, wait_idle, wait_step


def test_the_wheel_over_unfocused_boxes_in_the_docks_keeps_the_run(make_window, qtbot):
    win = make_window(manual_spec(hparams={"lr": 0.1}))
    win.step(5)
    wait_step(qtbot, win, 5)
    spec = win.spec
    win.problem_dock.raise_()
    for box in (win.problem.when, win.problem.kind, win.problem.seed, win.problem_mode):
        wheel(box)
    win.optimizer_dock.raise_()
    for box in (win.optimizer_panel.combo, win.optimizer_panel.target, win.scheduler_form.combo,
                win.controls.speedBox, win.tensor_combo):
        wheel(box)
    wait_idle(qtbot, win)
    assert win.snapshot.step == 5 and win.spec == spec and win.snapshot.optimizer == "SGD"
    assert win.scheduler_form.scheduler() is None and win.controls.speedLimit() == 0
