"""File > Attach to a running script and File > Open checkpoint: the same heatmaps, curves and
state tree as the app's own sessions, for a user's script and for a checkpoint on disk."""
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from app.attach import AttachWindow, open_attached
from app.checkpoint_view import open_checkpoint_window
from core.watch import Watch


@pytest.fixture(autouse=True)
def private_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIMLAB_RUNTIME_DIR", str(tmp_path / "run"))


class Script:
    """A user's training loop on its own thread (the GUI never steps it)."""

    def __init__(self):
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.w = Watch(self.opt, model=self.model, name="gui-script", max_hz=50)
        self.x = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            self.opt.zero_grad()
            loss = self.model(self.x).pow(2).mean()
            loss.backward()
            self.w.report(loss=loss)
            self.opt.step()

    def close(self):
        self.stop.set()
        self.w.close()
        self.thread.join(10)


def test_attach_window_draws_the_scripts_frames_and_pauses_steps_and_resumes_it(qtbot):
    script = Script()
    win = AttachWindow(script.w.address)
    qtbot.addWidget(win)
    try:
        win.show()
        qtbot.waitUntil(lambda: win.tensor_combo.count() == 4)
        assert [win.tensor_combo.itemText(i) for i in range(4)] == ["0.weight", "0.bias", "2.weight", "2.bias"]
        win.pause_button.click()
        qtbot.waitUntil(lambda: script.w.publisher.control.held_at is not None)
        held = script.w.publisher.control.held_at
        qtbot.waitUntil(lambda: win.snapshot.step == held and not win.snapshot.running)
        assert "paused" in win.status.text()
        shown = win.tensor_panel.views()["value"].view().values
        assert np.array_equal(shown, script.model[0].weight.detach().numpy())
        assert np.array_equal(win.tensor_panel.views()["momentum_buffer"].view().values,
                              script.opt.state[script.model[0].weight]["momentum_buffer"].numpy())
        assert len(win.curves.history().loss) == held
        win.step_count.setValue(2)
        win.step_button.click()
        qtbot.waitUntil(lambda: win.snapshot.step == held + 2 and not win.snapshot.running)
        assert script.w.step == held + 2
        win.resume_button.click()
        qtbot.waitUntil(lambda: script.w.step > held + 10)
        assert win.last_reply["ok"]
        script.close()  # the script ends: the window says so and keeps its last frame
        qtbot.waitUntil(lambda: win.ended)
        assert not win.pause_button.isEnabled() and "has ended" in win.statusBar().currentMessage()
        assert win.tensor_panel.views()["value"].view() is not None
    finally:
        win.close()
        script.close()


def test_open_checkpoint_shows_each_parameters_state_by_name_as_heatmaps(qtbot, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 5)).sum().backward()
    opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 2}, tmp_path / "c.pt")
    owner = QWidget()
    qtbot.addWidget(owner)
    win = open_checkpoint_window(owner, tmp_path / "c.pt")
    try:
        top = win.tree.topLevelItem(0)
        assert [top.child(i).text(0) for i in range(top.childCount())] == ["0.weight", "0.bias", "2.weight", "2.bias"]
        qtbot.waitUntil(lambda: "exp_avg" in win.tensor_panel.views())
        st = opt.state[model[0].weight]
        assert np.array_equal(win.tensor_panel.views()["exp_avg_sq"].view().values, st["exp_avg_sq"].numpy())
        assert np.array_equal(win.tensor_panel.views()["value"].view().values, model[0].weight.detach().numpy())
        avail = win.screen().availableGeometry()  # 1200x760 ran off a small screen
        assert win.width() <= avail.width() and win.height() <= avail.height()
        # read only: no empty "grad" slot (a checkpoint holds none), no offer to explain or edit
        assert list(win.tensor_panel.views()) == ["value", "exp_avg", "exp_avg_sq"]
        for view in win.tensor_panel.views().values():
            assert "explain" not in view.hover.text() and "edit" not in view.hover.text()
            assert not view.fillButton.isVisible()
        with qtbot.assertNotEmitted(win.tensor_panel.explainRequested):
            win.tensor_panel.views()["value"].elementClicked.emit((0, 0))
        win.tree.setCurrentItem(top.child(2))
        qtbot.waitUntil(lambda: win.tensor_panel.views()["value"].view().shape == (2, 3))
        assert np.array_equal(win.tensor_panel.views()["exp_avg"].view().values,
                              opt.state[model[2].weight]["exp_avg"].numpy())
    finally:
        win.close()


