"""The Optimizer dock as a new user meets it: what "Edit" edits, what a refusal says, what runs."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from .conftest import manual_spec, shown_values, type_line, wait_idle, wait_step

LEFT = Qt.MouseButton.LeftButton


def add_group(qtbot, win, hparams: str):
    qtbot.mouseClick(win.controls.addGroupButton, LEFT)
    dlg = win.add_dialog
    qtbot.waitExposed(dlg)
    type_line(qtbot, dlg.hparams, hparams, enter=False)
    qtbot.mouseClick(dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok), LEFT)
    return dlg


def test_before_the_first_step_edits_go_to_the_constructor_and_an_added_group_inherits_them(make_window, qtbot):
    win = make_window(manual_spec(hparams={"lr": 0.1}))
    panel = win.optimizer_panel
    assert panel.target.currentText() == "Constructor (defaults)"
    assert "restart" in panel.target_note.text()
    type_line(qtbot, panel.form.editor("momentum"), "0.9")
    qtbot.waitUntil(lambda: win.snapshot.defaults.get("momentum") == 0.9)
    qtbot.waitUntil(lambda: not win.bridge.pending)  # the answer (the new spec) follows the snapshot
    assert win.spec.hparams["momentum"] == 0.9  # the constructor's, as the seed's walkthrough sets it

    dlg = add_group(qtbot, win, "lr=0.0001, nesterov=True")  # nesterov needs the inherited momentum
    assert not dlg.isVisible(), dlg.error.text()
    qtbot.waitUntil(lambda: len(win.snapshot.groups) == 2)
    g1 = win.snapshot.groups[1].hparams
    assert g1["nesterov"] is True and g1["momentum"] == 0.9

    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    qtbot.waitUntil(lambda: panel.target.currentText() == "group 0: weight")  # now a live edit
    assert "next step" in panel.target_note.text()


def test_a_refusal_caused_by_an_inherited_default_names_that_default(make_window, qtbot):
    win = make_window(manual_spec(hparams={"lr": 0.1}))
    dlg = add_group(qtbot, win, "lr=0.0001, nesterov=True")
    assert dlg.isVisible()
    msg = dlg.error.text()
    assert msg.startswith("Nesterov momentum requires a momentum and zero dampening")
    assert "inherits momentum=0" in msg and "defaults" in msg
    dlg.reject()
    wait_idle(qtbot, win)
    assert len(win.snapshot.groups) == 1


def test_a_refused_value_is_explained_beside_its_field_and_the_status_bar_says_what_still_runs(
        make_window, qtbot):
    win = make_window(manual_spec(hparams={"lr": 0.5}))
    panel = win.optimizer_panel
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    qtbot.waitUntil(lambda: panel.target.currentText() == "group 0: weight")
    type_line(qtbot, panel.form.editor("lr"), "-2")
    label = panel.form.errorLabel("lr")
    qtbot.waitUntil(label.isVisible)
    assert label.text() == "Invalid learning rate: -2.0"
    assert not label.visibleRegion().isEmpty()  # on screen, not below the fold of a scroll box
    assert win.invalid_note.isVisible()
    assert win.invalid_note.text() == ("lr = -2 refused: group 0 keeps lr = 0.5 until the field is fixed "
                                       "(Esc restores it)")
    before = shown_values(win)
    qtbot.mouseClick(win.controls.stepButton, LEFT)  # the step runs with what the status bar says
    wait_step(qtbot, win, 2)
    np.testing.assert_allclose(before - shown_values(win), np.full((2, 2), 0.5), atol=1e-6)
    type_line(qtbot, panel.form.editor("lr"), "0.25")
    qtbot.waitUntil(lambda: not win.invalid_note.isVisible())
    assert not label.isVisible()


def test_a_tensor_added_by_add_group_is_listed_in_the_problem_table(make_window, qtbot):
    win = make_window(manual_spec(hparams={"lr": 0.1, "momentum": 0.9}))
    dlg = add_group(qtbot, win, "lr=0.0001")
    assert not dlg.isVisible(), dlg.error.text()
    qtbot.waitUntil(lambda: len(win.snapshot.groups) == 2)
    table = win.problem.table
    qtbot.waitUntil(lambda: table.rowCount() == 2)
    assert [table.item(r, 0).text() for r in range(2)] == ["weight", "weight2"]
    assert table.item(1, 1).text() == "3, 3" and table.item(1, 2).text() == "added · group 1"
    assert not table.item(1, 0).flags() & Qt.ItemFlag.ItemIsEditable  # the run's, not the problem's
    assert "add_param_group" in table.item(1, 0).toolTip()
    assert [t.name for t in win.problem.spec().tensors] == ["weight"]
    win.problem_dock.raise_()
    win.problem.seed.setValue(7)  # an edit of the problem restarts without it, and the row goes
    qtbot.waitUntil(lambda: win.spec.seed == 7 and len(win.snapshot.groups) == 1)
    qtbot.waitUntil(lambda: table.rowCount() == 1)
