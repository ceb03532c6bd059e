"""The seed's walkthrough, clicked through the GUI from a plain 2x2 tensor with SGD defaults."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from core.spec import SessionSpec, TensorSpec

from .conftest import shown_values, type_into_cell, type_line, wait_idle, wait_step

START = [[-0.0947, 1.4217], [-1.3000, -1.0501]]
WEIGHT2 = [[-1.7869, 2.1294, -0.1307], [0.6809, -0.0193, -0.5704], [-0.5512, -2.5028, 0.2141]]
AFTER_FIRST_STEP = [[-0.1947, 1.3217], [-1.4000, -1.1501]]
SEED_PRINTED = [[-1.0900, 0.4263], [-2.2953, -2.0455]]


def test_seed_walkthrough_clicked_through_the_gui_shows_the_seed_numbers(make_window, qtbot):
    win = make_window(SessionSpec(tensors=(TensorSpec("weight", (2, 2)),)))
    c = win.controls

    # Problem dock: explicit values typed into the grid, manual gradient of ones
    win.problem_dock.raise_()
    detail = win.problem.detail
    for r in range(2):
        for col in range(2):
            type_into_cell(qtbot, detail.values, r, col, repr(START[r][col]))
    detail.grad_fill.setCurrentText("constant")
    type_line(qtbot, detail.grad_value, "1")
    qtbot.waitUntil(lambda: np.allclose(win.snapshot.tensor("weight").value.values, START)
                    and win.snapshot.tensor("weight").grad is not None
                    and np.array_equal(win.snapshot.tensor("weight").grad.values, np.ones((2, 2))))
    assert win.problem.spec().tensors[0].init == "values"

    # Optimizer dock: SGD's constructor arguments lr=0.1, momentum=0.9
    win.optimizer_dock.raise_()
    panel = win.optimizer_panel
    assert panel.combo.currentText() == "SGD"
    panel.target.setCurrentIndex(panel.target.findText("Constructor (defaults)"))
    type_line(qtbot, panel.form.editor("lr"), "0.1")
    type_line(qtbot, panel.form.editor("momentum"), "0.9")
    qtbot.waitUntil(lambda: win.snapshot.defaults.get("lr") == 0.1 and win.snapshot.defaults.get("momentum") == 0.9)
    assert panel.form.errorText() == ""

    # Controls: zero_grad(set_to_none=False), one step, zero grad
    if c.setToNoneBox.isChecked():
        qtbot.mouseClick(c.setToNoneBox, Qt.MouseButton.LeftButton)
    assert not c.setToNone()
    qtbot.mouseClick(c.stepButton, Qt.MouseButton.LeftButton)
    wait_step(qtbot, win, 1)
    np.testing.assert_allclose(shown_values(win), AFTER_FIRST_STEP, atol=1e-4)

    qtbot.mouseClick(c.zeroGradButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: win.snapshot.tensor("weight").grad is not None
                    and not win.snapshot.tensor("weight").grad.values.any())

    # Add param group: weight2 with the seed's values, lr=0.0001, nesterov=True
    qtbot.mouseClick(c.addGroupButton, Qt.MouseButton.LeftButton)
    dlg = win.add_dialog
    qtbot.waitExposed(dlg)
    # no Enter between fields: in a dialog it presses the default button (OK)
    type_line(qtbot, dlg.name, "weight2", enter=False)
    type_line(qtbot, dlg.shape, "3, 3", enter=False)
    dlg.init.setCurrentText("values")
    type_line(qtbot, dlg.values, repr(WEIGHT2), enter=False)
    type_line(qtbot, dlg.hparams, "lr=0.0001, nesterov=True", enter=False)
    ok = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert not dlg.isVisible(), dlg.error.text()
    qtbot.waitUntil(lambda: len(win.snapshot.groups) == 2)
    assert dlg.error.text() == ""

    # Step N = 50
    c.stepCountBox.setFocus()
    c.stepCountBox.lineEdit().selectAll()
    qtbot.keyClicks(c.stepCountBox, "50")
    assert c.stepCount() == 50
    qtbot.mouseClick(c.stepNButton, Qt.MouseButton.LeftButton)
    wait_step(qtbot, win, 51)
    wait_idle(qtbot, win)

    # what the window shows
    assert "0.0052" in win.state_tree.text_of(("state", "0", "momentum_buffer"))
    assert win.state_tree.text_of(("param_groups", "1", "lr")) == "lr: 0.0001"
    assert win.state_tree.text_of(("param_groups", "1", "nesterov")) == "nesterov: True"
    assert win.state_tree.text_of(("param_groups", "1", "params")) == "params: [1]"
    np.testing.assert_allclose(shown_values(win), SEED_PRINTED, atol=1e-4)
    np.testing.assert_allclose(shown_values(win, tensor="weight2"), WEIGHT2, atol=1e-6)
    assert win.status.text().startswith("step 51 ")
