"""Devices, device moves, snapshot transfers and thread counts, checked on the CPU.

What can only run on a GPU is in tests/gpu. Here: refusals of devices torch does not
report; a move that takes every tensor a step touches along (checked by moving to
torch's ``meta`` device, which holds no values but says where each tensor lives);
snapshots that read each device once; branches that record their thread count.
"""
import json
import os

import pytest
import torch

from core import devices, edits, objectives, session_file
from core.cli import main
from core.observe import View, make_snapshot
from core.observer import GPU_CHECK_EVERY
from core.runner_process import threads_for
from core.session import Session
from core.spec import (GradientSpec, ManualGrad, SchedulerSpec, SessionSpec, SetDevice, SpecError, Step,
                       TensorSpec, spec_from_dict, spec_to_dict)
from core.task_spec import TaskSpec
from tests.core.sync_counter import SyncCounter


def adam_spec(**kw):
    grad = ManualGrad("normal", std=0.5)
    return SessionSpec(optimizer="Adam", tensors=[TensorSpec("a", (3, 4), grad=grad), TensorSpec("b", (5,), grad=grad),
                                                  TensorSpec("c", (300, 300), grad=grad), TensorSpec("d", (), grad=grad)],
                       gradient=GradientSpec("manual", when="every_step"), **kw)


# ----- refusals -----

@pytest.mark.parametrize("device, words", [("cuda:99", "not available"), ("gpu", "not a torch device"),
                                           ("cuda:x", "not a torch device")])
def test_a_device_torch_does_not_report_is_refused_in_one_sentence(device, words):
    with pytest.raises(SpecError, match=words) as e:
        Session(adam_spec(device=device))
    assert "\n" not in str(e.value) and device in str(e.value)


def test_moving_to_a_device_not_here_is_refused_and_nothing_changes():
    s = Session(adam_spec())
    s.step(2)
    before = {n: p.detach().clone() for n, p in s.params.items()}
    entries = list(s.timeline.branch.journal.entries)
    with pytest.raises(SpecError, match="not available"):
        s.apply(SetDevice("cuda:99"))
    assert s.device == "cpu" and s.timeline.branch.journal.entries == entries
    assert all(torch.equal(before[n], p) for n, p in s.params.items())


def test_a_session_file_for_a_device_not_here_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"format": "optimlab-spec", "version": 1, "journal": [],
                                "spec": {"optimizer": "SGD", "device": "cuda:99",
                                         "tensors": [{"name": "w", "shape": [2]}]}}))
    with pytest.raises(SpecError, match="not available") as e:
        session_file.load_session(path)
    assert "big.json" in str(e.value)


def test_cpu_is_always_there_and_named_canonically():
    assert devices.available()[0] == "cpu"
    assert devices.canonical("cpu") == "cpu"
    assert Session(adam_spec(device="cpu")).device == "cpu"


# ----- a move takes everything along (to torch's "meta" device: places, no values) -----

@pytest.fixture
def meta_is_a_device(monkeypatch):
    monkeypatch.setattr(devices, "available", lambda: ["cpu", "meta"])


def every_tensor(engine):
    """(what, tensor) for every tensor the next step reads."""
    out = [(f"param {n}", p) for n, p in engine.params.items()]
    out += [(f"grad {n}", p.grad) for n, p in engine.params.items() if p.grad is not None]
    for p, st in engine.optimizer.state.items():
        out += [(f"state {k}", v) for k, v in st.items() if isinstance(v, torch.Tensor) and k != "step"]
    if engine.task is not None:
        t = engine.task
        out += [(n, getattr(t, n)) for n in ("train_x", "train_y", "val_x", "val_y")]
        out += [(f"buffer {n}", b) for n, b in t.model.named_buffers()]
        out += [(f"model {n}", p) for n, p in t.model.named_parameters()]
    if engine.loss is not None:
        out.append(("loss", engine.loss))
    return out


def test_a_move_takes_every_tensor_the_step_reads_and_the_observer_follows(meta_is_a_device):
    task = TaskSpec(kind="mlp", dataset="moons", n_samples=200, batch_size=16, eval_every=1000, seed=3)
    s = Session(SessionSpec(optimizer="Adam", hparams={"lr": 0.01}, zero_grad_each_step=True,
                            gradient=GradientSpec("task", task=task),
                            scheduler=SchedulerSpec("StepLR", {"step_size": 5})))
    s.step(3)  # mid-epoch: the task holds this epoch's data order
    assert s.observer.check_every == 1
    s.apply(SetDevice("meta"))
    e = s.engine
    assert e.device == "meta" and s.device == "meta"
    off = [what for what, t in every_tensor(e) if t.device.type != "meta"]
    assert not off, off
    # torch keeps a plain Adam's step counters on the CPU (its load_state_dict rule), as a script's
    assert all(st["step"].device.type == "cpu" for st in e.optimizer.state.values())
    # the data order is drawn on the CPU (the recipe) and copied to the data's device once per epoch
    x, y = e.task.next_batch()
    assert x.device.type == "meta" and e.task._order_here.device.type == "meta"
    assert s.observer.check_every == GPU_CHECK_EVERY  # read back in batches there


