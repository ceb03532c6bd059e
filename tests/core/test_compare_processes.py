"""A comparison's runs in processes of their own (core.compare_pool): stepped in parallel, each run
is still bit for bit the same run made alone, and everything asked of a run (frames, saves,
explanations, re-measuring) is answered where it lives."""
import os
import signal
import time

import numpy as np
import pytest
import torch

from core import compare_edits, compare_file, compare_pool, edits
from core.compare import Comparison, RunSpec, config_spec
from core.runner import Runner
from core.session import Session

from .test_compare import (COSINE, STEP_LR, digits_base, dropout_specs, edited_branch, equal_state, manual_base, rosenbrock_base,
                           specs_of)
from .test_compare_runner import wait_for

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or compare_pool.cores() < 2,
                                reason="runs in processes of their own need fork and two cores")


@pytest.fixture(autouse=True)
def one_thread():
    """Where runs go to processes of their own: one torch thread (as the app's runner process has
    for these small problems)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def in_processes(runs) -> Comparison:
    c = Comparison(runs)
    c.processes = True
    return c


def here(runs) -> Comparison:
    c = Comparison(runs)
    c.processes = False
    return c


def state(run) -> dict:
    """(Where the run lives.) Everything same_run compares, as plain tensors and values."""
    s = run.session
    return {"params": {k: v.detach().clone() for k, v in s.params.items()},
            "grads": {k: (None if v.grad is None else v.grad.clone()) for k, v in s.params.items()},
            "optimizer": s.optimizer.state_dict(),
            "scheduler": None if s.scheduler is None else s.scheduler.state_dict(),
            "loss": s.loss, "step": s.step_count, "halted": run.halted}


def states(c: Comparison) -> list:
    return [c.in_run(r.id, state) for r in c.runs]


def alone_state(spec, n: int, seed=None) -> dict:
    if seed is not None:
        torch.manual_seed(seed)
    s = Session(spec)
    s.run(n)

    class R:
        session, halted = s, ""
    return state(R)


def children() -> set[int]:
    """This process's live children (the runs' processes)."""
    me = os.getpid()
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                out.add(int(pid))
    return out


@pytest.mark.parametrize("case", ["sgd-vs-adam-manual", "adam-vs-adamw-rosenbrock", "digits-schedulers"])
def test_runs_in_processes_equal_the_runs_alone(case):
    specs = specs_of(case)
    before = children()
    c = in_processes([RunSpec("", s) for s in specs])
    try:
        assert c.run(9) == 9 and c.in_processes
        assert len(children() - before) == len(specs)  # one process a run
        assert all(equal_state(got, alone_state(spec, 9)) for got, spec in zip(states(c), specs))
        assert c.run(150) == 150  # long turns
        assert all(equal_state(got, alone_state(spec, 159)) for got, spec in zip(states(c), specs))
    finally:
        c.close()
    assert children() <= before


def test_a_run_in_a_process_cannot_be_read_here_by_mistake():
    c = in_processes([RunSpec("", s) for s in specs_of("sgd-vs-adam-manual")])
    try:
        c.run(3)
        with pytest.raises(compare_pool.WorkerError, match="lives in its own process"):
            c.runs[0].session.params
    finally:
        c.close()


def shares(run) -> tuple:
    """(Where the run lives.) Its measuring budget's fraction and its checkpoints' time share."""
    return run.session.observer._budget.fraction, run.session.time_share


@pytest.mark.parametrize("n", [2, 4])
def test_runs_side_by_side_in_processes_measure_on_a_core_each(n):
    """In one process a run's clock runs while the others step: 1/n of the budgets each. In
    processes of their own the runs step side by side, a core each while there are enough: at
    1/n there, a digits comparison's curves had no point from step 984 to 3,200 (3 seconds)."""
    from core.observer import MEASURE_BUDGET
    specs = (specs_of("digits-schedulers") * 2)[:n]
    share = min(1.0, compare_pool.cores() / n)
    c = in_processes([RunSpec("", s) for s in specs])
    h = here([RunSpec("", s) for s in specs])
    try:
        assert all(shares(r) == (MEASURE_BUDGET / n, 1 / n) for r in h.runs)
        c.run(3)
        assert c.in_processes
        assert [c.in_run(r.id, shares) for r in c.runs] == [(MEASURE_BUDGET * share, share)] * n
        c.add(RunSpec("", specs[0]))  # one more: the shares follow
        share = min(1.0, compare_pool.cores() / (n + 1))
        assert [c.in_run(r.id, shares) for r in c.runs] == [(MEASURE_BUDGET * share, share)] * (n + 1)
    finally:
        c.close()


