"""The timeline: nothing the user did is lost; any step of any branch comes back exactly.

A session rewound to step k equals (torch.equal, everything a step depends on) a fresh
session that ran the same actions and stopped at k; test_fidelity shows that a fresh
session equals a plain PyTorch script.
"""
import random

import numpy as np
import pytest
import torch

from core import catalogue, edits, files
from core.session import Session
from core.spec import (AddGroup, EditTensor, GradientSpec, LoadOptimizer, SessionSpec, SetHparam, Step,
                       TensorSpec, ZeroGrad)
from core.task_spec import TaskSpec
from core.timeline import Checkpoints
from tests.core.test_fidelity import ALL, kinds_for, make_spec


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dtype != b.dtype:
            return False
        a = a.to_dense() if a.is_sparse else a
        b = b.to_dense() if b.is_sparse else b
        return a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def state_of(s: Session) -> dict:
    """Everything the next steps depend on."""
    return {"step": s.step_count,
            "params": {n: p.detach() for n, p in s.params.items()},
            "grads": {n: p.grad for n, p in s.params.items()},
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict() if s.scheduler is not None else None,
            "task": s.task.state() if s.task is not None else None,
            "grad_rng": s.grad_gen.get_state(),
            "loss": s.loss}


def assert_same(a: Session, b: Session, where=""):
    sa, sb = state_of(a), state_of(b)
    for k in sa:
        assert same(sa[k], sb[k]), f"{where}: {k} differs"


def replay(spec, actions, upto: int, blobs=None) -> Session:
    """A fresh session doing ``actions`` and stopping right after step ``upto``."""
    s = Session(spec, blobs=blobs)
    for a in actions:
        if isinstance(a, Step):
            n = min(a.n, upto - s.step_count)
            if n <= 0:
                break
            s.apply(Step(n))
        else:
            if s.step_count >= upto and upto < total_steps(actions):
                break
            s.apply(a)
    return s


def total_steps(actions) -> int:
    return sum(a.n for a in actions if isinstance(a, Step))


@pytest.mark.parametrize("name", ALL)
def test_rewind_to_any_step_equals_a_run_stopped_there(name):
    kind = kinds_for(name)[-1]  # manual random gradients where possible: the generator must come back
    spec = make_spec(name, kind)
    actions = [Step(9), SetHparam(0, "lr", 0.003), Step(8)]
    if name not in catalogue.ONE_GROUP:
        actions += [AddGroup((TensorSpec("extra", (2, 2), grad=spec.tensors[0].grad),), {"lr": 0.002})]
    actions += [ZeroGrad(False), Step(11)]
    s = Session(spec)
    for a in actions:
        s.apply(a)
    assert s.timeline.checkpoints.count() > 0, "the run kept checkpoints"
    rng = random.Random(name)
    for k in sorted({0, 1, 9, 17, 28, *rng.sample(range(28), 5)}):
        s.goto(k)
        assert s.step_count == k and not (s.at_head and k < 28)
        assert_same(s, replay(spec, actions, k), f"{name} at step {k}")
    s.goto(None)  # back to the head
    assert s.at_head and s.step_count == 28
    assert_same(s, replay(spec, actions, 28), f"{name} at the head")


def digits_spec():
    task = TaskSpec("digits_mlp", hidden=(16,), batch_size=64, eval_every=7, seed=3)
    return SessionSpec(optimizer="SGD", hparams={"lr": 0.05, "momentum": 0.9}, zero_grad_each_step=True,
                       gradient=GradientSpec("task", task=task),
                       scheduler=__import__("core.spec", fromlist=["SchedulerSpec"]).SchedulerSpec(
                           "StepLR", {"step_size": 1, "gamma": 0.7}, "epoch"))


def test_rewind_a_task_with_a_scheduler_an_edit_and_a_load(tmp_path):
    spec = digits_spec()
    donor = Session(spec)
    donor.step(5)
    path = tmp_path / "opt.pt"
    files.save_optimizer(donor, path)
    s = Session(spec)
    s.step(30)  # past an epoch boundary (23 batches of 64): the scheduler stepped, the data reshuffled
    s.apply(EditTensor("fc1.weight", "value", (0, 3), 0.25))
    s.apply(LoadOptimizer(path=str(path)))
    s.step(4)
    s.apply(EditTensor("out.bias", "grad", None, 0.0))
    s.step(6)
    actions = s.journal
    assert any(isinstance(a, LoadOptimizer) and a.blob for a in actions), "the load's data is in the timeline"
    path.unlink()  # rewinding needs no file: the data is stored
    for k in (3, 23, 24, 30, 33, 34, 38, 40):
        s.goto(k)
        assert_same(s, replay(spec, actions, k, s.blobs), f"digits at step {k}")