def test_a_move_refused_for_the_optimizers_settings_moves_nothing(meta_is_a_device):
    s = Session(SessionSpec(optimizer="Adam", hparams={"fused": True},
                            tensors=[TensorSpec("w", (4,), grad=ManualGrad())]))
    s.step(2)
    with pytest.raises(SpecError, match="fused=True on meta") as e:
        s.apply(SetDevice("meta"))
    assert "\n" not in str(e.value)
    assert s.device == "cpu" and s.params["w"].device.type == "cpu"
    assert s.optimizer.state[s.params["w"]]["exp_avg"].device.type == "cpu"


def test_a_state_captured_on_a_device_not_here_is_refused_in_one_sentence():
    s = Session(adam_spec())
    s.step(1)
    st = s.engine.state()
    names, groups, _ = st["structure"]
    st["structure"] = (names, groups, "cuda:99")
    with pytest.raises(SpecError, match="not available"):
        s.engine.restore(st)


# ----- manual gradients are made on the parameter's device -----

def test_random_manual_gradients_come_from_the_devices_generator_and_survive_a_rewind():
    s = Session(adam_spec(seed=5))
    s.step(4)
    after4 = {n: p.detach().clone() for n, p in s.params.items()}
    s.step(3)
    s.goto(4)
    assert all(torch.equal(after4[n], p) for n, p in s.params.items())
    assert set(s.engine.state()["grad_rngs"]) == set()  # only the CPU's generator was used
    gen = s.engine.grad_gen
    assert gen.device.type == "cpu"


def test_explicit_gradient_values_are_written_once_and_cloned_each_step():
    spec = SessionSpec(optimizer="SGD", hparams={"lr": 0.5},
                       tensors=[TensorSpec("w", (2,), init="zeros", grad=ManualGrad("values", values=[1.0, -2.0]))],
                       gradient=GradientSpec("manual", when="every_step"), zero_grad_each_step=False,
                       set_to_none=False)
    s = Session(spec)
    s.step(1)
    g1 = s.params["w"].grad
    s.step(1)
    assert s.params["w"].grad is not g1  # a fresh tensor each step, as a script's assignment
    assert torch.equal(s.params["w"], torch.tensor([-1.0, 2.0]))


# ----- snapshots: one transfer per device, only what is shown -----

def test_a_snapshot_reads_each_device_once():
    s = Session(adam_spec())
    s.step(3)
    s.flush()  # the runner flushes before it publishes
    with SyncCounter() as syncs:
        snap = make_snapshot(s, 1, running=True)
    assert syncs.count == 1, syncs.report()  # one device here: the CPU
    assert "core/transfer.py" in syncs.syncs[0].where
    c = snap.tensor("c")
    assert c.value.shape == (300, 300) and c.value.values.shape == (150, 150)  # a preview
    assert torch.equal(torch.from_numpy(c.value.values.copy()), s.params["c"].detach()[::2, ::2])
    preview = s.optimizer.state[s.params["c"]]["exp_avg_sq"][::2, ::2].double()  # while running: the preview's
    v = c.state["exp_avg_sq"]
    assert not v.stats_exact and (v.min, v.max) == (float(preview.min()), float(preview.max()))
    assert v.mean == pytest.approx(float(preview.mean()), rel=1e-12)
    assert v.norm == pytest.approx(float(torch.linalg.vector_norm(preview)), rel=1e-12)


def test_an_idle_snapshot_reads_each_device_once_with_exact_statistics():
    s = Session(adam_spec())
    s.step(2)
    s.flush()
    with SyncCounter() as syncs:
        snap = make_snapshot(s, 1, running=False)
    assert syncs.count == 1, syncs.report()
    c, t = snap.tensor("c").state["exp_avg"], s.optimizer.state[s.params["c"]]["exp_avg"]
    assert c.stats_exact
    assert (c.min, c.max) == (float(t.min()), float(t.max()))
    assert c.mean == float(t.mean()) and c.norm == float(torch.linalg.vector_norm(t))
    assert snap.loss is None