def test_a_diverging_run_stops_every_run_at_its_step_as_here():
    base = rosenbrock_base()
    configs = [RunSpec("stable", config_spec(base, "Adam", {"lr": 0.01}, None)),
               RunSpec("wild", config_spec(base, "SGD", {"lr": 10.0}, None)),
               RunSpec("other", config_spec(base, "RMSprop", {"lr": 0.001}, None))]
    a, b = here(configs), in_processes(configs)
    try:
        a.run(50)
        b.run(50)
        assert b.last_hit is not None and b.last_hit.message == a.last_hit.message
        assert b.step_count == a.step_count < 50
        assert [r.halted for r in b.runs] == [r.halted for r in a.runs]
        assert all(equal_state(x, state(r)) for x, r in zip(states(b), a.runs))
        a.run(12)
        b.run(12)
        assert all(equal_state(x, state(r)) for x, r in zip(states(b), a.runs))
        fa, fb = a.make_frame(1), b.make_frame(1)
        assert [r.halted for r in fb.runs] == [r.halted for r in fa.runs]
        assert [r.snapshot.step for r in fb.runs] == [r.snapshot.step for r in fa.runs]
    finally:
        b.close()


def test_a_promoted_branch_replays_its_edits_in_its_process():
    s, rs = edited_branch()
    c = in_processes([rs, RunSpec("", config_spec(manual_base(), "Adam", {}, None))])
    try:
        c.run(10)
        s.run(3)

        class R:
            session, halted = s, ""
        assert equal_state(c.in_run(c.runs[0].id, state), state(R))
    finally:
        c.close()


def test_a_configuration_added_and_one_removed_mid_run():
    base = digits_base()
    c = in_processes([RunSpec("", config_spec(base, "SGD", {"lr": 0.05}, STEP_LR)),
                      RunSpec("", config_spec(base, "Adam", {}, None))])
    try:
        c.run(6)
        late = config_spec(base, "RMSprop", {"lr": 0.002}, COSINE)
        run = c.add(RunSpec("", late))
        assert run.remote
        c.run(5)
        assert equal_state(c.in_run(run.id, state), alone_state(late, 11))
        c.remove(c.runs[0].id)
        c.run(4)
        assert [x["step"] for x in states(c)] == [15, 15]
        assert equal_state(c.in_run(run.id, state), alone_state(late, 15))
        pairs = set(c.make_frame(1).history.cross.pairs)
        assert pairs == {(1, 2)}
    finally:
        c.close()


def test_runs_drawing_from_the_global_rng_keep_their_own_in_processes(tmp_path):
    with dropout_specs(tmp_path) as specs:
        torch.manual_seed(11)
        c = in_processes([RunSpec("", s) for s in specs])
        try:
            c.run(40)
            assert c.in_processes
            assert all(equal_state(got, alone_state(spec, 40, seed=11)) for got, spec in zip(states(c), specs))
        finally:
            c.close()

