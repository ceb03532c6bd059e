"""The Compare window: runs stepped in lockstep and drawn together, a configuration added
mid-run that catches up, save and open, and bad input refused with one sentence."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from core.compare import RunSpec, config_spec
from core.session import Session
from core.spec import GradientSpec, SessionSpec, TensorSpec

BUILD_MS = 90_000  # building the runs (a trial step per optimizer) on a loaded 2-core machine


def rosenbrock() -> SessionSpec:
    return SessionSpec(tensors=(TensorSpec("xy", (2,), init="values", values=[-1.5, 2.0]),),
                       gradient=GradientSpec("objective", objective="rosenbrock"), zero_grad_each_step=True)


@pytest.fixture
def compare_window(qtbot):
    from app.compare_window import CompareWindow
    made = []

    def make(runs=(), path=None):
        w = CompareWindow(runs, path=path, process=False)  # closed below: qtbot's own close comes
        w.show()  # before this fixture's teardown, and would ask about the unsaved comparison
        w.view.setCurrentWidget(w.view.tensors)  # the frames carry the values of the tensor it shows
        made.append(w)
        return w
    yield make
    for w in made:
        w.dirty = False  # closed by the test, not the user (closing asks about unsaved work)
        w.close()
        w.deleteLater()
    QApplication.processEvents()


def stands_at(w, step: int) -> bool:
    f = w.frame
    return f is not None and f.step == step and not f.running and all(r.snapshot.step == step for r in f.runs)


def two_runs():
    base = rosenbrock()
    return [RunSpec("", config_spec(base, "Adam", {"lr": 0.01}, None)),
            RunSpec("", config_spec(base, "SGD", {"lr": 0.001, "momentum": 0.9}, None))]


def test_runs_are_overlaid_each_trajectory_drawn_and_their_numbers_equal_the_runs_alone(compare_window, qtbot):
    runs = two_runs()
    w = compare_window(runs)
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
    w.step(25)
    qtbot.waitUntil(lambda: stands_at(w, 25))
    f = w.frame
    w.view.setCurrentWidget(w.view.curves)  # a tab is drawn when it is open
    for rf, rs in zip(f.runs, runs):
        alone = Session(rs.spec)
        alone.run(25)
        assert np.array_equal(rf.snapshot.tensor("xy").value.values, alone.params["xy"].detach().numpy())
        x, y = w.view.curves.curve("loss", rf.id)
        assert len(x) == 25 and y[-1] == pytest.approx(alone.loss_value())
        line, dot = w.view.landscape.paths[rf.id]
        px, py = dot.getData()
        assert (px[0], py[0]) == tuple(alone.params["xy"].detach().double().numpy())
    assert w.view.curves.curve("lr", f.runs[0].id)[1][-1] == 0.01
    qtbot.waitUntil(lambda: w.view.landscape.isShowingMap())  # one map under both paths
    w.view.setCurrentWidget(w.view.pairs)
    d, cos = w.view.pairs.distance.data((0, 1)), w.view.pairs.cosine.data((0, 1))
    assert d is not None and np.isfinite(d[1][-1]) and d[1][-1] > 0 and -1 <= cos[1][-1] <= 1
    w.view.setCurrentWidget(w.view.tensors)
    w.view.tensors.which.setCurrentText("grad")  # drawn when the frame with its values comes
    qtbot.waitUntil(lambda: [v.title.text() for v in w.view.tensors.views] == [f"{r.label} · xy grad" for r in f.runs])
    assert "steps/s" not in w.statusBar().currentMessage()  # a finished Step N has no rate (it said "0")
    assert w.statusBar().currentMessage().startswith("step 25 · 2 configurations · paused")
    w.view.setCurrentWidget(w.view.table)
    w.view.table.steps.setText("10, 25")
    w.view.table.steps.editingFinished.emit()
    at10 = w.view.table.text(0, 0)
    alone = Session(runs[0].spec)
    alone.run(10)
    assert float(at10) == pytest.approx(alone.loss_value(), rel=1e-4)


def test_frames_carry_the_values_of_the_tensor_the_tensors_tab_shows_and_no_other(compare_window, qtbot):
    """Copying every tensor of every run for each frame was most of a frame's cost; the window
    shows one tensor's heatmaps, on one tab. Switching tensor or tab is followed at once."""
    base = SessionSpec(tensors=(TensorSpec("a", (3, 2)), TensorSpec("b", (4,))),
                       gradient=GradientSpec("objective", objective="quadratic"), zero_grad_each_step=True)
    w = compare_window([RunSpec("", config_spec(base, "Adam", {}, None)),
                        RunSpec("", config_spec(base, "SGD", {"momentum": 0.9}, None))])
    w.view.setCurrentWidget(w.view.curves)
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)

    def carried() -> set:
        return {t.name for r in w.frame.runs for t in r.snapshot.tensors if t.value.shown}
    w.step(3)
    qtbot.waitUntil(lambda: stands_at(w, 3) and carried() == set())  # the Curves tab: no heatmap
    w.view.setCurrentWidget(w.view.tensors)
    qtbot.waitUntil(lambda: carried() == {"a"})
    assert all(v.image is not None and v.image.image is not None for v in w.view.tensors.views)
    w.view.tensors.tensor.setCurrentText("b")
    qtbot.waitUntil(lambda: carried() == {"b"})
    w.view.tensors.which.setCurrentText("state: momentum_buffer")
    qtbot.waitUntil(lambda: w.frame.runs[1].snapshot.tensor("b").state["momentum_buffer"].shown)
    assert w.view.tensors.views[1].title.text().endswith("b state: momentum_buffer")
    w.step(2)
    qtbot.waitUntil(lambda: stands_at(w, 5) and carried() == {"b"})
    w.view.setCurrentWidget(w.view.curves)
    qtbot.waitUntil(lambda: carried() == set())


