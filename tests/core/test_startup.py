"""Runner processes start ready to step: the fork server has already imported what the
first optimizer step needs, and where there is no fork server they start by spawn."""
import multiprocessing
import sys

import pytest
import torch

from core import objectives, runner_process
from core.runner_process import ProcessRunner
from core.session import Session

from .test_runner import rosen_spec, runners, wait_until


@pytest.fixture
def runner():
    yield from runners(ProcessRunner)


def first_adam_step_imports(session) -> tuple[bool, list[str]]:
    """In the runner process: was torch._dynamo there before any Adam, and what did building
    an Adam session and stepping it import?"""
    preloaded = "torch._dynamo" in sys.modules
    before = set(sys.modules)
    Session(rosen_spec()).step_once()
    return preloaded, sorted(set(sys.modules) - before)


def xy_and_state(session):
    return session.params["xy"].detach().clone(), session.optimizer.state_dict()["state"][0]


def test_a_new_runner_process_steps_its_first_adam_without_importing_torch_dynamo(runner):
    r = runner(None)
    preloaded, imported = r.call(first_adam_step_imports).result(60)
    assert preloaded
    heavy = [m for m in imported if m.split(".")[0] == "sympy" or m.startswith(("torch._dynamo", "torch._inductor"))]
    assert heavy == []


def test_runner_processes_start_by_spawn_where_there_is_no_fork_server(runner, monkeypatch):
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    monkeypatch.setattr(runner_process, "_ctx", None)  # the context is chosen afresh, then restored
    assert runner_process.context().get_start_method() == "spawn"
    r = runner(Session(rosen_spec()))
    r.step(50)
    wait_until(lambda: r.latest().step == 50 and not r.latest().running, timeout=60)
    xy, state = r.call(xy_and_state).result(60)
    plain = torch.tensor([-1.5, 2.0], requires_grad=True)
    opt = torch.optim.Adam([plain], lr=0.01)
    for _ in range(50):
        opt.zero_grad(set_to_none=True)
        objectives.rosenbrock([plain]).backward()
        opt.step()
    assert torch.equal(xy, plain.detach())
    assert torch.equal(state["exp_avg_sq"], opt.state[plain]["exp_avg_sq"])