def test_stepping_from_a_rewound_step_forks_and_keeps_the_old_branch():
    spec = make_spec("Adam", "manual")
    s = Session(spec)
    s.step(20)
    old = state_of(s)
    s.goto(12)
    s.step(3)
    assert s.timeline.current == 1 and s.step_count == 15
    b = {x.id: x for x in s.branches()}
    assert b[1].parent == 0 and b[1].fork_step == 12 and b[0].steps == 20
    assert "branch 0 kept" in s.notice
    s.goto(None, branch=0)
    assert_same_state = all(same(v, state_of(s)[k]) for k, v in old.items())
    assert assert_same_state, "the old branch's head comes back"
    s.goto(None, branch=1)
    assert_same(s, replay(spec, [Step(15)], 15))


def test_a_rebuild_starts_a_new_branch_and_undo_returns_to_the_old_one():
    spec = make_spec("SGD", "objective")
    s = Session(spec)
    s.step(13)
    before = state_of(s)
    edits.with_optimizer(s, "Adam")
    assert s.spec.optimizer == "Adam" and s.step_count == 0
    assert s.notice == "optimizer changed to Adam: new branch 1, branch 0 kept at step 13"
    s.step(4)
    assert s.undo()
    assert s.spec.optimizer == "SGD" and all(same(v, state_of(s)[k]) for k, v in before.items())
    assert s.redo()
    assert s.spec.optimizer == "Adam" and s.step_count == 4


def test_undo_an_edit_then_redo():
    s = Session(make_spec("SGD", "objective"))
    s.step(3)
    s.apply(SetHparam(0, "lr", 0.5))
    assert s.optimizer.param_groups[0]["lr"] == 0.5
    s.undo()
    assert s.optimizer.param_groups[0]["lr"] != 0.5 and s.step_count == 3
    s.redo()
    assert s.optimizer.param_groups[0]["lr"] == 0.5


def test_a_failing_batch_journals_the_steps_it_did():
    s = Session(make_spec("Adam", "objective"))
    calls = {"n": 0}
    real = s.engine._loss

    def flaky():
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("boom")
        return real()
    s.engine._loss = flaky
    with pytest.raises(RuntimeError):
        s.run(10)
    assert s.step_count == 5 and s.journal == [Step(5)]


def test_breakpoint_pauses_at_the_first_step_where_it_holds():
    s = Session(make_spec("SGD", "objective"))
    s.set_breakpoints(["step == 7"])
    assert s.run(100) == 7 and s.last_hit.step == 7 and s.step_count == 7
    s.set_breakpoints(["grad_norm > 0.0001"])
    s.run(5)
    assert s.last_hit is not None and s.step_count == 8  # measured on every step while it is on


def test_batched_readback_stops_exactly_at_the_breakpoint_step():
    """On a GPU the conditions are read back every few steps; the session goes back to the hit."""
    spec = make_spec("Adam", "manual")
    s = Session(spec)
    s.set_breakpoints(["step == 11"])
    s.observer.check_every = 8
    s.run(100)
    assert s.last_hit.step == 11 and s.step_count == 11 and s.journal == [Step(11)]
    assert_same(s, replay(spec, [Step(11)], 11))


def test_edit_while_paused_is_journaled_and_used_by_the_next_step():
    spec = make_spec("Adam", "objective")
    s = Session(spec)
    s.step(2)
    s.apply(EditTensor("t0", "exp_avg", (1, 2), 5.0))
    assert s.optimizer.state[s.params["t0"]]["exp_avg"][1, 2] == 5.0
    s.step(1)
    plain = Session(spec)
    plain.step(2)
    plain.optimizer.state[plain.params["t0"]]["exp_avg"][1, 2] = 5.0
    plain.step(1)
    assert_same(s, plain)
    assert isinstance(s.journal[1], EditTensor)


def test_checkpoint_memory_is_bounded_and_thinned_towards_the_past():
    c = Checkpoints(budget=10 * (1000 + 4096))
    for step in range(1, 200):
        c.add(0, step * 10, {}, 1000, {0: step * 10})
    steps = [x.step for x in c.by_branch[0]]
    assert c.used <= c.budget and len(steps) == 10 and steps[-1] == 1990
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert gaps[0] > gaps[-1], f"denser near the present: {steps}"


def test_every_step_has_a_loss_point_at_any_speed():
    spec = make_spec("Adam", "objective")
    s = Session(spec)
    s.run(3000)
    h = s.history.view()
    assert len(h.step) == 3000 and not np.isnan(h.loss).any()
    # norms: on the time budget, with a floor: close points early on, then one in 64 steps
    # (which yields only when measuring takes more than its share: see the test below)
    assert (~np.isnan(h.grad_norm)).sum() >= 3000 // 64