def test_a_configuration_added_mid_run_catches_up_and_is_drawn(compare_window, qtbot):
    w = compare_window(two_runs())
    qtbot.waitUntil(lambda: w.base is not None, timeout=BUILD_MS)
    w.step(10)
    qtbot.waitUntil(lambda: stands_at(w, 10))
    w.optimizer.setCurrentText("RMSprop")
    w.args.setText("lr=0.001, alpha=0.9")
    w.add_from_form()
    qtbot.waitUntil(lambda: len(w.frame.runs) == 3)
    new = w.frame.runs[2]
    assert new.label == "RMSprop lr=0.001 alpha=0.9" and new.joined == 10 and new.snapshot.step == 10
    alone = Session(config_spec(rosenbrock(), "RMSprop", {"lr": 0.001, "alpha": 0.9}, None))
    alone.run(10)
    assert np.array_equal(new.snapshot.tensor("xy").value.values, alone.params["xy"].detach().numpy())
    w.view.setCurrentWidget(w.view.curves)
    qtbot.waitUntil(lambda: w.view.curves.curve("loss", new.id) is not None
                    and len(w.view.curves.curve("loss", new.id)[0]) == 10)


def test_bad_arguments_are_refused_with_one_sentence_and_nothing_is_added(compare_window, qtbot):
    w = compare_window(two_runs())
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
    w.optimizer.setCurrentText("SGD")
    w.args.setText("lr=fast")
    w.add_from_form()
    assert "lr must be a number, not 'fast'" in w.last_error
    assert len(w.frame.runs) == 2
    w.args.setText("lr=0.01")  # corrected: added, and the refusal leaves the screen
    w.add_from_form()
    qtbot.waitUntil(lambda: len(w.frame.runs) == 3, timeout=BUILD_MS)
    qtbot.waitUntil(lambda: w.status.text().startswith("Added SGD"))  # in place of the refusal
    assert w.last_error == ""


def test_a_saved_comparison_opens_in_a_new_window_where_it_stood(compare_window, qtbot, tmp_path):
    w = compare_window(two_runs())
    qtbot.waitUntil(lambda: w.base is not None, timeout=BUILD_MS)
    w.step(7)
    qtbot.waitUntil(lambda: stands_at(w, 7))
    path = str(tmp_path / "pair.optimlab-compare")
    w.save_to(path)
    qtbot.waitUntil(lambda: (tmp_path / "pair.optimlab-compare").exists())
    again = compare_window(path=path)
    qtbot.waitUntil(lambda: again.frame is not None and again.frame.step == 7
                    and again.frame.runs[0].snapshot.tensor("xy").value.shown, timeout=BUILD_MS)
    assert [r.label for r in again.frame.runs] == [r.label for r in w.frame.runs]
    for a, b in zip(again.frame.runs, w.frame.runs):
        assert np.array_equal(a.snapshot.tensor("xy").value.values, b.snapshot.tensor("xy").value.values)


