"""A hypothesis state machine over a comparison: lockstep steps in runs of any length, configurations
added mid-run (a promoted branch with edits among them) and removed, saves and reopens, and the
two recoveries (from the configurations kept for a dead runner, from the recovery document).
After each, every run equals the same run alone (its configuration from the first step, its
edits at their steps), and the runs stand at the comparison's step."""
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from core import compare_edits, compare_file, compare_recovery
from core.compare import MAX_RUNS, MIN_RUNS, Comparison, RunSpec, config_spec
from core.session import Session
from core.spec import SetHparam, Step

from .test_compare import manual_base, same_run

CONFIGS = [("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {"lr": 0.01}), ("RMSprop", {"lr": 0.01}),
           ("Adagrad", {"lr": 0.1}), ("AdamW", {"lr": 0.02})]


def branch_config(base) -> RunSpec:
    s = Session(config_spec(base, "SGD", {"lr": 0.05}, None))
    s.apply(Step(2))
    s.apply(SetHparam(0, "lr", 0.01))
    s.apply(Step(3))
    s.apply(SetHparam(0, "lr", 0.2))
    return RunSpec.from_branch(s, 0, "edited")


def alone(rs: RunSpec, step: int) -> Session:
    """The configuration run alone to ``step``: its edits at their steps."""
    s = Session(rs.spec, blobs=rs.blobs)
    for at, action in rs.script:
        if at > step:
            break
        if at > s.step_count:
            s.run(at - s.step_count)
        s.apply(action)
    if step > s.step_count:
        s.run(step - s.step_count)
    return s


class ComparisonMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.base = manual_base()
        self.c = Comparison([RunSpec("", config_spec(self.base, *CONFIGS[0], None)), branch_config(self.base)])
        self.dir = tempfile.TemporaryDirectory()

    def teardown(self):
        self.dir.cleanup()

    @rule(n=st.integers(1, 9))
    def step(self, n):
        self.c.run(n)

    @precondition(lambda self: len(self.c.runs) < MAX_RUNS)
    @rule(i=st.integers(0, len(CONFIGS) - 1))
    def add(self, i):
        self.c.add(RunSpec("", config_spec(self.base, *CONFIGS[i], None)))

    @precondition(lambda self: len(self.c.runs) > MIN_RUNS)
    @rule(data=st.data())
    def remove(self, data):
        self.c.remove(data.draw(st.sampled_from([r.id for r in self.c.runs])))

    @rule()
    def save_and_reopen(self):
        path = Path(self.dir.name) / "c.optimlab-compare"
        compare_file.save(self.c, path)
        self.c = compare_file.load(path)

    @rule(disk=st.booleans())
    def runner_dies_and_is_recovered(self, disk):
        runs, step = compare_edits.recovery_runs(self.c), self.c.step_count
        if disk:
            path = Path(self.dir.name) / "compare-1.json"
            path.write_bytes(compare_recovery.to_json(runs, step))
            c = compare_edits.open_recovery(None, path)
            c.run(compare_edits.steps_to_recover(c))
        else:
            c = Comparison(list(runs))
            c.run(step - c.step_count)
        assert [r.label for r in c.runs] == [r.label for r in self.c.runs]
        self.c = c

    @invariant()
    def each_run_equals_the_run_alone(self):
        for r in self.c.runs:  # a run that halted (diverged) stands where it stopped
            step = r.step_count if r.halted else self.c.step_count
            assert r.step_count == step, r.label
            assert same_run(r.session, alone(compare_recovery.run_source(r), step)), f"{r.label} at step {step}"


ComparisonMachine.TestCase.settings = settings(max_examples=8, stateful_step_count=8, derandomize=True,
                                               deadline=None, suppress_health_check=list(HealthCheck))
test_comparison_state_machine = ComparisonMachine.TestCase
