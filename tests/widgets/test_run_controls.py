"""RunControls: each button asks for the right thing; state the app pushes in shows."""
import pytest
from PySide6.QtCore import QPoint, Qt

from widgets.run_controls import RunControls
from widgets.status import format_status

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def controls(qtbot):
    w = RunControls()
    qtbot.addWidget(w)
    w.resize(380, w.sizeHint().height())
    w.show()
    qtbot.waitExposed(w)
    return w


def test_step_asks_for_one_step(qtbot, controls):
    with qtbot.waitSignal(controls.stepRequested) as sig:
        qtbot.mouseClick(controls.stepButton, LEFT)
    assert sig.args == [1]


def test_step_n_asks_for_n_steps(qtbot, controls):
    assert controls.stepCount() == 50
    assert controls.stepCountBox.maximum() == 1_000_000
    with qtbot.waitSignal(controls.stepRequested) as sig:
        qtbot.mouseClick(controls.stepNButton, LEFT)
    assert sig.args == [50]
    controls.stepCountBox.setValue(1234)
    with qtbot.waitSignal(controls.stepRequested) as sig:
        qtbot.mouseClick(controls.stepNButton, LEFT)
    assert sig.args == [1234]


def test_run_button_follows_running_state(qtbot, controls):
    assert controls.runButton.text() == "Run"
    with qtbot.waitSignal(controls.runRequested), qtbot.assertNotEmitted(controls.pauseRequested):
        qtbot.mouseClick(controls.runButton, LEFT)
    controls.setRunning(True)
    assert controls.runButton.text() == "Pause"
    with qtbot.waitSignal(controls.pauseRequested), qtbot.assertNotEmitted(controls.runRequested):
        qtbot.mouseClick(controls.runButton, LEFT)
    controls.setRunning(False)
    assert controls.runButton.text() == "Run"


def test_zero_grad_passes_set_to_none(qtbot, controls):
    with qtbot.waitSignal(controls.zeroGradRequested) as sig:
        qtbot.mouseClick(controls.zeroGradButton, LEFT)
    assert sig.args == [True]
    box = controls.setToNoneBox
    with qtbot.waitSignal(controls.setToNoneChanged) as sig:
        qtbot.mouseClick(box, LEFT, pos=QPoint(8, box.height() // 2))
    assert sig.args == [False]
    with qtbot.waitSignal(controls.zeroGradRequested) as sig:
        qtbot.mouseClick(controls.zeroGradButton, LEFT)
    assert sig.args == [False]


def test_set_set_to_none_is_silent(qtbot, controls):
    with qtbot.assertNotEmitted(controls.setToNoneChanged):
        controls.setSetToNone(False)
    assert not controls.setToNone()


def test_reset_add_group_and_cancel_buttons(qtbot, controls):
    with qtbot.waitSignal(controls.resetRequested):
        qtbot.mouseClick(controls.resetButton, LEFT)
    with qtbot.waitSignal(controls.addGroupRequested):
        qtbot.mouseClick(controls.addGroupButton, LEFT)
    controls.setProgress(3, 50)
    with qtbot.waitSignal(controls.cancelRequested):
        qtbot.mouseClick(controls.cancelButton, LEFT)


def test_speed_limit_emits_float_and_zero_means_unlimited(qtbot, controls):
    assert controls.speedBox.text() == "unlimited"
    with qtbot.waitSignal(controls.speedLimitChanged) as sig:
        controls.speedBox.setValue(20)
    assert sig.args == [20.0] and isinstance(sig.args[0], float)


def test_progress_bar_only_during_step_n(controls):
    assert not controls.progressBar.isVisible() and not controls.cancelButton.isVisible()
    controls.setProgress(10, 50)
    assert controls.progressBar.isVisible() and controls.cancelButton.isVisible()
    assert controls.progressBar.value() == 10 and controls.progressBar.maximum() == 50
    controls.setProgress(50, 50)
    assert not controls.progressBar.isVisible() and not controls.cancelButton.isVisible()
    controls.setProgress(0, 0)
    assert not controls.progressBar.isVisible()


def test_busy_disables_stepping_but_not_pause(qtbot, controls):
    controls.setBusy(True)
    assert not controls.stepButton.isEnabled() and not controls.stepNButton.isEnabled()
    assert not controls.runButton.isEnabled()  # Step N in progress: Cancel is the way out
    with qtbot.assertNotEmitted(controls.stepRequested):
        qtbot.mouseClick(controls.stepButton, LEFT)
    controls.setRunning(True)
    assert controls.runButton.isEnabled()
    controls.setRunning(False)
    controls.setBusy(False)
    assert controls.stepButton.isEnabled() and controls.runButton.isEnabled()


def test_renders_at_dock_width(controls):
    controls.setProgress(1234, 5000)
    controls.setRunning(True)
    controls.setBusy(True)
    controls.resize(380, controls.sizeHint().height())
    assert not controls.grab().isNull()
    controls.grab().save("/tmp/run_controls.png")


def test_status_line():
    assert format_status(51, None, 1234.4, "cpu") == "step 51 · loss — · 1,234 steps/s · cpu"
    assert format_status(51, None, 1234.4, "cpu", running=False) == "step 51 · loss — · paused · cpu"
    assert format_status(0, None, None, "cpu", running=False) == "step 0 · loss — · ready · cpu"
    assert format_status(7, None, None, "cpu") == "step 7 · loss — · running · cpu"
    assert format_status(1200, 0.0123456, 2.5, "cuda:0") == (
        "step 1,200 · loss 0.01235 · 2.5 steps/s · cuda:0")
    assert format_status(3, float("nan"), 0.0, "cpu") == "step 3 · loss nan · 0 steps/s · cpu"


def test_the_rate_is_measured_over_half_a_second_of_running_and_forgotten_when_paused():
    from widgets.status import RateMeter
    m = RateMeter()
    assert m.update(0.0, 0, running=True) is None
    assert m.update(0.2, 100, running=True) is None  # too short an interval to mean anything
    assert m.update(0.5, 250, running=True) == 500.0
    assert m.update(3.0, 1500, running=True) == pytest.approx(1250 / 2.5)  # the last 2 s or so
    assert m.update(3.1, 1550, running=False) is None  # paused: no rate, and nothing kept
    assert m.update(60.0, 1551, running=True) is None  # an instant Step N long after: no "0.1 steps/s"
    assert m.update(60.1, 1600, running=True) is None
