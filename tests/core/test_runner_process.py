"""The runner in its own process: same numbers as plain PyTorch, answers in order,
errors as data, and a crashed child that stops the run instead of the program."""
import os
import signal
import time

import pytest
import torch

from core import edits, objectives
from core.runner_process import ProcessRunner, RemoteError
from core.session import Session
from core.spec import GradientSpec, ManualGrad, SessionSpec, SetHparam, TensorSpec

from .test_runner import rosen_spec, runners, wait_until


def params_and_state(s):
    """Plain tensors (they travel back pickled): parameters and the optimizer's state."""
    return ({n: p.detach().clone() for n, p in s.params.items()},
            {k: {n: v.clone() if isinstance(v, torch.Tensor) else v for n, v in st.items()}
             for k, st in s.optimizer.state_dict()["state"].items()})


def step_count(s):
    return s.step_count


def pid(s):
    return os.getpid()


@pytest.fixture
def runner():
    yield from runners(ProcessRunner)


def test_steps_in_the_child_equal_a_plain_pytorch_loop(runner):
    r = runner(Session(rosen_spec()))
    r.step(300)
    wait_until(lambda: r.latest().step == 300 and not r.latest().running)
    xy = torch.tensor([-1.5, 2.0], requires_grad=True)
    opt = torch.optim.Adam([xy], lr=0.01)
    for _ in range(300):
        opt.zero_grad(set_to_none=True)
        objectives.rosenbrock([xy]).backward()
        opt.step()
    params, state = r.call(params_and_state).result(10)
    assert torch.equal(params["xy"], xy.detach())
    for k in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(state[0][k], opt.state[xy][k])
    assert r.latest().tensor("xy").value.values.tolist() == xy.detach().tolist()


def test_a_session_mid_run_travels_whole_and_continues_bit_identically(runner):
    spec = SessionSpec(optimizer="RMSprop", hparams={"lr": 0.01, "momentum": 0.5},
                       tensors=(TensorSpec("w", (3, 4), grad=ManualGrad("normal")),),
                       gradient=GradientSpec("manual", when="every_step"))
    local = Session(spec)
    local.step(7)
    local.apply(SetHparam(0, "lr", 0.02))
    r = runner(local)  # packed after 7 steps; the child carries on from there
    r.step(20)
    wait_until(lambda: r.latest().step == 27 and not r.latest().running)
    direct = Session(spec)
    direct.step(7)
    direct.apply(SetHparam(0, "lr", 0.02))
    direct.step(20)
    params, state = r.call(params_and_state).result(10)
    assert torch.equal(params["w"], direct.params["w"].detach())
    assert torch.equal(state[0]["square_avg"], direct.optimizer.state_dict()["state"][0]["square_avg"])


def test_when_a_call_is_answered_latest_already_shows_its_effect(runner):
    r = runner(Session(rosen_spec()))
    for lr in (0.1, 0.2, 0.3):
        r.apply(SetHparam(0, "lr", lr)).result(10)
        assert r.latest().groups[0].hparams["lr"] == lr


def test_a_closure_is_refused_with_a_clear_message_and_the_runner_carries_on(runner):
    r = runner(Session(rosen_spec()))
    with pytest.raises(TypeError, match="module-level function"):
        r.call(lambda s: s.step_count).result(10)
    assert r.call(step_count).result(10) == 0


def test_errors_arrive_as_themselves_with_the_childs_traceback(runner):
    r = runner(Session(rosen_spec()))
    with pytest.raises(ValueError, match="Invalid learning rate") as info:
        r.apply(SetHparam(0, "lr", -1.0)).result(10)
    assert "Traceback" in info.value.remote_traceback
    assert r.latest().groups[0].hparams["lr"] == 0.01  # the refusal changed nothing