def test_a_damaged_file_is_refused_naming_it_and_the_comparison_on_screen_stays(compare_window, qtbot, tmp_path):
    w = compare_window(two_runs())
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
    bad = tmp_path / "broken.optimlab-compare"
    bad.write_bytes(b"not a zip at all")
    w.open_path(str(bad))
    qtbot.waitUntil(lambda: bool(w.last_error))
    assert "broken.optimlab-compare" in w.last_error and "\n" not in w.last_error
    assert len(w.frame.runs) == 2


def test_a_branch_promoted_from_the_main_window_replays_its_edits_in_the_comparison(make_window, qtbot):
    from core.spec import SetHparam, Step

    from .conftest import manual_spec
    spec = manual_spec("SGD", {"lr": 0.1, "momentum": 0.9})
    journal = [Step(3), SetHparam(0, "lr", 0.02), Step(2)]
    main = make_window(Session(spec, journal))
    main.compare_process = False  # a runner thread: the test need not start a second process
    main.promote_branch(0)
    qtbot.waitUntil(lambda: bool(main.compare_windows) and main.compare_windows[0].frame is not None,
                    timeout=BUILD_MS)
    w = main.compare_windows[0]
    try:
        assert [r.label.split(":")[0] for r in w.frame.runs] == ["branch 0", "Adam"]
        w.view.setCurrentWidget(w.view.tensors)  # the frames carry its tensor's values
        w.step(5)
        qtbot.waitUntil(lambda: stands_at(w, 5), timeout=BUILD_MS)
        alone = Session(spec, journal)
        shown = w.frame.runs[0].snapshot
        assert np.array_equal(shown.tensor("weight").value.values, alone.params["weight"].detach().numpy())
        assert shown.groups[0].hparams["lr"] == 0.02
    finally:
        w.dirty = False
        main.close_comparisons()


def three_runs():
    base = rosenbrock()
    return two_runs() + [RunSpec("", config_spec(base, "RMSprop", {"lr": 0.001}, None))]


def test_a_removed_configuration_leaves_the_others_as_they_were_and_is_not_saved(compare_window, qtbot, tmp_path):
    from core import compare_file
    runs = three_runs()
    w = compare_window(runs)
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
    w.step(10)
    qtbot.waitUntil(lambda: stands_at(w, 10))
    colours = dict(w.view.slots)
    rows = [w.panel.runs.item(i).text() for i in range(w.panel.runs.count())]
    assert rows == [r.label for r in w.frame.runs]
    w.panel.select(1)
    w.panel.remove_button.click()
    qtbot.waitUntil(lambda: len(w.frame.runs) == 2)
    assert [r.id for r in w.frame.runs] == [0, 2] and w.panel.runs.count() == 2
    assert w.view.slots == {0: colours[0], 2: colours[2]}  # each kept its colour
    w.view.setCurrentWidget(w.view.curves)
    assert w.view.curves.curve("loss", 1) is None
    w.view.setCurrentWidget(w.view.pairs)
    assert set(w.view.pairs.distance.items) == {(0, 2)}
    w.view.setCurrentWidget(w.view.tensors)  # the frames carry its tensor's values
    w.step(5)
    qtbot.waitUntil(lambda: stands_at(w, 15))
    for rf, rs in zip(w.frame.runs, (runs[0], runs[2])):
        alone = Session(rs.spec)
        alone.run(15)
        assert np.array_equal(rf.snapshot.tensor("xy").value.values, alone.params["xy"].detach().numpy())
    path = tmp_path / "two.optimlab-compare"
    w.save_to(str(path))
    qtbot.waitUntil(lambda: path.exists() and w.bridge.pending == 0)
    assert [r.label for r in compare_file.load(str(path)).runs] == [r.label for r in w.frame.runs]
    w.panel.select(2)
    w.panel.remove_button.click()  # only 2 are left: refused, nothing sent
    assert w.last_error.startswith("A comparison needs at least 2 configurations") and "\n" not in w.last_error
    assert w.bridge.pending == 0 and len(w.frame.runs) == 2