def test_file_open_checkpoint_opens_a_window_and_refuses_a_bad_file_in_the_main_windows_box(
        make_window, qtbot, tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "good.pt")
    (tmp_path / "bad.pt").write_bytes(b"\x00not a checkpoint")
    chosen = [str(tmp_path / "good.pt")]
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (chosen[0], ""))
    win = make_window()
    file_menu = win.menuBar().actions()[0].menu()
    actions = {a.text(): a for a in file_menu.actions()}
    assert {"Attach to a running script…", "Open checkpoint folder…"} <= set(actions)
    actions["Open checkpoint…"].trigger()
    (opened,) = win._real_runs_windows
    qtbot.waitUntil(lambda: "momentum_buffer" in opened.norms)
    assert opened.tree.topLevelItem(0).child(0).text(0) == "weight"
    opened.close()
    chosen[0] = str(tmp_path / "bad.pt")
    actions["Open checkpoint…"].trigger()
    qtbot.waitUntil(lambda: "bad.pt" in win.last_error)
    assert "is not a readable torch.save file" in win.last_error and "\n" not in win.last_error
    assert win._real_runs_windows in ([], [opened])  # no window for the refused file


def boxes(owner):
    return [b for b in owner.findChildren(QMessageBox) if b.isVisible()]


def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_sentence_naming_it(qtbot, tmp_path):
    path = tmp_path / "notes.pt"
    path.write_bytes(b"these are my notes, not a checkpoint\n")
    owner = QWidget()
    qtbot.addWidget(owner)
    owner.show()
    assert open_checkpoint_window(owner, path) is None
    qtbot.waitUntil(lambda: len(boxes(owner)) == 1)
    (box,) = boxes(owner)
    assert "notes.pt" in box.text() and "\n" not in box.text() and "Traceback" not in box.text()
    assert not owner.__dict__.get("_real_runs_windows")


class Trap:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_with_a_class_opens_with_that_entry_not_loaded_and_runs_nothing(qtbot, tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    marker = tmp_path / "executed"
    torch.save({"state_dict": model.state_dict(), "optimizer_states": [opt.state_dict()],
                "callbacks": [Trap(marker)]}, tmp_path / "trap.ckpt")
    owner = QWidget()
    qtbot.addWidget(owner)
    win = open_checkpoint_window(owner, tmp_path / "trap.ckpt")
    try:
        assert not marker.exists()
        assert "callbacks[0]: not loaded: needs class builtins.getattr" in win.notes.text()
        top = win.tree.topLevelItem(0)
        assert [top.child(i).text(0) for i in range(2)] == ["weight", "bias"]
        assert [top.child(0).text(c) for c in (1, 2)] == ["2x3", "float32"]
        qtbot.waitUntil(lambda: "exp_avg" in win.norms)
        st = opt.state[model.weight]
        assert win.norms["exp_avg"] == float(torch.linalg.vector_norm(st["exp_avg"].double()))
        assert win.norms["value"] == float(torch.linalg.vector_norm(model.weight.detach().double()))
        assert "‖exp_avg‖" in win.statusBar().currentMessage()
    finally:
        win.close()
    assert not marker.exists()


def test_attaching_where_no_script_runs_is_refused_in_one_sentence(qtbot, tmp_path):
    owner = QWidget()
    qtbot.addWidget(owner)
    owner.show()
    assert open_attached(owner, str(tmp_path / "gone")) is None
    qtbot.waitUntil(lambda: len(boxes(owner)) == 1)
    (box,) = boxes(owner)
    assert "No watched script is running at" in box.text() and "\n" not in box.text()


def test_the_attach_list_names_the_running_script_file_beside_the_run(qtbot, monkeypatch):
    """File > Attach lists each watched script as ``train.py: Sequential (pid, optimizer) ·
    address``: the file the user started is what they recognise, not only the model's class."""
    from app import attach
    from core import channel
    import __main__
    monkeypatch.setattr(__main__, "__file__", "/home/me/project/train.py", raising=False)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1))
    opt = torch.optim.Adam(model.parameters())
    w = Watch(opt, model=model, max_hz=50)
    try:
        found = channel.running()
        assert len(found) == 1
        ep, info = found[0]
        label = attach.attach_label(ep, info)
        assert label.startswith(f"train.py: Sequential (pid {info['pid']}, Adam) · ")
        asked = {}

        def get_item(parent, title, label_text, items, current, editable):
            asked["items"] = items
            return items[0], True
        monkeypatch.setattr(attach.QInputDialog, "getItem", staticmethod(get_item))
        assert attach.choose_address(None) == str(ep.base)  # the address is what is attached to
        assert asked["items"] == [label]
    finally:
        w.close()
