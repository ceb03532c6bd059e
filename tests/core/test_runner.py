"""The runner steps on its own thread, publishes bounded snapshots and reports errors."""
import time

import pytest
import torch

from core.runner import Runner, run_steps
from core.session import Session
from core.spec import GradientSpec, ManualGrad, SessionSpec, SetHparam, TensorSpec


def wait_until(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    raise AssertionError("condition not met in time")


def rosen_spec(opt="Adam", **kw):
    return SessionSpec(optimizer=opt, hparams=kw.pop("hparams", {"lr": 0.01}),
                       tensors=[TensorSpec("xy", (2,), init="values", values=[-1.5, 2.0])],
                       gradient=GradientSpec("objective", objective="rosenbrock"), zero_grad_each_step=True, **kw)


def runners(cls):
    """Yield ``make(session, **kw)`` -> a ``cls`` runner; every one made is stopped after."""
    made = []

    def make(session, **kw):
        r = cls(session, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.stop()
        assert not r.alive


@pytest.fixture
def runner():
    yield from runners(Runner)


def test_step_n_runs_exactly_n_steps_and_matches_direct_stepping(runner):
    r = runner(Session(rosen_spec()))
    r.step(200)
    wait_until(lambda: r.latest().step == 200 and not r.latest().running)
    direct = Session(rosen_spec())
    direct.step(200)
    got = r.call(lambda s: s.params["xy"].detach().clone()).result(5)
    assert torch.equal(got, direct.params["xy"])
    snap = r.latest()
    assert snap.tensor("xy").value.values.tolist() == direct.params["xy"].tolist()
    assert r.call(lambda s: s.journal).result(5)[-1].n == 200


def test_run_pause_resume_and_snapshots_are_bounded(runner):
    r = runner(Session(rosen_spec()))
    r.run()
    wait_until(lambda: r.latest().step > 2000)
    seq0, step0 = r.latest().seq, r.latest().step
    time.sleep(0.5)
    snap = r.latest()
    steps = snap.step - step0
    published = snap.seq - seq0
    assert steps > published * 5, "snapshots must not be published once per step"
    assert published <= 0.5 * 60 + 5
    assert snap.running and snap.steps_per_second > 0
    r.pause()
    wait_until(lambda: not r.latest().running)
    paused_at = r.latest().step
    time.sleep(0.1)
    assert r.call(lambda s: s.step_count).result(5) == paused_at
    r.run()
    wait_until(lambda: r.latest().step > paused_at + 100)


def test_snapshot_arrays_are_read_only_copies(runner):
    r = runner(Session(rosen_spec()))
    r.step(3)
    wait_until(lambda: r.latest().step == 3)
    v = r.latest().tensor("xy").value.values
    with pytest.raises(ValueError):
        v[0] = 99.0
    r.step(1)
    wait_until(lambda: r.latest().step == 4)
    assert v.tolist() != r.latest().tensor("xy").value.values.tolist()


def test_history_records_loss_norms_and_lr(runner):
    r = runner(Session(rosen_spec()))
    r.step(500)
    wait_until(lambda: r.latest().step == 500)
    h = r.latest().history
    assert 0 < len(h.step) <= 500 and h.step[-1] == 500
    assert (h.loss[1:] >= 0).all() and h.grad_norm[-1] > 0 and h.update_norm[-1] > 0
    assert len(h.lr) == 1 and h.lr[0][-1] == 0.01
    assert r.latest().path is not None and r.latest().path.shape[1] == 2


def test_error_in_the_loop_stops_the_run_with_traceback(runner):
    s = Session(rosen_spec())
    r = runner(s)

    def boom(*a, **k):
        raise RuntimeError("user loss exploded")
    r.call(lambda s: setattr(s.engine, "_loss", boom)).result(5)
    r.run()
    wait_until(lambda: r.latest().error is not None)
    err = r.latest().error
    assert err.type == "RuntimeError" and "user loss exploded" in err.message
    assert "Traceback" in err.traceback and "in boom" in err.traceback  # where the user's code raised
    assert not r.latest().running and r.alive


def test_non_finite_loss_pauses_at_that_step_and_names_it(runner):
    s = Session(rosen_spec(opt="SGD", hparams={"lr": 1.0}))
    r = runner(s)
    r.run()
    wait_until(lambda: r.latest().paused_reason is not None)
    snap = r.latest()
    assert not snap.running
    assert "loss" in snap.paused_reason and f"step {snap.step}" in snap.paused_reason


def test_non_finite_parameter_is_named(runner):
    spec = SessionSpec(optimizer="SGD", hparams={"lr": 1e38},
                       tensors=[TensorSpec("w", (2,), init="ones", grad=ManualGrad("constant", 1e38)),
                                TensorSpec("b", (2,), init="zeros")],
                       gradient=GradientSpec("manual", when="every_step"))
    r = runner(Session(spec))
    r.run()
    wait_until(lambda: r.latest().paused_reason is not None)
    assert "w became NaN or infinite" in r.latest().paused_reason


def test_stop_ends_within_one_step(runner):
    spec = SessionSpec(optimizer="Adam", tensors=[TensorSpec("big", (512, 512))],
                       gradient=GradientSpec("objective", objective="quadratic"))
    r = runner(Session(spec))
    r.run()
    wait_until(lambda: r.latest().step > 3)
    t0 = time.perf_counter()
    r.stop()
    assert not r.alive and time.perf_counter() - t0 < 2.0


def test_rate_limit_caps_steps_per_second(runner):
    r = runner(Session(rosen_spec()))
    r.set_rate_limit(50)
    t0 = time.perf_counter()
    r.run()
    time.sleep(1.0)
    r.pause()
    wait_until(lambda: not r.latest().running)
    elapsed = time.perf_counter() - t0
    assert 5 <= r.latest().step <= 50 * elapsed + 2


def test_actions_between_steps_and_refusals_through_future(runner):
    r = runner(Session(rosen_spec()))
    r.apply(SetHparam(0, "lr", 0.5)).result(5)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        r.apply(SetHparam(0, "lr", -1.0)).result(5)
    r.step(1)
    wait_until(lambda: r.latest().step == 1)
    assert r.latest().groups[0].hparams["lr"] == 0.5


def test_cancel_stops_a_step_n(runner):
    spec = SessionSpec(optimizer="Adam", tensors=[TensorSpec("big", (256, 256))],
                       gradient=GradientSpec("objective", objective="quadratic"))
    r = runner(Session(spec))
    r.step(1_000_000)
    wait_until(lambda: r.latest().batch_total == 1_000_000)
    r.cancel()
    wait_until(lambda: not r.latest().running)
    assert r.latest().step < 1_000_000 and r.latest().batch_total == 0


def test_run_steps_headless_records_last_step():
    s = Session(rosen_spec())
    assert run_steps(s, 50) == 50
    assert s.history.view().step[-1] == 50


def test_a_session_s_frames_keep_the_window_at_30_a_second_when_they_cost_more_than_the_budget():
    """A frame of 1.35 ms (the MLP case on a slow day) at 35 a second is 4.7% of the time:
    over the 4% budget, which alone gave the window 29.7 frames/s. A session's frame 1/35 s
    late is due anyway while frames stay under the 5% cap; a comparison's frames (its window
    draws about 10 a second) and frames beyond the cap keep to the budget."""
    from core.history import Budget
    from core.runner import FLOOR_INTERVAL, SNAPSHOT_BUDGET, SNAPSHOT_CAP, frame_due

    b = Budget(SNAPSHOT_BUDGET)
    b.start = 0.0
    now = 10.0
    b.spent = 0.047 * now  # over the budget, under the cap
    assert not frame_due(FLOOR_INTERVAL * 0.9, 1 / 40, b, now, floor=True)  # not late yet
    assert frame_due(FLOOR_INTERVAL, 1 / 40, b, now, floor=True)  # late: due over the budget
    assert not frame_due(FLOOR_INTERVAL, 1 / 40, b, now, floor=False)  # a comparison keeps to it
    b.spent = (SNAPSHOT_CAP + 0.001) * now  # over the cap: only the budget says
    assert not frame_due(1.0, 1 / 40, b, now, floor=True)
    b.spent = 0.03 * now  # within the budget: due once the minimum interval has passed
    assert frame_due(1 / 40, 1 / 40, b, now, floor=False)
    assert not frame_due(1 / 50, 1 / 40, b, now, floor=True)  # never above max_hz
    assert 1 / FLOOR_INTERVAL > 30