def test_a_configuration_added_with_a_scheduler_equals_the_same_run_alone(compare_window, qtbot):
    from core.spec import SchedulerSpec
    from tests.widgets.keys import type_into
    w = compare_window(two_runs())
    qtbot.waitUntil(lambda: w.base is not None and w.frame is not None, timeout=BUILD_MS)
    w.step(4)
    qtbot.waitUntil(lambda: stands_at(w, 4))
    w.optimizer.setCurrentText("SGD")
    w.args.setText("lr=0.0005, momentum=0.9")
    w.scheduler.combo.setCurrentText("StepLR")
    w.scheduler.every.setCurrentIndex(w.scheduler.every.findData("step"))
    type_into(qtbot, w.scheduler.form.editor("step_size"), "3")
    type_into(qtbot, w.scheduler.form.editor("gamma"), "0.5")
    sched = SchedulerSpec("StepLR", {"step_size": 3, "gamma": 0.5}, "step")
    assert w.scheduler.scheduler() == sched
    w.add_from_form()
    qtbot.waitUntil(lambda: len(w.frame.runs) == 3)
    w.step(5)
    qtbot.waitUntil(lambda: stands_at(w, 9))
    new = w.frame.runs[2]
    assert new.label == "SGD lr=0.0005 momentum=0.9 · StepLR"
    alone = Session(config_spec(rosenbrock(), "SGD", {"lr": 0.0005, "momentum": 0.9}, sched))
    alone.run(9)
    assert np.array_equal(new.snapshot.tensor("xy").value.values, alone.params["xy"].detach().numpy())
    assert new.snapshot.groups[0].hparams["lr"] == alone.optimizer.param_groups[0]["lr"] == 0.0005 * 0.5 ** 3

    # the table shows the quantities ticked: lr and the distance to the first run at step 9
    table = w.view.table
    w.view.setCurrentWidget(table)
    for key, on in (("loss", False), ("val_accuracy", False), ("lr", True), ("distance", True)):
        table.columns[key].setChecked(on)
    table.steps.setText("9")
    table.steps.editingFinished.emit()
    assert [table.header(c) for c in range(table.table.columnCount())] == ["lr @ 9", "distance to first @ 9"]
    first = Session(two_runs()[0].spec)
    first.run(9)
    assert float(table.text(2, 0)) == pytest.approx(0.0005 * 0.5 ** 3)
    dist = float(torch.linalg.vector_norm(alone.params["xy"].detach() - first.params["xy"].detach()))
    assert float(table.text(2, 1)) == pytest.approx(dist, rel=1e-4) and float(table.text(0, 1)) == 0


def test_the_tensors_tab_fits_a_small_screen_with_three_long_configurations(compare_window, qtbot):
    base = rosenbrock()
    long = {"lr": 0.001, "momentum": 0.9, "weight_decay": 0.0001, "dampening": 0.1}
    runs = [RunSpec("", config_spec(base, "SGD", dict(long, lr=lr), None)) for lr in (0.001, 0.002, 0.003)]
    w = compare_window(runs)
    qtbot.waitUntil(lambda: w.frame is not None and len(w.view.tensors.views) == 3, timeout=BUILD_MS)
    w.view.setCurrentWidget(w.view.tensors)
    qtbot.waitUntil(lambda: all(v.title.text() for v in w.view.tensors.views))
    titles = [v.title.text() for v in w.view.tensors.views]
    assert all(len(t) > 60 for t in titles)  # whole, for the tooltip and the tests
    for v in w.view.tensors.views:  # a click explains; nothing here edits: not offered
        assert v.hover.text().endswith("hover: values · click: explain</span>") and not v.fillButton.isVisible()
    assert w.view.minimumSizeHint().width() <= 800  # each title asked for its whole width: 1,700 px in all


def test_the_window_fits_a_screen_smaller_than_its_default_size(compare_window, qtbot):
    w = compare_window(two_runs())
    avail = w.screen().availableGeometry()  # the offscreen platform: 800 wide
    assert avail.width() < 1200
    assert w.width() <= avail.width() and w.height() <= avail.height()
    assert avail.contains(w.geometry().topLeft())


