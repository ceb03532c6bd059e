"""Optimizers beyond torch.optim in the window: the installed collections on request (skipped
classes greyed out with their reason), and a user's own file after the consent a task script gets."""
import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from app import script_trust
from app.optimizer_panel import FROM_FILE, MORE
from core import optimizer_names, trust

from .conftest import WAIT_MS, manual_spec, wait_idle, wait_step

LEFT = Qt.MouseButton.LeftButton

MY_OPT = '''
import pathlib, torch
pathlib.Path({marker!r}).write_text("ran")


class SignSGD(torch.optim.Optimizer):
    """Steps by the gradient's sign.

    Args:
        lr (float): the step size
    """

    def __init__(self, params, lr=0.5):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                self.state[p]["sign"] = p.grad.sign()
                p.add_(p.grad.sign(), alpha=-g["lr"])
'''


@pytest.fixture(autouse=True)
def no_agreements():
    trust.forget()
    yield
    trust.forget()


@pytest.fixture
def asked(monkeypatch):
    """Answers the consent question with ``asked.answer``; records (path, what)."""
    class Asked(list):
        answer = False
    calls = Asked()
    monkeypatch.setattr(script_trust, "ask", lambda parent, path, digest, what="task script":
                        (calls.append((path, what)), calls.answer)[1])
    return calls


def pick(panel, text):
    panel.combo.setCurrentIndex(panel.combo.findText(text))


def test_more_lists_the_collections_with_skipped_classes_greyed_and_one_chosen_runs(make_window, qtbot):
    pytest.importorskip("lion_pytorch")
    pytest.importorskip("pytorch_optimizer")
    win = make_window(manual_spec(hparams={"lr": 0.1}))
    panel = win.optimizer_panel
    assert panel.combo.findText("lion_pytorch.Lion") < 0  # not imported at start
    pick(panel, MORE)
    qtbot.waitUntil(panel.combo.view().isVisible)  # the list opens again, with them
    panel.combo.hidePopup()
    assert panel.combo.currentText() == "SGD" and panel.combo.findText(MORE) < 0
    skipped = panel.combo.findText("pytorch_optimizer.Lookahead")
    assert not panel.combo.model().item(skipped).isEnabled()
    assert "wraps another optimizer" in panel.combo.itemData(skipped, Qt.ItemDataRole.ToolTipRole)
    assert panel.combo.model().item(panel.combo.findText("pytorch_optimizer.SophiaH")).isEnabled()

    pick(panel, "lion_pytorch.Lion")
    qtbot.waitUntil(lambda: win.spec.optimizer == "lion_pytorch.Lion", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: panel.summary.text().startswith("Lion"), timeout=WAIT_MS)
    assert panel.form.editor("lr") is not None and panel.form.editor("betas") is not None
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    assert "exp_avg" in win.snapshot.tensor("weight").state  # shown like torch's own state


def test_an_optimizer_file_runs_only_after_consent_then_its_class_is_chosen(make_window, qtbot, tmp_path,
                                                                            asked, monkeypatch):
    marker = tmp_path / "RAN"
    path = tmp_path / "my_opt.py"
    path.write_text(MY_OPT.format(marker=str(marker)))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    win = make_window(manual_spec(hparams={"lr": 0.1}))
    panel = win.optimizer_panel

    pick(panel, FROM_FILE)
    assert asked == [(str(path), "optimizer file")]
    assert not marker.exists() and win.spec.optimizer == "SGD" and panel.combo.currentText() == "SGD"

    asked.answer = True
    pick(panel, FROM_FILE)
    name = optimizer_names.file_name(str(path), "SignSGD")
    qtbot.waitUntil(lambda: win.spec.optimizer == name, timeout=WAIT_MS)
    assert marker.exists() and panel.combo.currentText() == name
    qtbot.waitUntil(lambda: panel.summary.text() == "Steps by the gradient's sign.", timeout=WAIT_MS)
    qtbot.mouseClick(win.controls.stepButton, LEFT)
    wait_step(qtbot, win, 1)
    assert set(win.snapshot.tensor("weight").state) == {"sign"}


def test_a_session_naming_an_optimizer_file_asks_about_that_file(make_window, qtbot, tmp_path, asked):
    marker = tmp_path / "RAN"
    (tmp_path / "my_opt.py").write_text(MY_OPT.format(marker=str(marker)))
    doc = {"format": "optimlab-spec", "version": 1,
           "spec": {"optimizer": "file:my_opt.py:SignSGD", "tensors": [{"name": "w", "shape": [3]}],
                    "gradient": {"kind": "objective", "objective": "quadratic"}}}
    (tmp_path / "s.json").write_text(json.dumps(doc))
    win = make_window()
    win.open_path(tmp_path / "s.json")
    qtbot.waitUntil(lambda: "Not opened" in win.last_error, timeout=WAIT_MS)
    assert asked == [(str(tmp_path / "my_opt.py"), "optimizer file")] and not marker.exists()
    asked.answer = True
    win.dirty = False
    win.open_path(tmp_path / "s.json")
    qtbot.waitUntil(lambda: win.spec.optimizer.endswith("my_opt.py:SignSGD"), timeout=WAIT_MS)
    wait_idle(qtbot, win)
    assert win.optimizer_panel.combo.currentText() == win.spec.optimizer and marker.exists()