def test_replace_builds_in_the_child_and_a_failed_build_keeps_the_old_session(runner):
    r = runner(Session(rosen_spec()))
    spec = r.replace(edits.with_optimizer, "SGD").result(10)
    assert spec.optimizer == "SGD" and r.latest().optimizer == "SGD"
    with pytest.raises(Exception, match="Unknown optimizer"):
        r.replace(edits.with_optimizer, "NoSuchOptimizer").result(10)
    assert r.latest().optimizer == "SGD"


def test_an_unchanged_history_arrives_as_the_same_object(runner):
    r = runner(Session(rosen_spec()))
    r.step(50)
    wait_until(lambda: r.latest().step == 50 and not r.latest().running)
    before = r.latest()
    r.set_rate_limit(5.0)  # a command republishes the same history
    r.call(step_count).result(10)
    after = r.latest()
    assert after.seq > before.seq and after.history is before.history
    r.step(1)
    wait_until(lambda: r.latest().step == 51)
    assert r.latest().history is not before.history


def test_a_killed_child_stops_the_run_with_a_message_and_fails_what_was_pending(runner):
    r = runner(Session(rosen_spec()))
    child = r.call(pid).result(10)
    assert child != os.getpid()
    r.run()
    wait_until(lambda: r.latest().step > 100)
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: r.crashed)
    snap = r.latest()
    assert not snap.running and snap.error.type == "RunnerCrashed"
    assert "ended unexpectedly" in snap.error.message
    with pytest.raises(RuntimeError, match="ended"):
        r.call(step_count).result(10)


def test_a_new_runner_after_a_crash_starts_blank_then_builds(runner):
    first = runner(Session(rosen_spec()))
    os.kill(first.call(pid).result(10), signal.SIGKILL)
    wait_until(lambda: first.crashed)
    second = runner(None, shown=first.latest())
    assert second.latest().error is None  # the old picture stays until the new one arrives
    spec = second.replace(edits.build, rosen_spec()).result(20)
    assert spec == rosen_spec()
    second.step(5)
    wait_until(lambda: second.latest().step == 5 and not second.latest().running)


def test_stop_ends_the_child_within_a_step_even_while_running(runner):
    r = runner(Session(rosen_spec()))
    r.run()
    wait_until(lambda: r.latest().step > 10)
    t0 = time.perf_counter()
    r.stop()
    assert not r.alive and time.perf_counter() - t0 < 5


def returns_a_closure(s):
    return lambda: s


def test_an_answer_that_cannot_travel_back_is_an_error_not_a_hang(runner):
    r = runner(Session(rosen_spec()))
    with pytest.raises(TypeError, match="cannot be sent back"):
        r.call(returns_a_closure).result(10)
    assert r.call(step_count).result(10) == 0


def raises_an_unpicklable_error(s):
    class LocalError(Exception):
        pass
    raise LocalError("only the child knows this class")


def test_an_error_that_cannot_travel_arrives_as_remote_error_with_its_message(runner):
    r = runner(Session(rosen_spec()))
    with pytest.raises(RemoteError, match="only the child knows this class") as info:
        r.call(raises_an_unpicklable_error).result(10)
    assert info.value.type_name == "LocalError" and "raises_an_unpicklable_error" in info.value.remote_traceback


def collector_load(s):
    """(objects frozen, objects a full collection walks) in the runner process."""
    import gc
    return gc.get_freeze_count(), len(gc.get_objects())


def test_full_collections_in_the_child_skip_torchs_objects(runner):
    # a full collection walking torch's ~290,000 objects took 50-55 ms (a stall in a run);
    # frozen at the child's start (core.gc_policy), they are skipped and the session's own are not
    r = runner(Session(rosen_spec()))
    r.step(50)
    wait_until(lambda: r.latest().step == 50 and not r.latest().running)
    frozen, walked = r.call(collector_load).result(10)
    assert frozen > 100_000  # torch's modules (the fork server preloads them)
    assert walked < 50_000  # the session, its frames and the runner: what can become garbage
