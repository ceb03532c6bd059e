"""The tensor panel's "over time" view in the window: the runner's histograms of the shown
tensor's value, gradient and optimizer state, following rewinds."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from core import edits

from .conftest import on_runner, quadratic_spec, shown_values, type_line, wait_idle, wait_step
from .test_timeline_gui import expected


def test_over_time_shows_every_entrys_distribution_up_to_the_step_stood_on(make_window, qtbot):
    spec = quadratic_spec("Adam", {"lr": 0.05}, shape=(3, 3))
    win = make_window(spec)
    win.step(20)
    wait_step(qtbot, win, 20)
    panel = win.tensor_panel
    qtbot.mouseClick(panel.overTimeButton, Qt.MouseButton.LeftButton)
    entries = ("value", "grad", "exp_avg", "exp_avg_sq")
    assert list(panel.strips()) == list(entries)
    qtbot.waitUntil(lambda: all(panel.distribution(w) is not None for w in entries))
    for which in entries:
        steps, edges, counts = panel.distribution(which)
        want = on_runner(win, edits.distribution, "weight", which)
        np.testing.assert_array_equal(steps, want[0])
        np.testing.assert_array_equal(counts, want[2])
        assert steps[-1] == 20 and np.allclose(counts[-1].sum(), 9)  # every element of the 3x3 counted
        assert not panel.strips()[which].note.isVisible()

    type_line(qtbot, win.timeline_strip.stepBox.lineEdit(), "7")  # rewound: the history ends there too
    qtbot.waitUntil(lambda: win.snapshot.step == 7)
    qtbot.waitUntil(lambda: panel.distribution("exp_avg")[0][-1] == 7)
    wait_idle(qtbot, win)
    np.testing.assert_array_equal(panel.distribution("value")[2],
                                  on_runner(win, edits.distribution, "weight", "value")[2])

    qtbot.mouseClick(panel.overTimeButton, Qt.MouseButton.LeftButton)  # back to the values: step 7's
    qtbot.waitUntil(lambda: panel.views()["exp_avg"].isVisible())
    np.testing.assert_array_equal(shown_values(win, "exp_avg"), expected(spec, 7)["exp_avg"])


def test_measure_every_step_fills_the_columns_the_run_skipped_and_stays_at_its_step(make_window, qtbot):
    """A tiny problem's run measures one step in many (its budget); the button replays the
    skipped steps and every column of every strip is then measured, the session where it was."""
    spec = quadratic_spec("Adam", {"lr": 0.05}, shape=(3, 3))
    win = make_window(spec)
    win.step(300)
    wait_step(qtbot, win, 300)
    panel = win.tensor_panel
    assert not panel.measureButton.isVisible()  # only over time
    qtbot.mouseClick(panel.overTimeButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: all(panel.distribution(w) is not None for w in panel.strips()))
    strips = panel.strips()
    assert strips["value"].unmeasured() > 0 and panel.measureButton.isVisible()
    qtbot.mouseClick(panel.measureButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "by replaying them" in win.statusBar().currentMessage(), timeout=20_000)
    qtbot.waitUntil(lambda: all(s.unmeasured() == 0 for s in panel.strips().values()))
    assert panel.measureButton.text() == "measure every step" and win.snapshot.step == 300
    for which in strips:
        steps, _, counts = panel.distribution(which)
        assert list(steps) == list(range(1, 301)) and np.allclose(counts.sum(axis=1), 9)
    norms = on_runner(win, edits.branch_history, win.snapshot.branch).grad_norm
    assert len(norms) == 300 and np.isfinite(norms).all()  # the curves' norms too


def test_a_long_replay_goes_in_slices_and_a_second_press_stops_it(make_window, qtbot):
    spec = quadratic_spec("Adam", {"lr": 0.05}, shape=(3, 3))
    win = make_window(spec)
    win.step(40_000)
    wait_step(qtbot, win, 40_000, timeout=60_000)
    panel = win.tensor_panel
    qtbot.mouseClick(panel.overTimeButton, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(panel.measureButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: " of 40,000 (press again to stop)" in win.statusBar().currentMessage(), timeout=20_000)
    assert panel.measureButton.text() == "stop measuring"
    qtbot.mouseClick(panel.measureButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "steps left unmeasured" in win.statusBar().currentMessage(), timeout=20_000)
    assert panel.measureButton.text() == "measure every step" and win.snapshot.step == 40_000