def test_frames_saves_and_questions_are_answered_as_here(tmp_path):
    runs = [RunSpec("", s) for s in specs_of("digits-schedulers")]
    a, b = here(runs), in_processes(runs)
    try:
        a.run(40)
        b.run(40)
        fa, fb = a.make_frame(1), b.make_frame(1)
        assert [r.label for r in fb.runs] == [r.label for r in fa.runs]
        assert [r.snapshot.step for r in fb.runs] == [40] * 4
        assert all(h.step[-1] == 40 for h in fb.history.runs)  # a paused frame's curves reach its step
        assert fb.history.cross.pairs == fa.history.cross.pairs
        name = next(iter(a.runs[0].session.params))
        for ra, rb in zip(a.runs, b.runs):
            assert compare_edits.exact_value(b, rb.id, name, "value", (0, 0)) == \
                compare_edits.exact_value(a, ra.id, name, "value", (0, 0))
        ea = compare_edits.explain_run(a, a.runs[1].id, name, (0, 0), 40)
        eb = compare_edits.explain_run(b, b.runs[1].id, name, (0, 0), 40)
        assert (eb.torch_after, eb.formula_after, eb.ulps) == (ea.torch_after, ea.formula_after, ea.ulps)
        assert [rs.spec for rs in compare_edits.recovery_runs(b)] == [rs.spec for rs in compare_edits.recovery_runs(a)]
        compare_edits.save(a, tmp_path / "a.optimlab-compare")
        compare_edits.save(b, tmp_path / "b.optimlab-compare")
        la, lb = compare_file.load(tmp_path / "a.optimlab-compare"), compare_file.load(tmp_path / "b.optimlab-compare")
        assert lb.step_count == la.step_count == 40
        assert all(equal_state(state(x), state(y)) for x, y in zip(la.runs, lb.runs))
        # what was measured sparsely is filled in by replaying, each run where it lives
        for c in (a, b):
            done = False
            while not done:
                done, *_ = compare_edits.measure_skipped(c, 5.0)
        pair = fb.history.cross.pairs[0]
        da, db = a.history().cross.between(*pair)[0], b.history().cross.between(*pair)[0]
        assert len(db) == 40 and np.isfinite(db).all() and np.array_equal(da, db)
    finally:
        b.close()


def test_a_run_whose_process_was_killed_is_built_again_where_it_stood():
    specs = specs_of("digits-schedulers")
    c = in_processes([RunSpec("", s) for s in specs])
    try:
        c.run(30)
        victim = c.runs[2]
        os.kill(c._workers.workers[victim.id].pid, signal.SIGKILL)
        time.sleep(0.2)
        c.run(20)
        assert c.last_hit is not None and "process ended unexpectedly" in c.last_hit.message
        assert c.step_count == 30 and not any(r.halted for r in c.runs)
        c.run(20)
        assert c.step_count == 50
        assert all(equal_state(got, alone_state(spec, 50)) for got, spec in zip(states(c), specs))
    finally:
        c.close()


def test_the_runner_ends_the_runs_processes_with_the_comparison():
    before = children()
    r = Runner(edits.blank)
    try:
        r.replace(_build_in_processes, [RunSpec("", s) for s in specs_of("sgd-vs-adam-manual")]).result(30)
        r.step(40)
        wait_for(lambda: r.latest().step == 40 and not r.latest().running)
        assert len(children() - before) == 2
        assert [x.snapshot.step for x in r.latest().runs] == [40, 40]
        assert r.call(compare_edits.recovery_runs).result(30)
        r.replace(compare_edits.build, [RunSpec("", s) for s in specs_of("sgd-vs-adam-manual")]).result(30)
        wait_for(lambda: children() <= before)
    finally:
        r.stop()


def _build_in_processes(current, runs):
    c = Comparison(runs)
    c.processes = True
    return c



def test_a_running_frame_after_a_turn_shows_what_asking_the_runs_shows():
    """The last turn of what the runner asked brings each run's snapshot with its answer (made
    while slower runs still step): the frame drawn from them is the one asking would give."""
    import pickle
    from dataclasses import replace
    c = in_processes([RunSpec("", s) for s in specs_of("digits-schedulers")])
    try:
        c.run(20)
        compare_edits.set_view(c, ["fc1.weight"])
        took, _ = c.advance_many(8)
        assert took == 8 and set(c._ahead) == {r.id for r in c.runs}
        sent = c.make_frame(5, running=True)
        assert not c._ahead  # used once
        asked = c.make_frame(6, running=True)
        assert [r.snapshot.seq for r in sent.runs] == [5] * 4 and sent.step == asked.step == 28
        for a, b in zip(sent.runs, asked.runs):
            assert pickle.dumps(replace(a.snapshot, seq=0)) == pickle.dumps(replace(b.snapshot, seq=0)), a.label
        c.advance_many(8)
        compare_edits.set_view(c, ["fc2.weight"])  # another tensor shown: what was sent does not show it
        after, again = c.make_frame(7, running=True), c.make_frame(8, running=True)
        assert after.step == 36
        for a, b in zip(after.runs, again.runs):
            assert pickle.dumps(replace(a.snapshot, seq=0)) == pickle.dumps(replace(b.snapshot, seq=0)), a.label
    finally:
        c.close()
