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
    win.branches_dock.raise_()  # the timeline's step field and slider would rewind, the bound would shrink
    for box in (win.timeline_strip.stepBox, win.timeline_strip.slider, win.branch_list.budgetBox):
        wheel(box)
    wait_idle(qtbot, win)
    assert win.snapshot.step == 5 and win.snapshot.at_head and win.spec == spec and win.snapshot.optimizer == "SGD"
    assert win.branch_list.budgetBox.value() == 512 and win.snapshot.checkpoint_budget == 512 * 2 ** 20
    assert win.scheduler_form.scheduler() is None and win.controls.speedLimit() == 0
