"""A comparison steps 2-6 runs in lockstep, and each run is bit for bit the same run made alone."""
import math
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from core import trust
from core.compare import Comparison, RunSpec, config_spec
from core.compare_watch import CrossWatch
from core.session import Session
from core.spec import (GradientSpec, ManualGrad, SchedulerSpec, SessionSpec, SetHparam, SpecError, Step,
                       TensorSpec, ZeroGrad)
from core.task_spec import TaskSpec

from .optimizer_files import NUMPY_NOISE


def manual_base():
    """Random manual gradients every step: each run draws them from its own generator."""
    g = ManualGrad(fill="normal", std=0.5)
    return SessionSpec(tensors=(TensorSpec("w", (3, 4), grad=g), TensorSpec("b", (4,), grad=g)),
                       gradient=GradientSpec("manual", when="every_step"), seed=3, zero_grad_each_step=True)


def rosenbrock_base():
    return SessionSpec(tensors=(TensorSpec("xy", (2,), init="values", values=[-1.5, 2.0]),),
                       gradient=GradientSpec("objective", objective="rosenbrock"), zero_grad_each_step=True)


def digits_base():
    return SessionSpec(zero_grad_each_step=True, gradient=GradientSpec("task", task=TaskSpec(
        kind="digits_mlp", hidden=(16,), batch_size=32, eval_every=4, seed=1)))


STEP_LR = SchedulerSpec("StepLR", {"step_size": 2, "gamma": 0.5}, "epoch")
COSINE = SchedulerSpec("CosineAnnealingLR", {"T_max": 7}, "step")
CASES = {
    "sgd-vs-adam-manual": (manual_base, [("SGD", {"lr": 0.1, "momentum": 0.9}, None), ("Adam", {"lr": 0.01}, None)]),
    "adam-vs-adamw-rosenbrock": (rosenbrock_base, [("Adam", {"lr": 0.01}, None), ("AdamW", {"lr": 0.01}, COSINE),
                                                   ("RMSprop", {"lr": 0.001}, None)]),
    "digits-schedulers": (digits_base, [("SGD", {"lr": 0.05, "momentum": 0.9}, STEP_LR), ("Adam", {}, None),
                                        ("Adam", {"lr": 0.003}, COSINE), ("Adagrad", {}, None)]),
}


def specs_of(case):
    base, configs = CASES[case]
    return [config_spec(base(), name, hp, sched) for name, hp, sched in configs]


