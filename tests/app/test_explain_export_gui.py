"""Explain one update and Export as PyTorch script, from the window.

A click on an element of the tensor (paused) opens the Explain dialog with the numbers the
runner computed; they equal ``optimlab explain``'s for the same session and step, and the
session does not move. File > Export as PyTorch script writes a script that reproduces
the session in a fresh interpreter.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QFileDialog

from core.explain import explain, render
from core.session import Session
from core.spec import SetHparam, Step

from .conftest import manual_spec, shown_values, wait_idle, wait_step

SPEC = manual_spec("Adam", {"lr": 0.1, "weight_decay": 0.01}, shape=(2, 3))


def click_element(qtbot, win, row: int, col: int, which: str = "value") -> None:
    """A real left click on the centre of cell (row, col) of the tensor panel's ``which`` view."""
    view = win.tensor_panel.views()[which]
    pw = view.pages.currentWidget()
    vb = pw.getPlotItem().getViewBox()
    centre = QPointF(col + 0.5, row + 0.5)
    qtbot.waitUntil(lambda: vb.viewRect().contains(centre))  # auto range is lazy
    qtbot.mouseClick(pw.viewport(), Qt.MouseButton.LeftButton, pos=pw.mapFromScene(vb.mapViewToScene(centre)))


def explained(qtbot, win, step: int):
    qtbot.waitUntil(lambda: win.explain_dialog is not None and win.explain_dialog.explanation is not None
                    and win.explain_dialog.explanation.step == step)
    return win.explain_dialog.explanation


def test_clicking_an_element_while_paused_explains_its_update_as_the_cli_does(make_window, qtbot):
    win = make_window(SPEC)
    win.step(3)
    wait_step(qtbot, win, 3)
    win.apply(SetHparam(0, "lr", 0.05))
    win.step(2)
    wait_step(qtbot, win, 5)
    shown = shown_values(win)
    click_element(qtbot, win, 1, 2)
    e = explained(qtbot, win, 5)
    plain = Session(SPEC, [Step(3), SetHparam(0, "lr", 0.05), Step(2)])
    assert render(e) == render(explain(plain, "weight", (1, 2)))  # the same numbers as `optimlab explain`
    assert (e.tensor, e.index, e.hparams["lr"], e.mismatch) == ("weight", (1, 2), 0.05, False)
    assert e.torch_after == shown[1, 2]  # torch's new value is the one the window draws
    dlg = win.explain_dialog
    terms = [dlg.table.item(r, 0).text() for r in range(dlg.table.rowCount())]
    assert terms == [t.name for t in e.terms] and len(terms) >= 5
    assert dlg.lastLine().startswith("torch: ") and dlg.lastLine().endswith(" diff: 0 ulp")
    assert "MISMATCH" not in dlg.verdict.text() and "tolerance" in dlg.verdict.text()

    dlg.step.setValue(2)  # an earlier step: replayed on the runner, the session stays at step 5
    qtbot.mouseClick(dlg.go, Qt.MouseButton.LeftButton)
    e2 = explained(qtbot, win, 2)
    assert render(e2) == render(explain(plain, "weight", (1, 2), step=2))
    assert e2.hparams["lr"] == 0.1
    wait_idle(qtbot, win)
    assert win.snapshot.step == 5
    np.testing.assert_array_equal(shown_values(win), shown)


def test_explain_waits_for_a_pause_and_refuses_a_step_with_no_update(make_window, qtbot):
    win = make_window(SPEC)
    click_element(qtbot, win, 0, 0)  # step 0: no update yet
    qtbot.waitUntil(lambda: win.explain_dialog is not None and "no step yet" in win.explain_dialog.verdict.text())
    assert win.explain_dialog.explanation is None and win.explain_dialog.table.rowCount() == 0
    win.explain_dialog.close()
    win.run()
    qtbot.waitUntil(lambda: win.snapshot.running and win.snapshot.step > 0)
    click_element(qtbot, win, 0, 1, "grad")  # answered once the double-click interval is over
    qtbot.waitUntil(lambda: "Pause the run" in win.statusBar().currentMessage())
    assert not win.explain_dialog.isVisible()
    win.pause()
    qtbot.waitUntil(lambda: not win.snapshot.running)
    click_element(qtbot, win, 0, 1, "grad")  # the gradient's element is the same element of the tensor
    e = explained(qtbot, win, win.snapshot.step)
    assert e.index == (0, 1) and win.explain_dialog.isVisible()


def test_file_export_writes_a_script_that_reproduces_the_session(make_window, qtbot, tmp_path, monkeypatch):
    win = make_window(SPEC)
    win.step(4)
    wait_step(qtbot, win, 4)
    win.apply(SetHparam(0, "lr", 0.02))
    win.step(3)
    wait_step(qtbot, win, 7)
    target = tmp_path / "exported"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "Python scripts (*.py)"))
    menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&File")
    action = next(a for a in menu.actions() if a.text() == "Export as PyTorch script…")
    action.trigger()
    qtbot.waitUntil(lambda: "Exported exported.py" in win.statusBar().currentMessage())
    script = tmp_path / "exported.py"
    text = script.read_text()
    assert "optimizer.param_groups[0]['lr'] = 0.02" in text and "import core" not in text
    r = subprocess.run([sys.executable, "-I", str(script)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "reproduced", r.stdout + r.stderr


def test_the_dialog_says_its_last_line_is_the_change_beside_the_values_before_and_after(qtbot):
    from app.explain_dialog import ExplainDialog
    e = explain(Session(SPEC, [Step(2)]), "weight", (1, 2))
    dlg = ExplainDialog()
    qtbot.addWidget(dlg)
    dlg.showExplanation(e)
    text = dlg.verdict.text()
    assert f"theta before: {e.before:.9g}; after: torch {e.torch_after:.9g}" in text
    assert "the change to the element" in text and dlg.lastLine() in text