def test_tensors_not_shown_travel_as_statistics_only():
    s = Session(adam_spec())
    s.step(2)
    snap = make_snapshot(s, 1, view=View(frozenset({"a"})))
    a, b = snap.tensor("a"), snap.tensor("b")
    assert a.value.shown and a.value.values.shape == (3, 4)
    assert not b.value.shown and b.value.values.size == 0 and not b.grad.shown
    exp_avg = s.optimizer.state[s.params["b"]]["exp_avg"].double()
    v = b.state["exp_avg"]
    assert v.min == float(exp_avg.min()) and v.max == float(exp_avg.max())
    assert v.mean == pytest.approx(float(exp_avg.mean()), rel=1e-12)
    assert b.state["step"].values.shape == ()  # numbers always travel
    edits.set_view(s, ["b"])
    assert make_snapshot(s, 2).tensor("b").value.shown and not make_snapshot(s, 3).tensor("a").value.shown


def test_histograms_are_computed_only_when_a_view_asks():
    s = Session(adam_spec())
    s.step(1)
    assert make_snapshot(s, 1).tensor("c").value.hist_counts is None
    edits.set_view(s, None, histograms=True)
    h = make_snapshot(s, 2).tensor("c").value
    assert h.hist_counts is not None and h.hist_counts.sum() == 150 * 150


def test_the_loss_in_a_snapshot_is_the_sessions():
    s = Session(SessionSpec(optimizer="Adam", tensors=[TensorSpec("xy", (2,), init="values", values=[-1.5, 2.0])],
                            gradient=GradientSpec("objective", objective="rosenbrock")))
    s.step(3)
    assert make_snapshot(s, 1).loss == float(s.engine.loss)


# ----- thread counts -----

@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def quadratic_spec():
    # a reduction over 360,000 numbers: its last bits depend on the thread count (README)
    return SessionSpec(optimizer="SGD", hparams={"lr": 1e-3}, zero_grad_each_step=True, seed=1,
                       tensors=[TensorSpec("w", (600, 600))], gradient=GradientSpec("objective", objective="quadratic"))


def test_a_branch_records_the_thread_count_it_stepped_with(threads, tmp_path):
    torch.set_num_threads(1)
    s = Session(quadratic_spec())
    s.step(2)
    s.flush()
    assert s.timeline.branch.threads == 1
    session_file.save_session(s, tmp_path / "s.optimlab")
    assert session_file.load_session(tmp_path / "s.optimlab").timeline.branch.threads == 1


@pytest.mark.parametrize("n", [1, 2])
def test_a_session_equals_a_plain_script_at_the_same_thread_count(threads, n):
    torch.set_num_threads(n)
    s = Session(quadratic_spec())
    s.step(3)
    w = torch.empty(600, 600)
    torch.nn.init.normal_(w, 0.0, 1.0, generator=torch.Generator().manual_seed(1 * 1_000_003 % 2 ** 63))
    w.requires_grad_(True)
    opt = torch.optim.SGD([w], lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        loss = objectives.quadratic([w], 100.0)
        loss.backward()
        opt.step()
    assert torch.equal(s.params["w"], w) and torch.equal(s.engine.loss, loss.detach())


def test_the_cli_steps_with_the_apps_thread_rule_unless_told(capsys, tmp_path, monkeypatch):
    spec = tmp_path / "q.json"
    spec.write_text(json.dumps({"format": "optimlab-spec", "version": 1, "journal": [],
                                "spec": {"optimizer": "SGD", "tensors": [{"name": "w", "shape": [4]}],
                                         "gradient": {"kind": "objective", "objective": "quadratic"}}}))
    monkeypatch.delenv("OPTIMLAB_THREADS", raising=False)
    assert main(["run", str(spec), "--steps", "2", "--save-session", str(tmp_path / "a.optimlab")]) == 0
    a = session_file.load_session(tmp_path / "a.optimlab")
    assert a.timeline.branch.threads == threads_for(a) == max(1, (os.cpu_count() or 1) - 1)
    assert main(["run", str(spec), "--steps", "2", "--threads", "2", "--save-session", str(tmp_path / "b.optimlab")]) == 0
    assert session_file.load_session(tmp_path / "b.optimlab").timeline.branch.threads == 2
    assert main(["run", str(spec), "--threads", "0"]) == 2
    assert "--threads must be 1 or more" in capsys.readouterr().err


def test_the_step_runs_under_deterministic_algorithms_when_the_spec_asks():
    seen = []
    spec = SessionSpec(optimizer="SGD", deterministic=True, tensors=[TensorSpec("w", (2,), grad=ManualGrad())])
    assert spec_from_dict(spec_to_dict(spec)).deterministic  # it travels in the session's JSON
    s = Session(spec)
    s.optimizer.register_step_pre_hook(lambda *a: seen.append(torch.are_deterministic_algorithms_enabled()))
    s.apply(Step(2))
    assert seen == [True, True] and not torch.are_deterministic_algorithms_enabled()
