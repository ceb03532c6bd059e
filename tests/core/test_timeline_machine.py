"""A hypothesis state machine over the timeline: random steps, edits, rebuilds, rewinds,
forks, undo/redo, saves and reopens. After each, the session equals a fresh session that
replays its branch's journal from the branch's spec up to where it stands."""
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from core import edits, session_file
from core.session import Session
import copy

import torch

from core import files
from core.spec import (AddGroup, EditTensor, GradientSpec, LoadOptimizer, ManualGrad, SessionSpec, SetHparam, SpecError,
                       Step, TensorSpec, ZeroGrad)
from tests.core.test_timeline import assert_same, same, state_of

SPEC = SessionSpec(optimizer="Adam", hparams={"lr": 0.05}, seed=5, zero_grad_each_step=True,
                   tensors=[TensorSpec("w", (3, 2), grad=ManualGrad("normal", std=0.3)),
                            TensorSpec("b", (2,), init="zeros", grad=ManualGrad("normal"))],
                   gradient=GradientSpec("manual", when="every_step"))
OPTIMIZERS = ("Adam", "SGD", "RMSprop", "Adagrad")


def replayed(s: Session) -> Session:
    """A fresh session doing what the current branch's journal says, up to where ``s`` stands."""
    branch, step, index = s.position()
    b = s.timeline.branches[branch]
    fresh = Session(b.spec, blobs=s.blobs)
    for _, a in b.journal.prefix(step, index):
        fresh.apply(a)
    return fresh


class TimelineMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.s = Session(SPEC)
        self.dir = tempfile.TemporaryDirectory()

    def teardown(self):
        self.dir.cleanup()

    def try_apply(self, action):
        """Apply ``action``; a refusal (one sentence) must leave the session as it was."""
        before = copy.deepcopy(state_of(self.s))
        try:
            self.s.apply(action)
        except (SpecError, files.LoadError) as e:
            after = state_of(self.s)
            for k in before:
                assert same(after[k], before[k]), f"refused ({e}) but {k} changed"

    @rule()
    def add_group(self):
        name = f"g{sum(1 for n in self.s.params if n.startswith('g'))}"
        self.try_apply(AddGroup((TensorSpec(name, (2,), grad=ManualGrad("normal", std=0.2)),), {"lr": 0.02}))

    @rule()
    def keep_optimizer_state(self):
        torch.save(self.s.optimizer.state_dict(), Path(self.dir.name) / "kept.pt")

    @rule()
    def load_kept_optimizer_state(self):
        path = Path(self.dir.name) / "kept.pt"
        if path.exists():
            self.try_apply(LoadOptimizer(path=str(path)))

    @rule(n=st.integers(1, 12))
    def step(self, n):
        self.s.step(n)

    @rule(lr=st.sampled_from([0.001, 0.01, 0.2]))
    def set_lr(self, lr):
        self.s.apply(SetHparam(0, "lr", lr))

    @rule(i=st.integers(0, 2), j=st.integers(0, 1), v=st.floats(-2, 2, allow_nan=False), fill=st.booleans())
    def edit_weight(self, i, j, v, fill):
        self.s.apply(EditTensor("w", "value", None if fill else (i, j), v))

    @rule(to_none=st.booleans())
    def zero_grad(self, to_none):
        self.s.apply(ZeroGrad(to_none))

    @rule(name=st.sampled_from(OPTIMIZERS))
    def switch_optimizer(self, name):
        edits.with_optimizer(self.s, name)

    @rule(data=st.data())
    def rewind(self, data):
        branches = self.s.branches()
        b = data.draw(st.sampled_from(branches))
        step = data.draw(st.integers(0, b.steps) | st.none())
        self.s.goto(step, b.id)

    @rule()
    def undo(self):
        self.s.undo()

    @rule()
    def redo(self):
        self.s.redo()

    @rule(kind=st.sampled_from([".optimlab", ".json"]))
    def save_and_reopen(self, kind):
        path = Path(self.dir.name) / f"s{kind}"
        before = self.s
        session_file.save_session(before, path)
        self.s = session_file.load_session(path)
        assert_same(self.s, before, f"reopened {kind}")
        if kind == ".optimlab":
            assert [tuple(vars(b).values()) for b in self.s.branches()] == \
                [tuple(vars(b).values()) for b in before.branches()]

    @rule(disk=st.booleans())
    def crash_and_recover(self, disk):
        """The runner process ends (Recover from what the window kept) or the window's own
        (reopen its recovery file): the session stands where it stood, with every branch."""
        import pickle
        st_ = edits.recovery_state(self.s)
        before = self.s
        if disk:
            path = Path(self.dir.name) / "session-1.json"
            path.write_bytes(session_file.recovery_json(
                st_["spec"], st_["journal"], st_["blobs"], None if st_["at_head"] else st_["step"],
                timeline=st_["document"]["timeline"] if st_["branches"] > 1 else None, curves=st_["curves"],
                index=st_["index"]))
            self.s = edits.reopen_recovery(None, path)
        else:
            st_, blobs = pickle.loads(pickle.dumps((st_, st_["blobs"])))
            self.s = edits.recover(None, st_, blobs, st_["curves"])
        assert_same(self.s, before, "recovered from disk" if disk else "recovered")
        assert self.s.position()[:2] == before.position()[:2]
        assert [(b.id, b.steps) for b in self.s.branches()] == [(b.id, b.steps) for b in before.branches()]

    @invariant()
    def equals_its_journal_replayed(self):
        assert_same(self.s, replayed(self.s), f"branch {self.s.timeline.current} at step {self.s.step_count}")


TimelineMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=12, derandomize=True,
                                             deadline=None, suppress_health_check=list(HealthCheck))
test_timeline_state_machine = TimelineMachine.TestCase