def test_a_resumed_session_compared_from_the_main_window_runs_every_configuration_from_its_step(make_window, qtbot,
                                                                                               tmp_path):
    """Compare this configuration on a session resumed at step 7: the runs stand at step 7, the
    window's second run (SGD) starts fresh there, a form-added Adam takes the checkpoint's state
    with its lr, and each equals the same resumed session stepped alone."""
    from core.compare import config_run
    from tests.core.test_resume import plain_run, resumed, session_spec
    path = tmp_path / "ck.pt"
    plain_run("Adam", {"lr": 0.01}, None, 7, save_at=7, path=path)
    s, _ = resumed(session_spec("Adam", {"lr": 0.01}, None), path)
    spec, blobs = s.spec, dict(s.timeline.blobs)
    main = make_window(s)
    main.compare_process = False
    main.compare_current()
    qtbot.waitUntil(lambda: bool(main.compare_windows) and main.compare_windows[0].frame is not None,
                    timeout=BUILD_MS)
    w = main.compare_windows[0]
    try:
        assert w.frame.step == 7 and [r.label for r in w.frame.runs] == ["Adam lr=0.01", "SGD · fresh at step 7"]
        w.optimizer.setCurrentText("Adam")
        w.args.setText("lr=0.002")
        w.add_from_form()
        qtbot.waitUntil(lambda: len(w.frame.runs) == 3, timeout=BUILD_MS)
        w._send_view(None)  # every tensor's values in the frames (the window asks for the one it shows)
        w.step(4)
        qtbot.waitUntil(lambda: stands_at(w, 11), timeout=BUILD_MS)
        assert w.frame.runs[2].label == "Adam lr=0.002 · from the checkpoint's state"
        for i, rs in ((1, config_run(spec, "SGD", {}, None)), (2, config_run(spec, "Adam", {"lr": 0.002}, None))):
            alone = Session(rs.spec, blobs=blobs)
            for _, action in rs.script:
                alone.apply(action)
            alone.run(4)
            shown = w.frame.runs[i].snapshot
            for name, p in alone.params.items():
                assert np.array_equal(shown.tensor(name).value.values, p.detach().numpy()), (i, name)
        assert w.frame.runs[2].snapshot.groups[0].hparams["lr"] == 0.002
        table = w.view.table  # its steps count from the checkpoint's: step 3 is before any run's first
        w.view.setCurrentWidget(table)
        table.steps.setText("3, 9")
        table.steps.editingFinished.emit()
        heads = [table.header(c) for c in range(table.table.columnCount())]
        assert heads and all(h.endswith("@ 9") for h in heads) and table.text(1, 0) not in ("", "-")
        # the checkpoint's Adam state with a scheduler the session has not: one sentence, nothing added
        from tests.widgets.keys import type_into
        w.args.setText("")
        w.scheduler.combo.setCurrentText("StepLR")
        type_into(qtbot, w.scheduler.form.editor("step_size"), "3")
        w.add_from_form()
        qtbot.waitUntil(lambda: "goes on with the session's scheduler (none), not another" in w.last_error,
                        timeout=BUILD_MS)
        assert len(w.frame.runs) == 3
    finally:
        w.dirty = False
        main.close_comparisons()


def test_measure_every_step_fills_the_runs_curves_and_the_series_between_them(compare_window, qtbot):
    """In lockstep the distance/cosine between runs and each run's norms are measured within a
    small share of the time; "Measure every step" replays the runs and fills every step."""
    from core.compare import config_spec as cfg
    w = compare_window([RunSpec("", cfg(rosenbrock(), "Adam", {"lr": 0.01}, None)),
                        RunSpec("", cfg(rosenbrock(), "SGD", {"lr": 0.001, "momentum": 0.9}, None))])
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
    w.step(400)
    qtbot.waitUntil(lambda: stands_at(w, 400), timeout=BUILD_MS)
    cross = w.frame.history.cross
    assert np.isnan(cross.distance[0]).any()  # the budget skipped steps
    qtbot.mouseClick(w.measure_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.status.text().startswith("Measured steps"), timeout=BUILD_MS)
    assert w.measure_button.text() == "Measure every step"
    qtbot.waitUntil(lambda: not np.isnan(w.frame.history.cross.distance[0]).any())
    cross = w.frame.history.cross
    assert len(cross.step) == 400 and not np.isnan(cross.cosine[0][1:]).any()
    for run in w.frame.history.runs:
        assert not np.isnan(run.grad_norm).any()
    assert w.frame.step == 400