def test_a_short_run_has_norm_points_all_along():
    s = Session(make_spec("Adam", "objective"))
    s.run(200)
    h = s.history.view()
    steps = h.step[~np.isnan(h.grad_norm)]
    assert len(steps) >= 40 and np.diff(steps).max() <= 16 and steps[-1] == 200


def test_the_norms_floor_is_close_early_and_yields_to_their_budget_later():
    """A 2x2 tensor's step takes 0.1 ms and a measurement 0.4 ms: a point every 64 steps made
    measuring 5% of such a run; a 4096x4096 tensor's measurement takes half a step: the early
    floor would measure half its steps. Neither, while measuring has taken more than FLOOR_SHARE
    of the time (plus FLOOR_ALLOWANCE seconds for the early points)."""
    import time
    from core.observer import FLOOR_ALLOWANCE, FLOOR_SHARE, floor_every
    assert [floor_every(s) for s in (1, 16, 40, 200, 1024, 50_000)] == [1, 1, 2, 12, 64, 64]
    obs = Session(make_spec("SGD", "manual")).observer
    now = time.perf_counter()
    obs._budget.start, obs._budget.spent = now - 1.0, 0.0
    obs._step, obs._unmeasured = 5000, 62
    assert not obs._floor_due(now)  # not yet 64 steps
    obs._unmeasured = 63
    assert obs._floor_due(now)
    obs._budget.spent = 0.9 * FLOOR_SHARE  # within its share
    assert obs._floor_due(now)
    obs._budget.spent = 1.5 * FLOOR_SHARE  # over it
    assert not obs._floor_due(now)
    obs._budget.spent = 0.5 * FLOOR_ALLOWANCE  # the allowance is for the early points only
    assert not obs._floor_due(now)
    obs._step, obs._unmeasured = 100, floor_every(101) - 1
    assert obs._floor_due(now)  # a small problem's early points are within the allowance
    obs._budget.spent = FLOOR_ALLOWANCE + 1.5 * FLOOR_SHARE
    assert not obs._floor_due(now)  # early points too yield past it


def test_the_early_points_cost_does_not_hold_back_the_floor_after_them():
    """A comparison's run (half the share each) had spent 30 ms on its early points: counted
    against the floor after step 1,024, its curves had no point for 3 s (the last at step 984 of
    a 3-second run). What the early points took, up to the allowance, stays paid for; a budget
    reset past them (Run pressed late) gets no allowance."""
    import time
    from core.observer import FLOOR_ALLOWANCE, FLOOR_SHARE, floor_every
    obs = Session(make_spec("SGD", "manual")).observer
    now = time.perf_counter()
    b = obs._budget
    b.start, b.spent = now - 1.0, 0.8 * FLOOR_ALLOWANCE  # the early points' cost
    obs._step, obs._unmeasured = 900, floor_every(901) - 1
    assert obs._floor_due(now)
    b.spent += 0.5 * FLOOR_SHARE  # and then within the floor's share of the second since
    obs._step, obs._unmeasured = 3000, 63
    assert obs._floor_due(now)  # was held: (0.04 + 0.01) / 0.02 = 2.5 s of share for 1 s of run
    b.spent += 1.0 * FLOOR_SHARE  # over the share past the early points: it yields as before
    assert not obs._floor_due(now)
    b.reset()  # Run pressed at step 3,000: no early points of its own
    b.start, b.spent = now - 1.0, 0.8 * FLOOR_ALLOWANCE
    assert not obs._floor_due(now)


# ----- files -----

def fresh_steps(journal) -> int:
    return sum(a.n for a in journal if isinstance(a, Step))


DATA = __import__("pathlib").Path(__file__).parent / "data"


