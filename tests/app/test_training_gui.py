"""Training a model from the window: task page, decision boundary, scheduler, scripts, regrouping."""
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import Qt

from core.spec import GradientSpec, SchedulerSpec, SessionSpec
from core.task_spec import TaskSpec
from tests.app.conftest import manual_spec, on_runner, type_line, wait_step
from tests.app import probes

EXAMPLES = Path(__file__).resolve().parents[2] / "resources" / "examples"


def task_session():
    return SessionSpec(optimizer="Adam", hparams={"lr": 0.01}, zero_grad_each_step=True,
                       gradient=GradientSpec("task", task=TaskSpec(kind="mlp", n_samples=80, eval_every=5)))


def test_switching_the_problem_to_a_training_task_trains_a_model(make_window, qtbot):
    win = make_window(manual_spec())
    win.problem_mode.setCurrentIndex(1)
    qtbot.waitUntil(lambda: win.spec.gradient.kind == "task")
    qtbot.waitUntil(lambda: "fc1.weight" in [t.name for t in win.bridge.latest().tensors])
    assert win.problem_stack.currentWidget() is win.task_editor
    qtbot.mouseClick(win.controls.stepButton, Qt.MouseButton.LeftButton)
    wait_step(qtbot, win, 1)
    assert win.bridge.latest().loss is not None


def test_decision_boundary_follows_the_run(make_window, qtbot):
    win = make_window(task_session())
    win.decision_dock.raise_()
    win.step(10)
    wait_step(qtbot, win, 10)
    qtbot.waitUntil(lambda: win.decision.decision() is not None)
    d = win.decision.decision()
    assert d.probs.shape == (len(d.ys), len(d.xs)) and len(d.points) > 0
    assert 0.0 <= win.decision.valueAt(float(d.xs[3]), float(d.ys[3])) <= 1.0
    h = win.bridge.latest().history
    assert (h.val_loss[~np.isnan(h.val_loss)]).size == 2  # evaluated at steps 5 and 10


def test_scheduler_chosen_in_the_form_steps_the_lr_as_torch_does(make_window, qtbot):
    win = make_window(task_session())
    form = win.scheduler_form
    form.combo.setCurrentText("StepLR")
    qtbot.waitUntil(lambda: win.spec.scheduler is not None and win.spec.scheduler.name == "StepLR")
    form.every.setCurrentIndex(form.every.findData("step"))
    type_line(qtbot, form.form.editor("step_size"), "2")
    type_line(qtbot, form.form.editor("gamma"), "0.5")
    qtbot.waitUntil(lambda: win.spec.scheduler == SchedulerSpec("StepLR", {"step_size": 2, "gamma": 0.5}, "step"))
    assert on_runner(win, probes.scheduler_name) == "StepLR"
    win.step(5)
    wait_step(qtbot, win, 5)
    # a plain script: the same optimizer settings, StepLR stepped after each of 5 steps
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    expected = []
    for _ in range(5):
        opt.step()
        sched.step()
        expected.append(opt.param_groups[0]["lr"])
    assert all(g.hparams["lr"] == expected[-1] for g in win.snapshot.groups)  # 0.01 halved twice
    lr = win.snapshot.history.lr[0]
    assert lr[np.isfinite(lr)][-1] == expected[-1]


def test_weights_and_biases_regroup_in_one_click(make_window, qtbot):
    win = make_window(task_session())
    qtbot.mouseClick(win.task_editor.decay_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(win.spec.groups) == 2)
    biases = win.spec.groups[1]
    assert all(n.endswith("bias") for n in biases.tensors) and biases.hparams == {"weight_decay": 0.0}


def test_user_script_opens_as_a_task_and_a_broken_one_is_refused(make_window, qtbot, tmp_path):
    win = make_window(manual_spec())
    win.open_script(EXAMPLES / "script_sine_regression.py")
    qtbot.waitUntil(lambda: win.spec.gradient.kind == "task")
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\n\ndef make_data():\n    x = torch.zeros(8, 1)\n    return x, x, x, x\n\n"
                      "def loss_fn(o, t):\n    return o.sum()\n\n"
                      "def make_model():\n    raise RuntimeError('my model is broken')\n")
    before = win.spec
    win.open_script(broken)
    qtbot.waitUntil(lambda: win.last_error != "")
    assert "my model is broken" in win.last_error and "broken.py" in win.last_error
    assert "\n" not in win.last_error and "Traceback" not in win.last_error
    assert "my model is broken" in win.error_box.detailedText()
    assert win.spec == before and win.bridge.runner.alive


def test_one_group_for_all_parameters_lets_lbfgs_train_a_task(make_window, qtbot):
    win = make_window(task_session())
    win.optimizer_panel.combo.setCurrentText("LBFGS")  # one group per layer: refused
    qtbot.waitUntil(lambda: "use one group" in win.last_error)
    assert win.spec.optimizer == "Adam"
    qtbot.mouseClick(win.task_editor.one_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(win.spec.groups) == 1)
    assert set(win.spec.groups[0].tensors) == {t.name for t in win.snapshot.tensors}
    win.optimizer_panel.combo.setCurrentText("LBFGS")
    qtbot.waitUntil(lambda: win.snapshot.optimizer == "LBFGS")
    qtbot.mouseClick(win.controls.stepButton, Qt.MouseButton.LeftButton)
    wait_step(qtbot, win, 1)
    assert win.snapshot.loss is not None and len(win.snapshot.groups) == 1