def test_after_its_runner_process_dies_recover_steps_the_same_configurations_to_where_they_stood(qtbot):
    """The comparison's runner process killed (as the out-of-memory killer would): Recover builds
    the configurations again in a new process and steps them to the step the comparison stood
    at, with the same values (each run is the same run alone)."""
    import os
    import signal
    from app.compare_window import CompareWindow
    from PySide6.QtCore import Qt as _Qt
    w = CompareWindow(two_runs(), process=True)
    qtbot.addWidget(w)
    w.show()
    try:
        qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
        w.step(25)
        qtbot.waitUntil(lambda: stands_at(w, 25))
        before = [r.snapshot.tensor("xy").value.values.copy() for r in w.frame.runs]
        labels = [r.label for r in w.frame.runs]
        qtbot.waitUntil(lambda: w._recovery is not None)
        assert not w.recover_button.isVisible()
        os.kill(w.bridge.runner._proc.pid, signal.SIGKILL)
        qtbot.waitUntil(lambda: w.frame.error is not None and w.recover_button.isVisible())
        assert "ended unexpectedly" in w.statusBar().currentMessage()
        qtbot.mouseClick(w.recover_button, _Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: w.frame.error is None and stands_at(w, 25), timeout=BUILD_MS)
        assert [r.label for r in w.frame.runs] == labels and not w.recover_button.isVisible()
        for r, b in zip(w.frame.runs, before):
            assert np.array_equal(r.snapshot.tensor("xy").value.values, b)
    finally:
        w.dirty = False
        w.close()


def test_a_click_on_a_runs_element_explains_that_runs_update_against_torch(compare_window, qtbot):
    """The Tensors tab: a click on an element of a run's heatmap explains that run's update of it
    (its optimizer's formula, recomputed, beside the change torch made), as in the main window."""
    w = compare_window(two_runs())
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
    w.step(5)
    qtbot.waitUntil(lambda: stands_at(w, 5))
    qtbot.waitUntil(lambda: len(w.view.tensors.views) == 2 and all(v.view() is not None for v in w.view.tensors.views))
    for at, optimizer in ((0, "Adam"), (1, "SGD")):
        w.view.tensors.views[at].clickAt(1, 0)  # element 1 of the 2-number xy
        qtbot.waitUntil(lambda: w.explain_dialog is not None and w.explain_dialog.explanation is not None
                        and w.explain_dialog.explanation.optimizer == optimizer)
        e = w.explain_dialog.explanation
        assert e.tensor == "xy" and e.index == (1,) and e.step == 5
        assert w.explain_dialog.windowTitle() == f"Explain one update · {w.frame.runs[at].label}"
        assert f"<b>{optimizer}</b>, step 5: " in w.explain_dialog.title.text()  # no branch: a run has none
        assert e.terms[-1].ulps is not None and e.terms[-1].ulps <= e.tolerance
    w.bridge.set_rate_limit(50)
    w.toggle_run()  # running: a click says to pause first, and explains nothing
    qtbot.waitUntil(lambda: w.frame.running)
    asked = w.explain_dialog._token
    w.view.tensors.views[0].clickAt(1, 0)
    assert w.last_error == "Pause the comparison to explain an update" and w.explain_dialog._token == asked
    w.toggle_run()
    qtbot.waitUntil(lambda: not w.frame.running)
    dialog = w.explain_dialog
    assert dialog.isVisible()
    w.dirty = False
    w.close()  # the dialog asks this window's runner: it closes with the window
    assert not dialog.isVisible()