@pytest.mark.parametrize("name, example, steps", [("v1_seed", "seed_walkthrough", 51), ("v1_moons", "moons_mlp", 120)])
def test_version_1_files_still_open_and_continue_exactly(name, example, steps):
    """Files written by optimlab before the timeline (one spec, one journal, one state)."""
    from core import session_file
    from core.cli import example_paths
    from core.spec import loads
    s = session_file.load_session(DATA / f"{name}.optimlab")
    spec, journal = loads(example_paths()[example].read_text())
    fresh = Session(spec, journal)
    fresh.step(steps - fresh.step_count)
    assert s.step_count == steps
    if name == "v1_seed":  # 2x2 arithmetic: the same bits on every CPU
        assert_same(s, fresh, name)
        s.step(5)
        fresh.step(5)
        assert_same(s, fresh, f"{name} + 5")
    else:
        # the file's numbers were computed on another CPU: an MLP's matrix products round
        # differently with AVX-512 and AVX2 kernels (last bits), so a fresh run here agrees to
        # float32 rounding; exactness on this CPU is checked by the rewind below (replayed here)
        for n, p in s.params.items():
            torch.testing.assert_close(p.detach(), fresh.params[n].detach(), rtol=1e-5, atol=1e-6)
        s.step(5)
        fresh.step(5)
        for n, p in s.params.items():
            torch.testing.assert_close(p.detach(), fresh.params[n].detach(), rtol=1e-5, atol=1e-6)
        assert s.step_count == fresh.step_count == steps + 5
    s.goto(steps - 3)  # rewinding works too (from the spec: a version 1 file has no checkpoints)
    assert_same(s, replay(spec, journal + [Step(steps - fresh_steps(journal))], steps - 3), f"{name} rewound")


def test_optimlab_keeps_the_whole_timeline_and_reopens_where_it_stood(tmp_path):
    from core import session_file
    spec = make_spec("Adam", "manual")
    s = Session(spec)
    s.step(30)
    s.goto(10)
    s.step(5)                     # branch 1 forks at 10
    edits.with_optimizer(s, "SGD")  # branch 2 starts afresh
    s.step(7)
    s.set_breakpoints(["grad_norm > 100", "step == 500"])
    s.goto(None, branch=0)
    s.goto(22)                    # stand rewound on branch 0
    path = tmp_path / "t.optimlab"
    session_file.save_session(s, path)
    r = session_file.load_session(path)
    assert [(b.id, b.parent, b.fork_step, b.steps) for b in r.branches()] == \
        [(b.id, b.parent, b.fork_step, b.steps) for b in s.branches()] == [(0, None, 0, 30), (1, 0, 10, 15), (2, 1, 15, 7)]
    assert r.timeline.current == 0 and r.step_count == 22 and not r.at_head
    assert_same(r, s)
    assert [bp.text for bp in r.breakpoints] == ["grad_norm > 100", "step == 500"]
    assert r.timeline.checkpoints.count() == s.timeline.checkpoints.count()
    for branch, step in ((1, 12), (2, 3), (0, 29)):
        s.goto(step, branch)
        r.goto(step, branch)
        assert_same(r, s, f"branch {branch} step {step}")


def test_json_save_embeds_loaded_data_and_reopens_at_its_step(tmp_path):
    from core import session_file
    spec = make_spec("Adam", "objective")
    donor = Session(spec)
    donor.step(4)
    s = Session(spec)
    s.step(2)
    s.load_optimizer_state(donor.optimizer.state_dict(), "donor.pt")
    s.step(6)
    s.goto(5)
    path = tmp_path / "s.json"
    session_file.save_session(s, path)
    r = session_file.load_session(path)  # no donor.pt anywhere: the data is in the .json
    assert r.step_count == 5 and not r.at_head
    assert_same(r, s)
    r.goto(None)
    s.goto(None)
    assert_same(r, s)


def test_norms_every_step_when_asked():
    s = Session(make_spec("Adam", "objective"))
    assert edits.set_norms_every_step(s, True)
    s.run(500)
    h = s.history.view()
    assert len(h.step) == 500 and not np.isnan(h.grad_norm).any() and not np.isnan(h.update_norm).any()


def test_held_checkpoints_wait_for_the_runner_and_at_most_four_spacings():
    """The runner takes due checkpoints with its frames (work between steps slows the next
    few: done together it costs that once); a held one is taken by ``advance`` itself after
    four spacings, so a rewind never replays more than that. Rewinds stay exact."""
    s = Session(make_spec("Adam", "objective"))
    s.run(40)
    tl = s.timeline

    def marks():
        return [c.step for c in tl.checkpoints.by_branch.get(tl.current, [])]
    s.hold_checkpoints = True
    s._ckpt_every = 10  # (spacing is otherwise chosen by time)
    s._since_ckpt = 0
    before = len(marks())
    for _ in range(10):
        s.advance()
    assert len(marks()) == before  # due, held
    s.checkpoint_if_due()
    assert len(marks()) == before + 1 and marks()[-1] == s.step_count == 50
    s._ckpt_every = 10
    for _ in range(39):
        s.advance()
    assert marks()[-1] == 50  # held for 39 steps
    s.advance()
    assert marks()[-1] == 90  # the fourth spacing: taken without the runner
    s.flush()
    want = {k: v.detach().clone() for k, v in s.params.items()}
    s.goto(73)
    s.goto(None)
    assert all(torch.equal(s.params[k], v) for k, v in want.items())
