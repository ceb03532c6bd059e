"""Opening a session that names a Python script asks first, shows the path and a short
hash, runs nothing on a no, and remembers a yes for that file's contents (issue 8, item 1)."""
import json

import pytest

from app import script_trust
from core import trust

from .conftest import WAIT_MS

SCRIPT = '''
import pathlib, torch
pathlib.Path({marker!r}).write_text("ran")
def make_model():
    return torch.nn.Linear(1, 1)
def make_data():
    x = torch.linspace(-1, 1, 40).unsqueeze(1)
    return x[:32], 2 * x[:32], x[32:], 2 * x[32:]
def loss_fn(out, y):
    return torch.nn.functional.mse_loss(out, y)
'''


@pytest.fixture(autouse=True)
def no_agreements():
    trust.forget()
    yield
    trust.forget()


@pytest.fixture
def asked(monkeypatch):
    """Answers the consent question with ``asked.answer``; records what it was shown."""
    class Asked(list):
        answer = False
    calls = Asked()
    calls.whats = []

    def fake(parent, path, digest, what="task script"):
        calls.append((path, digest))
        calls.whats.append(what)
        return calls.answer
    monkeypatch.setattr(script_trust, "ask", fake)
    return calls


def session_file(tmp_path):
    marker = tmp_path / "RAN"
    (tmp_path / "task.py").write_text(SCRIPT.format(marker=str(marker)))
    doc = {"format": "optimlab-spec", "version": 1,
           "spec": {"optimizer": "Adam", "zero_grad_each_step": True,
                    "gradient": {"kind": "task", "task": {"kind": "script", "script": "task.py"}}}}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(doc))
    return p, marker


def test_declining_runs_nothing_and_keeps_the_session(make_window, qtbot, tmp_path, asked):
    win = make_window()
    before = win.spec
    path, marker = session_file(tmp_path)
    win.open_path(path)
    qtbot.waitUntil(lambda: "Not opened" in win.last_error, timeout=WAIT_MS)
    assert asked == [(str(tmp_path / "task.py"), trust.digest(str(tmp_path / "task.py")))]
    assert not marker.exists()
    assert win.spec == before and win.bridge.latest().optimizer == "SGD"


def test_agreeing_opens_it_remembers_and_a_changed_script_asks_again(make_window, qtbot, tmp_path, asked):
    win = make_window()
    path, marker = session_file(tmp_path)
    asked.answer = True
    win.open_path(path)
    qtbot.waitUntil(lambda: win.bridge.latest().optimizer == "Adam", timeout=WAIT_MS)
    assert marker.exists() and len(asked) == 1
    assert any(str(tmp_path / "task.py") in str(v) for v in win.settings.value(script_trust.KEY))
    # the same file again: no question
    win.dirty = False
    win.open_path(path)
    qtbot.waitUntil(lambda: not win.bridge.pending, timeout=WAIT_MS)
    assert len(asked) == 1
    # changed contents: asked again
    script = tmp_path / "task.py"
    script.write_text(script.read_text() + "\n# edited\n")
    asked.answer = False
    win.dirty = False
    win.open_path(path)
    qtbot.waitUntil(lambda: len(asked) == 2, timeout=WAIT_MS)