def test_a_configuration_exports_as_a_plain_pytorch_script_from_its_context_menu(compare_window, qtbot, tmp_path,
                                                                                  monkeypatch):
    """Right-click > Export … as a PyTorch script: the file dialog's path gets the run as a script
    that reproduces it (tested run in a fresh interpreter in tests/core/test_export.py)."""
    from PySide6.QtWidgets import QFileDialog
    w = compare_window(two_runs())
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
    w.step(10)
    qtbot.waitUntil(lambda: stands_at(w, 10))
    target = tmp_path / "sgd.py"
    asked = {}

    def save_name(parent, title, name, filters):
        asked["title"], asked["name"] = title, name
        return str(target), filters
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save_name))
    sgd = w.frame.runs[1]
    w.panel.exportRequested.emit(sgd.id)
    qtbot.waitUntil(lambda: target.exists() and w.status.text() == "Wrote sgd.py")
    assert asked == {"title": f"Export {sgd.label} as a PyTorch script", "name": "sgd_run.py"}
    text = target.read_text()
    assert "import optimlab" not in text and "torch.optim.SGD(" in text and "reproduced" in text


def test_a_note_of_what_just_happened_leaves_after_a_while_and_a_refusal_stays(compare_window, qtbot, monkeypatch):
    from app import compare_window as cw
    monkeypatch.setattr(cw, "NOTE_MS", 300)
    w = compare_window(two_runs())
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
    w._say("Saved c.optimlab-compare")
    assert w.status.text() == "Saved c.optimlab-compare"
    qtbot.waitUntil(lambda: w.status.text() == "")
    w.show_error("lr must be a number, not 'fast'")
    qtbot.wait(600)
    assert "lr must be a number" in w.status.text()  # a refusal stays until something supersedes it


def test_a_comparison_left_open_when_optimlab_ended_is_offered_at_the_next_start_and_reopens_equal(
        compare_window, make_window, qtbot):
    """The window's own process can end too: the configurations and the step are on disk while
    the Compare window is open (removed when it closes as asked); a main window started later
    offers them and Reopen steps the configurations in lockstep to where they stood, with the
    same values. An opened file's comparison, with a configuration added, comes back too."""
    import json
    import subprocess
    import sys
    from app import recovery_ui
    from .test_timeline_gui import quadratic_spec
    runs = two_runs()
    w = compare_window(runs)
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
    w.step(12)
    qtbot.waitUntil(lambda: stands_at(w, 12))
    w.add(RunSpec("", config_spec(runs[0].spec, "RMSprop", {"lr": 0.01}, None)))
    qtbot.waitUntil(lambda: w.frame is not None and len(w.frame.runs) == 3 and stands_at(w, 12))
    f = w.recovery_file

    def kept():
        doc = json.loads(f.read_text()) if f.exists() else {"step": None, "runs": []}
        return doc["step"], [r["label"] for r in doc["runs"]]
    labels = [r.label for r in w.frame.runs]
    qtbot.waitUntil(lambda: kept() == (12, labels))
    before = [r.snapshot.tensor("xy").value.values.copy() for r in w.frame.runs]
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    left = f.with_name(f"compare-{dead}-1.json")  # as if its process had ended
    left.write_bytes(f.read_bytes())
    assert recovery_ui.left_behind() == [left]
    main = make_window(quadratic_spec(shape=(2, 2)))
    main.compare_process = False
    assert main.offer_left_behind()
    assert "while a comparison was open" in main.left_box.text()
    qtbot.mouseClick(main.reopen_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(main.compare_windows) == 1)
    again = main.compare_windows[0]
    again.view.setCurrentWidget(again.view.tensors)
    try:
        qtbot.waitUntil(lambda: again.frame is not None and stands_at(again, 12) and not left.exists(),
                        timeout=BUILD_MS)
        assert [r.label for r in again.frame.runs] == labels
        qtbot.waitUntil(lambda: all(r.snapshot.tensor("xy").value is not None for r in again.frame.runs))
        for r, b in zip(again.frame.runs, before):
            assert np.array_equal(r.snapshot.tensor("xy").value.values, b)
        assert "Recovered the comparison" in again.status.text() and again.dirty  # not saved anywhere yet
    finally:
        again.dirty = False
        again.close()
    assert not again.recovery_file.exists()
    w.dirty = False
    w.close()  # closed as asked: its file goes
    assert not f.exists()


