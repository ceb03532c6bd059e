"""Runner processes start ready to step: the fork server has already imported what the
first optimizer step needs, and where there is no fork server they start by spawn."""
import json
import multiprocessing
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from core import objectives, runner_process
from core.runner_process import ProcessRunner
from core.session import Session

from .test_runner import rosen_spec, runners, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner():
    yield from runners(ProcessRunner)


def xy_and_state(session):
    return session.params["xy"].detach().clone(), session.optimizer.state_dict()["state"][0]


def test_the_fork_server_preloads_what_a_first_adam_session_and_step_import():
    """A runner process is forked from the fork server; whatever building and stepping its
    first optimizer imports lazily (torch._dynamo: 2 s) would be paid by every new runner."""
    code = textwrap.dedent(f"""
        import json, sys
        for name in {runner_process.PRELOAD!r}:
            __import__(name)
        before = set(sys.modules)
        from core import edits
        from core.observe import make_snapshot
        from tests.core.test_runner import rosen_spec
        session = edits.build(edits.blank(), rosen_spec())
        session.observer.force_next = True
        session.advance()
        make_snapshot(session, 1)
        print(json.dumps(sorted(set(sys.modules) - before)))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    imported = json.loads(out.stdout.strip().splitlines()[-1])
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