def equal_state(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal_state(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def same_run(run_session: Session, alone: Session) -> bool:
    """Parameters, gradients, optimizer state, scheduler state and the loss, all torch.equal."""
    p, q = run_session.params, alone.params
    return (p.keys() == q.keys() and all(torch.equal(p[n], q[n]) for n in p)
            and all(equal_state(p[n].grad, q[n].grad) if q[n].grad is not None else p[n].grad is None for n in p)
            and equal_state(run_session.optimizer.state_dict(), alone.optimizer.state_dict())
            and (alone.scheduler is None or equal_state(run_session.scheduler.state_dict(),
                                                        alone.scheduler.state_dict()))
            and equal_state(run_session.loss, alone.loss))


@pytest.mark.parametrize("case", list(CASES))
def test_each_run_of_a_comparison_equals_the_same_run_alone(case):
    specs = specs_of(case)
    c = Comparison([RunSpec("", s) for s in specs])
    assert c.run(9) == 9
    assert [r.step_count for r in c.runs] == [9] * len(specs)
    for spec, run in zip(specs, c.runs):
        alone = Session(spec)
        alone.run(9)
        assert same_run(run.session, alone), run.label


def test_a_configuration_added_mid_run_catches_up_and_equals_the_run_alone():
    base = digits_base()
    c = Comparison([RunSpec("", config_spec(base, "SGD", {"lr": 0.05}, STEP_LR)),
                    RunSpec("", config_spec(base, "Adam", {}, None))])
    c.run(6)
    late = config_spec(base, "RMSprop", {"lr": 0.002}, COSINE)
    run = c.add(RunSpec("", late))
    assert run.step_count == 6 and run.joined == 6
    c.run(5)
    assert [r.step_count for r in c.runs] == [11, 11, 11]
    alone = Session(late)
    alone.run(11)
    assert same_run(run.session, alone)
    frame = c.make_frame(1)
    pairs = set(frame.history.cross.pairs)
    assert pairs == {(0, 1), (0, 2), (1, 2)}
    d02 = frame.history.cross.between(0, 2)[0]
    assert math.isnan(d02[0]) and math.isfinite(d02[-1])  # the late run's pairs start when it joined


def edited_branch() -> tuple[Session, RunSpec]:
    """A session whose branch steps 3, edits lr and zero_grad, steps 4; and the branch as a
    configuration."""
    s = Session(config_spec(manual_base(), "SGD", {"lr": 0.1, "momentum": 0.9}, None))
    s.apply(Step(3))
    s.apply(SetHparam(0, "lr", 0.02))
    s.apply(ZeroGrad(False))
    s.apply(Step(4))
    return s, RunSpec.from_branch(s, s.timeline.current)


def test_a_promoted_branch_replays_its_edits_at_their_steps():
    base = manual_base()
    s, rs = edited_branch()
    assert [type(a) for _, a in rs.script] == [SetHparam, ZeroGrad]
    c = Comparison([rs, RunSpec("", config_spec(base, "Adam", {}, None))])
    c.run(7)
    assert same_run(c.runs[0].session, s)
    c.run(3)  # past the branch's end: the run goes on with the edited lr
    s.run(3)
    assert same_run(c.runs[0].session, s)
    assert c.runs[0].session.optimizer.param_groups[0]["lr"] == 0.02


def test_runs_with_the_same_configuration_stay_at_distance_zero_with_cosine_one():
    spec = config_spec(rosenbrock_base(), "Adam", {"lr": 0.01}, None)
    c = Comparison([RunSpec("A", spec), RunSpec("B", spec)])
    c.run(20)
    d, cos = c.make_frame(1).history.cross.between(0, 1)
    seen = ~np.isnan(cos)
    assert seen.any()
    assert (d[seen] == 0).all() and (abs(cos[seen] - 1) < 1e-6).all()


def test_distance_and_cosine_are_those_of_the_parameters_and_updates():
    base = manual_base()
    a, b = config_spec(base, "SGD", {"lr": 0.1}, None), config_spec(base, "Adam", {"lr": 0.05}, None)
    c = Comparison([RunSpec("", a), RunSpec("", b)])
    c.run(5)
    before = [torch.cat([p.detach().reshape(-1) for p in r.session.params.values()]) for r in c.runs]
    c.run(1)  # the last step of a run is always measured
    after = [torch.cat([p.detach().reshape(-1) for p in r.session.params.values()]) for r in c.runs]
    d, cos = c.make_frame(1).history.cross.between(0, 1)
    u0, u1 = after[0] - before[0], after[1] - before[1]
    assert d[-1] == pytest.approx(float(torch.linalg.vector_norm(after[0] - after[1])), rel=1e-5)
    assert cos[-1] == pytest.approx(float(u0 @ u1 / (u0.norm() * u1.norm())), rel=1e-5)


def test_a_diverging_run_halts_with_its_reason_and_the_others_go_on():
    base = rosenbrock_base()
    c = Comparison([RunSpec("stable", config_spec(base, "Adam", {"lr": 0.01}, None)),
                    RunSpec("wild", config_spec(base, "SGD", {"lr": 10.0}, None))])
    c.run(50)
    assert c.last_hit is not None and "wild stopped" in c.last_hit.message
    wild = c.runs[1]
    assert wild.halted and wild.step_count < 50
    c.run(5)
    assert c.runs[0].step_count == c.step_count and wild.step_count < c.step_count
    frame = c.make_frame(1)
    assert frame.runs[1].halted == wild.halted


def test_a_comparison_refuses_another_problem_and_the_wrong_number_of_runs():
    base = manual_base()
    with pytest.raises(SpecError, match="2 to 6 configurations, not 1"):
        Comparison([RunSpec("", base)])
    other = config_spec(SessionSpec(**{**base.__dict__, "seed": 4}), "Adam", {}, None)
    with pytest.raises(SpecError, match="not on the comparison's problem: its seed differs"):
        Comparison([RunSpec("", base), RunSpec("other", other)])
    c = Comparison([RunSpec("", base), RunSpec("", config_spec(base, "Adam", {}, None))])
    with pytest.raises(SpecError, match="at least 2"):
        c.remove(0)


SCRIPT = """
import torch
from torch import nn

def make_data():
    x = torch.randn(64, 3)
    y = x.sum(1, keepdim=True)
    return x[:48], y[:48], x[48:], y[48:]

def make_model():
    return nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 1))

def loss_fn(output, target):
    return nn.functional.mse_loss(output, target)
"""


@contextmanager
def dropout_specs(tmp_path):
    """SGD and Adam on a trusted task script whose model has dropout (it draws from torch's
    global generator)."""
    path = tmp_path / "dropout.py"
    path.write_text(SCRIPT)
    trust.trust_file(str(path))
    try:
        base = SessionSpec(zero_grad_each_step=True, gradient=GradientSpec("task", task=TaskSpec(
            kind="script", script=str(path), batch_size=16, eval_every=100, seed=2)))
        yield [config_spec(base, "SGD", {"lr": 0.01}, None), config_spec(base, "Adam", {}, None)]
    finally:
        trust.forget()


def test_runs_whose_model_draws_from_the_global_rng_each_keep_their_own(tmp_path):
    """pytorch#49593: dropout drawing from one shared generator would make lockstep runs differ
    from the same runs made alone."""
    with dropout_specs(tmp_path) as specs:
        torch.manual_seed(11)
        c = Comparison([RunSpec("", s) for s in specs])
        c.run(8)
        for spec, run in zip(specs, c.runs):
            torch.manual_seed(11)
            alone = Session(spec)
            alone.run(8)
            assert same_run(run.session, alone), run.label




def test_runs_of_optimizers_drawing_from_global_generators_each_keep_their_own(tmp_path):
    """SophiaH draws its probes from torch's global generator, a user's optimizer from numpy's:
    two such runs in lockstep would share the draws; each keeps its own, as when run alone."""
    pytest.importorskip("pytorch_optimizer")
    from core import optimizer_names
    path = tmp_path / "noise.py"
    path.write_text(NUMPY_NOISE)
    trust.trust_file(str(path))
    try:
        noise = optimizer_names.file_name(str(path), "NumpyNoise")
        specs = [config_spec(rosenbrock_base(), "pytorch_optimizer.SophiaH", {"lr": 0.01}, None),
                 config_spec(rosenbrock_base(), "pytorch_optimizer.SophiaH", {"lr": 0.02}, None),
                 config_spec(rosenbrock_base(), noise, {"lr": 0.001}, None),
                 config_spec(rosenbrock_base(), noise, {"lr": 0.002}, None)]
        c = Comparison([RunSpec("", s) for s in specs])
        c.run(12)
        for spec, run in zip(specs, c.runs):
            alone = Session(spec)
            alone.run(12)
            assert same_run(run.session, alone), run.label
    finally:
        trust.forget()


def test_running_frames_reuse_recent_curves_and_a_paused_frame_has_them_to_the_last_step():
    """Curves are most of a comparison frame's cost: while running, a frame may carry curves a
    fraction of a second old; once paused, the frame's curves reach the step it shows."""
    c = Comparison([RunSpec("", s) for s in specs_of("sgd-vs-adam-manual")])
    c.run(5)
    first = c.make_frame(1, running=True)
    c.run(5)
    again = c.make_frame(2, running=True)
    assert again.step == 10 and again.history is first.history  # well within HISTORY_EVERY
    paused = c.make_frame(3, running=False)
    assert all(h.step[-1] == 10 for h in paused.history.runs)


def _run_in_turns(c: Comparison, n: int, k: int = 8):
    """Step as the runner does while running: ``advance_many`` turns, stopping at the first hit."""
    done = 0
    while done < n:
        took, hit = c.advance_many(min(k, n - done))
        done += took
        if hit is not None:
            return hit
    return None


@pytest.fixture
def long_turns(monkeypatch):
    """The cross-run floor of later steps (a point every 64) from step 0: turns as long as a long
    run's (early on, the floor's closer points keep them short)."""
    import core.compare_watch
    monkeypatch.setattr(core.compare_watch, "floor_every", lambda step: 64)


@pytest.mark.parametrize("order", ["wild in the middle", "wild last"])
def test_runs_stepped_in_turns_equal_one_step_lockstep_also_when_one_diverges(order, long_turns):
    """Each run takes its steps in a row (the caches stay warm): the same numbers, the same step
    for every run when one stops, as stepping all runs one step at a time."""
    base = rosenbrock_base()
    configs = [RunSpec("stable", config_spec(base, "Adam", {"lr": 0.01}, None)),
               RunSpec("wild", config_spec(base, "SGD", {"lr": 10.0}, None)),
               RunSpec("other", config_spec(base, "RMSprop", {"lr": 0.001}, None))]
    if order == "wild last":
        configs = [configs[0], configs[2], configs[1]]
    one, turns = Comparison(configs), Comparison(configs)
    hit_one = None
    while hit_one is None and one.step_count < 50:
        hit_one = one.advance()
    hit_turns = _run_in_turns(turns, 50)
    assert hit_turns is not None and hit_turns.message == hit_one.message
    assert turns.step_count == one.step_count < 50
    for a, b in zip(one.runs, turns.runs):
        assert a.step_count == b.step_count and bool(a.halted) == bool(b.halted), a.label
        assert same_run(b.session, a.session), a.label
    one.run(12)
    _run_in_turns(turns, 12)
    for a, b in zip(one.runs, turns.runs):
        assert a.step_count == b.step_count and same_run(b.session, a.session), a.label
    assert len(turns.runs[0].session.journal) == len(one.runs[0].session.journal)


@pytest.mark.parametrize("case", ["digits-schedulers", "sgd-vs-adam-manual"])
def test_turns_give_each_run_the_numbers_of_the_run_alone(case, long_turns):
    specs = specs_of(case)
    c = Comparison([RunSpec("", s) for s in specs])
    assert _run_in_turns(c, 37) is None and c.step_count == 37
    for spec, run in zip(specs, c.runs):
        alone = Session(spec)
        alone.run(37)
        assert run.step_count == 37 and same_run(run.session, alone), run.label


def test_a_short_comparison_has_norm_and_distance_curves_not_a_few_points():
    """200 steps of two runs on the digits MLP: the gradient- and update-norm curves of each run
    and the distance between them have points all along (a floor of one point in 64 steps, the
    budget split between the runs, had left about 5), and taking turns still happens later on."""
    base = digits_base()
    c = Comparison([RunSpec("", config_spec(base, "SGD", {"lr": 0.05, "momentum": 0.9}, None)),
                    RunSpec("", config_spec(base, "Adam", {}, None))])
    c.run(200)
    h = c.history()
    for run in h.runs:
        for curve in (run.grad_norm, run.update_norm):
            steps = run.step[np.isfinite(curve)]
            assert len(steps) >= 40 and steps.min() <= 2 and steps.max() >= 190
            assert np.diff(steps).max() <= 16  # no long straight stretches
    distance, cosine = h.cross.between(c.runs[0].id, c.runs[1].id)
    assert np.isfinite(distance).sum() >= 40 and np.isfinite(cosine).sum() >= 40


def test_turns_are_not_cut_short_by_the_floor_and_measure_what_single_steps_measure():
    """The runs take turns of 32 steps from step 0 on (the floor's close early points are measured
    inside the turns, from copies each run keeps), and the distances and cosines so measured are
    those of the same comparison stepped one lockstep step at a time."""
    base = digits_base()
    specs = [RunSpec("", config_spec(base, "SGD", {"lr": 0.05, "momentum": 0.9}, None)),
             RunSpec("", config_spec(base, "Adam", {}, None)), RunSpec("", config_spec(base, "RMSprop", {}, None))]
    turns, single = Comparison(specs), Comparison(specs)
    assert [turns.advance_many(32)[0] for _ in range(4)] == [32] * 4
    for _ in range(128):
        single.advance()
    turns.flush()
    single.flush()
    a, b = turns.history(), single.history()
    for x, y in ((0, 1), (0, 2), (1, 2)):
        (d1, c1), (d2, c2) = a.cross.between(x, y), b.cross.between(x, y)
        n = min(len(d1), len(d2))  # which late steps the time budget measured differs on a loaded machine
        (d1, c1), (d2, c2) = (d1[:n], c1[:n]), (d2[:n], c2[:n])
        seen = np.isfinite(d1) & np.isfinite(d2)
        assert np.isfinite(d1[:16]).all() and seen.sum() >= 20  # every early step, then the floor's
        assert (d1[seen] == d2[seen]).all() and (c1[seen] == c2[seen]).all()


def test_a_turn_keeps_copies_for_at_most_as_many_points_as_memory_allows():
    """Early on the floor wants every step; with room for one point's copies the turn ends at it."""
    w = CrossWatch()
    chosen, k = w.plan(3, 0, 32, at_most=1)
    assert chosen == [1] and k == 1
    chosen, k = w.plan(3, 0, 32, at_most=100)
    assert chosen[:16] == list(range(1, 17)) and k == 32
    assert w.plan(1, 0, 32, at_most=100) == ([], 32)  # one run stepping: nothing between runs
