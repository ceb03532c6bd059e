"""The runners step a comparison as they step a session, and publish comparison frames."""
import time

import numpy as np

from core import compare_edits, edits
from core.compare import RunSpec, config_spec
from core.compare_frame import ComparisonFrame
from core.runner import Runner
from core.runner_process import ProcessRunner
from core.session import Session

from .test_compare import manual_base, rosenbrock_base


def wait_for(cond, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def runs_of(base):
    # lr 1e-3: (torch's default; the label leaves it out): SGD with momentum at lr 1e-2 leaves Rosenbrock's valley (the loss overflows at step 6)
    return [RunSpec("", config_spec(base, "SGD", {"lr": 0.001, "momentum": 0.9}, None)),
            RunSpec("", config_spec(base, "Adam", {"lr": 0.01}, None))]


def test_the_thread_runner_steps_a_comparison_in_lockstep_and_publishes_frames():
    r = Runner(edits.blank)
    try:
        assert r.replace(compare_edits.build, runs_of(rosenbrock_base())).result(30).optimizer == "SGD"
        r.step(12)
        wait_for(lambda: r.latest().step == 12 and not r.latest().running)
        f = r.latest()
        assert isinstance(f, ComparisonFrame)
        assert [x.snapshot.step for x in f.runs] == [12, 12]
        assert [len(h.loss) for h in f.history.runs] == [12, 12]
        assert f.objective == "rosenbrock" and all(x.snapshot.path is not None for x in f.runs)
        label = r.call(compare_edits.add_run, RunSpec("", config_spec(rosenbrock_base(), "RMSprop", {}, None)))
        assert label.result(30) == "RMSprop"
        f = r.latest()
        assert [x.label for x in f.runs] == ["SGD momentum=0.9", "Adam lr=0.01", "RMSprop"]
        assert f.runs[2].snapshot.step == 12 and f.runs[2].joined == 12
        r.run()
        wait_for(lambda: r.latest().step >= 20)
        r.pause()
        wait_for(lambda: not r.latest().running)
        steps = {x.snapshot.step for x in r.latest().runs}
        assert steps == {r.latest().step}
    finally:
        r.stop()


def test_the_runner_process_steps_a_comparison_equal_to_the_runs_alone():
    base = manual_base()
    runs = runs_of(base)
    r = ProcessRunner(None)
    try:
        r.replace(compare_edits.build, runs).result(60)
        r.step(6)
        wait_for(lambda: isinstance(r.latest(), ComparisonFrame) and r.latest().step == 6
                 and not r.latest().running, 60)
        f = r.latest()
        for rf, rs in zip(f.runs, runs):
            alone = Session(rs.spec)
            alone.run(6)
            assert np.array_equal(rf.snapshot.tensor("w").value.values, alone.params["w"].detach().numpy())
            exact = r.call(compare_edits.exact_value, rf.id, "w", "value", (1, 2)).result(30)
            assert exact == float(alone.params["w"][1, 2].detach())
    finally:
        r.stop()