def test_what_optimlab_left_of_a_session_and_a_comparison_is_offered_in_one_question(make_window, tmp_path):
    import os
    from app import recovery_ui
    d = recovery_ui.recovery_dir()
    d.mkdir(parents=True, exist_ok=True)
    gone = 2 ** 22 + 12345  # no such process
    for name in (f"session-{gone}.json", f"compare-{gone}-1.json", f"compare-{gone}-2.json",
                 f"compare-{gone + 1}-1.json", "notes.json"):
        (d / name).write_text("{}")
    os.utime(d / f"compare-{gone + 1}-1.json", (1, 1))  # an older process's: removed
    main = make_window(SessionSpec(tensors=(TensorSpec("w", (2,)),)))
    assert main.offer_left_behind()
    assert "while a session and 2 comparisons were open" in main.left_box.text()
    assert not (d / f"compare-{gone + 1}-1.json").exists() and (d / "notes.json").exists()
    main.left_box.button(main.left_box.StandardButton.Discard).click()
    assert sorted(p.name for p in d.iterdir() if p != main.recovery_file) == ["notes.json"]


def test_closing_an_unsaved_comparison_asks_and_cancel_keeps_it_open_with_the_main_window(
        compare_window, make_window, qtbot, tmp_path, monkeypatch):
    """Steps or configurations not saved: closing the Compare window (or the main window, which
    closes it) asks Save, Discard or Cancel; Cancel keeps both open, Save writes the file and
    closes. A comparison just opened or saved closes without a question."""
    from PySide6.QtWidgets import QFileDialog, QMessageBox
    from app.compare_window import CompareWindow
    from core import compare_file
    answers, asked = [], []

    def exec_(box):
        asked.append(box.text())
        return answers.pop(0)
    monkeypatch.setattr(QMessageBox, "exec", exec_)
    main = make_window(SessionSpec(tensors=(TensorSpec("w", (2,)),)))
    w = compare_window(two_runs())
    main.compare_windows.append(w)
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
    assert not w.dirty and w.windowTitle() == "optimlab · Compare"
    w.step(4)
    qtbot.waitUntil(lambda: stands_at(w, 4) and w.dirty)
    assert w.windowTitle() == "optimlab · Compare *"
    answers.append(QMessageBox.StandardButton.Cancel)
    assert not main.close()  # the Compare window's question, cancelled: both stay
    assert asked and "not saved" in asked[-1] and w.isVisible() and main.isVisible()
    opened = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (opened.append(1), ("", ""))[1])
    answers.append(QMessageBox.StandardButton.Cancel)
    w._ask_open()  # Open… would replace it: asked first; cancelled, nothing is opened
    assert len(asked) == 2 and not opened and w.dirty
    path = tmp_path / "kept.optimlab-compare"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "kept"), ""))
    answers.append(QMessageBox.StandardButton.Save)
    assert w.close() and not w.isVisible()
    assert compare_file.load(path).step_count == 4  # saved where asked, with the extension
    n = len(asked)
    again = CompareWindow(path=str(path), process=False)
    qtbot.addWidget(again)
    again.show()
    qtbot.waitUntil(lambda: again.frame is not None and again.path == path)
    assert not again.dirty and again.windowTitle() == "optimlab · Compare — kept.optimlab-compare"
    assert again.close() and len(asked) == n  # nothing to ask


def test_a_tab_opened_shows_the_last_frame_at_once(compare_window, qtbot):
    """Only the open tab is drawn at each frame (the hidden curves had cost the window more than
    the heatmaps shown); opening another draws it from the last frame, without waiting for one."""
    w = compare_window(two_runs())
    qtbot.waitUntil(lambda: w.frame is not None and w.base is not None, timeout=BUILD_MS)
    w.step(12)
    qtbot.waitUntil(lambda: stands_at(w, 12))
    assert w.view.currentWidget() is w.view.tensors
    assert w.view.curves.curve("loss", w.frame.runs[0].id) is None  # not drawn while hidden
    w.view.setCurrentWidget(w.view.curves)
    assert [len(w.view.curves.curve("loss", r.id)[0]) for r in w.frame.runs] == [12, 12]
    w.view.setCurrentWidget(w.view.pairs)
    assert set(w.view.pairs.distance.items) == {(0, 1)}
