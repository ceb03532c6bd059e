"""A session: a timeline (what happened), an engine (doing it) and an observer (watching it).

Everything a session shows or saves derives from its timeline. Acting anywhere but at
the head of the current branch forks a new branch there (the old one stays); a change
that restarts the run (another optimizer, constructor arguments, problem or task)
starts a new branch from step 0 and keeps the old one (``rebuild``). ``goto`` brings
any step of any branch back exactly: the nearest checkpoint, then the journal replayed.
"""
from __future__ import annotations

import math
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace

import torch

from . import distributions, files, torch_issues
from .breakpoints import Breakpoint, BreakpointError, check_fits
from .breakpoints import parse as parse_breakpoint
from .engine import (Engine, StepError, copy_state, grad_seed, make_grad, make_tensor,  # noqa: F401 (re-exported)
                     tensor_seed)
from .history import Budget
from .observer import Hit, Observer
from .snapshot import BranchSummary
from .spec import LoadOptimizer, LoadParams, Reset, SessionSpec, SpecError, Step
from .timeline import DEFAULT_BUDGET, Journal, Timeline, branch_list

SMALL_NUMEL = 1_000_000
CHECKPOINT_SHARE = 0.01  # checkpoints take about this share of the stepping time
FIRST_CHECKPOINT_EVERY = 16
REPLAY_UNSEEN = 0.05  # seconds of replay a rewind may add unseen: no checkpoints closer than that
MAX_CHECKPOINT_EVERY = 1_000_000
HOLD_AT_MOST = 4  # a checkpoint held for the runner (hold_checkpoints) waits at most this many spacings


class NonFinite(RuntimeError):
    """The loss or a parameter became NaN or infinite (names the culprit)."""


BranchInfo = BranchSummary  # a branch as a list shows it (the frames carry the same type)


def default_index(journal, step: int, end: int) -> int:
    """The journal entries ``goto(step)`` applies: all of them at the branch's last step
    (``end``), elsewhere none of the actions recorded at ``step``."""
    return len(journal.entries) if step == end else journal.index_after(step)


def actions_end(journal, step: int) -> int:
    """The entries applied after every action recorded at ``step``."""
    i = journal.index_after(step)
    while i < len(journal.entries) and journal.entries[i][0] == step and not isinstance(journal.entries[i][1], Step):
        i += 1
    return i


class Session:
    """Spec + journal (the root branch), and the live objects they describe."""

    def __init__(self, spec: SessionSpec, journal=(), blobs: dict | None = None, budget: int = DEFAULT_BUDGET):
        spec.check()
        timeline = Timeline(spec, budget)
        timeline.blobs.update(blobs or {})
        self._setup(timeline)
        for action in journal:
            self.apply(action, undoable=False)

    @classmethod
    def from_timeline(cls, timeline: Timeline, head_state: dict, index: int | None = None) -> "Session":
        """A session standing where ``head_state`` was captured on ``timeline``'s current branch,
        with ``index`` of its journal entries applied (None: all; the head), without replay:
        how a saved session reopens."""
        s = cls.__new__(cls)
        s._setup(timeline)
        s.engine.restore(head_state, check=True)
        s._watch_branch()
        if index is not None and index < len(timeline.branch.journal.entries):
            s._index = index
        return s

    def _setup(self, timeline: Timeline) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.timeline = timeline
        self.observer = Observer()
        self.engine = Engine(timeline.branch.spec, timeline.blobs, self.observer)
        self._index = None  # None: at the current branch's head; else the journal entries applied
        self._pending = 0  # steps taken but not yet written into the journal
        self._since_ckpt = 0
        self._ckpt_every = FIRST_CHECKPOINT_EVERY  # steps between checkpoints (see checkpoint())
        self._ckpt_mark = 0.0
        # the runner takes the checkpoints itself, when it flushes and draws a frame anyway
        # (checkpoint_if_due): any work between two steps slows the next few steps (their code
        # and data leave the CPU's caches: a digits MLP step after a flush took 60-90 µs more),
        # so work done together costs that once (measured: checkpoints apart from the flushes
        # 2.9% of a run, together 1.7%)
        self.hold_checkpoints = False
        # share of the wall clock this session's steps get (1/n in a comparison of n runs stepped
        # in turn): checkpoints are spaced by its own time per step, not the others' as well
        self.time_share = 1.0
        self.last_hit: Hit | None = None
        # the last line for the status bar ("new branch 3, branch 2 kept at ..."); a torch bug its
        # settings meet, from the start (core.torch_issues)
        self.notice = torch_issues.for_optimizer(self.engine.optimizer)
        self._undo: list = []
        self._redo: list = []
        self.view = None  # what the window shows (core.observe.View): snapshots copy only that
        self._watch_branch()

    # ----- the live objects (read them on the owning thread only) -----

    spec = property(lambda self: self.timeline.branch.spec)
    params = property(lambda self: self.engine.params)
    optimizer = property(lambda self: self.engine.optimizer)
    scheduler = property(lambda self: self.engine.scheduler)
    task = property(lambda self: self.engine.task)
    grad_gen = property(lambda self: self.engine.grad_gen)
    step_count = property(lambda self: self.engine.step_count)
    loss = property(lambda self: self.engine.loss)
    last_eval = property(lambda self: self.engine.last_eval)
    tensor_specs = property(lambda self: self.engine.tensor_specs)
    group_specs = property(lambda self: self.engine.group_specs)
    device = property(lambda self: self.engine.device)
    opt_class = property(lambda self: self.engine.opt_class)
    names = property(lambda self: self.engine.names)
    param_list = property(lambda self: self.engine.param_list)
    blobs = property(lambda self: self.timeline.blobs)

    def index_of(self):
        return self.engine.index_of()

    def group_of(self):
        return self.engine.group_of()

    def numel(self) -> int:
        return self.engine.numel()

    def loss_value(self):
        return self.engine.loss_value()

    def lrs(self):
        return self.engine.lrs()

    def xy(self):
        return self.engine.xy()

    def check_can_step(self) -> None:
        self.engine.check_can_step()

    @property
    def branch(self):
        return self.timeline.branch

    @property
    def at_head(self) -> bool:
        """False when rewound: acting from here forks a new branch."""
        return self._index is None

    @property
    def journal(self) -> list:
        """The current branch's actions (steps taken so far included)."""
        self.flush()
        return self.timeline.branch.journal.actions()

    @property
    def history(self):
        """The current curves: the branch's series (up to the shown step when rewound)."""
        s = self.timeline.branch.series
        if self.at_head:
            return s
        key = (self.timeline.current, self.step_count, s.last_step)
        if getattr(self, "_hist_key", None) != key:
            self._hist_key, self._hist = key, s.truncated(self.step_count)
        return self._hist

    def decision_grid(self, max_age: float = 0.1):
        """The 2-D classifier's decision grid, recomputed at most every ``max_age`` seconds."""
        if self.task is None or not self.task.has_decision_grid:
            return None
        now = time.perf_counter()
        cached = getattr(self, "_grid", None)
        if cached is None or (cached[0] != (self.timeline.current, self.step_count) and now - cached[1] >= max_age):
            self._grid = ((self.timeline.current, self.step_count), now, self.task.decision_grid())
        return self._grid[2]

    # ----- acting -----

    def apply(self, action, undoable: bool = True) -> None:
        """Carry out one action and record it. Refused actions change nothing."""
        if isinstance(action, Step):
            self.run(action.n)
            return
        if isinstance(action, Reset):
            self.rebuild(self.spec, "reset")
            return
        if isinstance(action, (LoadOptimizer, LoadParams)) and not action.blob:
            reader = files.read_optimizer_state if isinstance(action, LoadOptimizer) else files.read_params
            self._load(action, reader(action.path))
            return
        self._fork_if_rewound()
        before = self.position()
        self.flush()
        self.engine.apply(action)
        self.timeline.branch.journal.record(self.step_count, action)
        if undoable:
            self._push_undo(before)

    def _load(self, action, data) -> None:
        """A load's data goes into the timeline (never a dangling path), only if it is accepted."""
        kind = "optimizer" if isinstance(action, LoadOptimizer) else "params"
        key = f"{kind}-{files.content_id(data)}"
        with self.atomic():
            self.timeline.blobs.setdefault(key, data)
            self.apply(replace(action, blob=key))

    @contextmanager
    def atomic(self):
        """Everything inside happens, or nothing does: on an exception the timeline (branches,
        journal, stored data, position) and the engine are put back as they were."""
        self.flush()
        tl = self.timeline
        saved = (tl.current, tl._next, set(tl.branches), list(tl.branch.journal.entries), set(tl.blobs),
                 self._index, list(self._undo), list(self._redo))
        engine, state = self.engine, self.engine.state()
        try:
            yield
        except BaseException:
            current, nxt, branches, entries, blobs, index, undo, redo = saved
            for b in set(tl.branches) - branches:
                del tl.branches[b]
                tl.checkpoints.drop_branch(b)
            tl.current, tl._next = current, nxt
            tl.branch.journal.entries[:] = entries
            tl.checkpoints.truncate(current, engine.step_count)
            for k in set(tl.blobs) - blobs:
                del tl.blobs[k]
            self._index, self._undo, self._redo = index, undo, redo
            self.engine = engine
            self.observer.attach(engine.optimizer)
            engine.restore(state)
            self._watch_branch()
            raise

    def run(self, n: int, budget: Budget | None = None, cancelled=lambda: False) -> int:
        """Step up to ``n`` times (stopping early if ``cancelled()`` or at a breakpoint, whose
        ``Hit`` is then in ``last_hit``). Every step taken is in the journal, also when one fails."""
        done = 0
        self.last_hit = None
        try:
            for i in range(n):
                if cancelled():
                    break
                if i == n - 1:
                    self.observer.force_next = True
                hit = self.advance()
                done += 1
                if hit is not None:
                    break
        finally:
            self.flush()
        return done

    def step(self, n: int = 1) -> None:
        self.run(n)

    def advance(self) -> Hit | None:
        """One step, watched: the journal, the series, checkpoints and breakpoints. Returns the
        first breakpoint that held (the session then stands at its step)."""
        if self._index is not None:
            self._fork_if_rewound()
        e = self.engine
        if e.step_count == e.start_step:
            e.check_can_step()
        metrics = e.step_once()
        self._pending += 1
        hit = self.observer.end_step(e.step_count, e.loss, metrics, e)
        if hit is not None:
            return self._stop_at(hit)
        self._since_ckpt += 1
        if self._since_ckpt >= self._ckpt_every and (
                not self.hold_checkpoints or self._since_ckpt >= HOLD_AT_MOST * self._ckpt_every):
            self.checkpoint()
        return None

    def checkpoint_if_due(self) -> None:
        """The checkpoint ``advance`` holds back while ``hold_checkpoints``, if it is due."""
        if self._since_ckpt >= self._ckpt_every:
            self.checkpoint()

    def flush(self) -> Hit | None:
        """Write the steps taken into the journal and read pending measurements."""
        hit = self.observer.resolve()
        if hit is not None:
            hit = self._stop_at(hit)
        e = self.engine
        self.observer.flush_series(e.lrs(), e.step_count)
        if self._pending:
            b = self.timeline.branch
            b.journal.record(e.step_count - self._pending, Step(self._pending))
            b.threads = torch.get_num_threads()  # CPU reductions' last bits depend on it (README)
            self._pending = 0
            loss = e.loss
            if loss is not None:
                b.last_loss = float(loss)
        return hit

    def _stop_at(self, hit: Hit) -> Hit:
        """The breakpoint held at ``hit.step``; steps taken after it (read back in a batch on a
        GPU) are dropped, so the session stands exactly there."""
        self.last_hit = hit
        b = self.timeline.branch
        if self._pending:
            b.journal.record(self.engine.step_count - self._pending, Step(self._pending))
            b.threads = torch.get_num_threads()
            self._pending = 0
        if self.engine.step_count > hit.step:
            self._drop_after(hit.step)
        if self.engine.loss is not None:
            b.last_loss = float(self.engine.loss)
        if hit.text == "params nonfinite":
            bad = [n for n, p in self.params.items() if not bool(torch.isfinite(p.detach()).all())]
            self.last_hit = replace(hit, detail=f"{', '.join(bad)} became NaN or infinite")
        return self.last_hit

    def back_to(self, step: int, force: bool = False) -> None:
        """Stand at ``step`` of the current branch again as if the steps after it had never been
        taken (a comparison stepping its runs a few steps each goes back when another run stopped
        earlier): the journal, checkpoints and curves after it are dropped, and the parameters and
        state rebuilt exactly (the nearest checkpoint, then the journal)."""
        self.flush()
        at = self.engine.step_count
        if self._index is not None or at < step or at == step and not force:  # force: a failed step
            return  # may have changed the state half-way; it is rebuilt all the same
        b = self.timeline.branch
        b.series, b.dists = b.series.truncated(step), b.dists.truncated(step)
        self._drop_after(step)
        self._watch_branch()
        self._since_ckpt = 0
        b.last_loss = self.loss_value()

    def _drop_after(self, step: int) -> None:
        """The current branch's journal and checkpoints end at ``step``; stand there."""
        b = self.timeline.branch
        b.journal = b.journal.copy_prefix(step, b.journal.index_after(step))
        self.timeline.checkpoints.truncate(b.id, step)
        self._restore(b.id, step, len(b.journal.entries))

    def checkpoint(self) -> None:
        """Keep the engine's complete state at this step (the run's cost of rewinding later).

        The next one comes after as many steps as keep checkpoints at about CHECKPOINT_SHARE
        of the stepping time (measured over the steps since this one), and never closer than
        REPLAY_UNSEEN seconds of steps (a tiny problem's 2 numbers would otherwise keep a
        checkpoint every hundred steps, mostly RNG states); rewinding replays at most that many.
        """
        t0 = time.perf_counter()
        steps = self._since_ckpt
        st = self.engine.state()
        nbytes = self.engine.state_bytes(st)
        self.flush()
        tl = self.timeline
        tl.checkpoints.add(tl.current, self.engine.step_count, st, nbytes, tl.heads())
        t1 = time.perf_counter()
        if steps and self._ckpt_mark:
            per_step = max((t0 - self._ckpt_mark) / steps * self.time_share, 1e-7)
            every = max((t1 - t0) / (CHECKPOINT_SHARE * per_step), REPLAY_UNSEEN / per_step)
            self._ckpt_every = max(1, min(MAX_CHECKPOINT_EVERY, math.ceil(every)))
        self._ckpt_mark = t1
        self._since_ckpt = 0

    # ----- branches -----

    def _watch_branch(self) -> None:
        """Point the observer at the current branch's curves, from the step the engine stands at."""
        o, e = self.observer, self.engine
        o.series = self.timeline.branch.series
        o.dists = self.timeline.branch.dists
        o.lr_each_step = e.scheduler is not None
        o._lr_from = e.step_count + 1

    def position(self) -> tuple[int, int, int]:
        """(branch, step, journal entries applied): where the session stands (after a flush)."""
        self.flush()
        index = len(self.timeline.branch.journal.entries) if self._index is None else self._index
        return (self.timeline.current, self.engine.step_count, index)

    def _fork_if_rewound(self) -> None:
        if self._index is None:
            return
        tl, old = self.timeline, self.timeline.branch
        k = self.engine.step_count
        new = tl.new_branch(old.spec, old.id, k, True, f"forked from branch {old.id} at step {k:,}",
                            journal=old.journal.copy_prefix(k, self._index), series=old.series.truncated(k),
                            dists=old.dists.truncated(k))
        new.last_loss = self.loss_value()
        tl.current = new.id
        self._index = None
        self._watch_branch()
        self.notice = f"New branch {new.id} from step {k:,}; branch {old.id} kept ({old.end_step:,} steps)"

    def rebuild(self, spec: SessionSpec, reason: str) -> str:
        """Start ``spec`` from step 0 on a new branch, keeping the current one; returns the
        status line. A spec that cannot be built changes nothing."""
        self.flush()
        old_pos = self.position()
        engine = Engine(spec, self.timeline.blobs, None)  # refusals raise here, before anything changes
        tl, old = self.timeline, self.timeline.branch
        new = tl.new_branch(spec, old.id, self.engine.step_count, False, reason)
        tl.current = new.id
        self.engine = engine
        engine.observer = self.observer
        self.observer.attach(engine.optimizer)
        self._index = None
        self._watch_branch()
        self._since_ckpt = 0
        self._push_undo(old_pos)
        issue = torch_issues.for_optimizer(engine.optimizer)
        self.notice = f"{reason}: new branch {new.id}, branch {old.id} kept at step {old_pos[1]:,}" + (
            f". {issue}" if issue else "")
        return self.notice

    def goto(self, step: int | None = None, branch: int | None = None, index: int | None = None) -> None:
        """Stand at ``step`` of ``branch`` (default: the current one; step None: its head),
        exactly as when the run was there. Acting from there forks a new branch. ``index``: the
        journal entries applied, to stand between the actions recorded at ``step`` (where an
        undo left the session); default after them at the head, before them elsewhere."""
        self.flush()
        b = self.timeline.branches.get(self.timeline.current if branch is None else branch)
        if b is None:
            raise SpecError(f"There is no branch {branch}; {branch_list(self.timeline.branches)}")
        start, end = b.start_step, b.end_step
        step = end if step is None else step
        if not start <= step <= end:
            since = f" (it resumes a checkpoint at step {start:,})" if start else ""
            raise SpecError(f"Branch {b.id} runs from step {start:,} to {end:,}{since}; there is no step {step:,}")
        default = default_index(b.journal, step, end)
        if index is not None:
            lo, hi = b.journal.index_after(step), actions_end(b.journal, step)
            if not lo <= index <= hi:
                raise SpecError(f"Branch {b.id} has {hi - lo} action{'s' if hi - lo != 1 else ''} at step {step:,}; "
                                f"there is no position {index - lo} among them")
        else:
            index = default
        before = self.position()
        if (b.id, step, index) != before:
            self._restore(b.id, step, index)
            self._push_undo(before)

    def _restore(self, branch: int, step: int, index: int) -> None:
        """Stand at ``step`` of ``branch`` with its first ``index`` journal entries applied."""
        tl = self.timeline
        b = tl.branches[branch]
        ck = tl.nearest_checkpoint(branch, step)
        if self.engine.spec != b.spec:
            self.engine = Engine(b.spec, tl.blobs, self.observer)
        self.observer.recording = False
        try:
            if ck is not None:
                self.engine.restore(ck.state, check=ck.state.pop("_check", False))
                start = ck.step
            else:
                self.engine._build()
                start = self.engine.step_count  # 0, or the step a resumed checkpoint starts at
            for s0, a in b.journal.prefix(step, index):
                if isinstance(a, Step):
                    n = s0 + a.n - max(s0, start)
                    if n > 0:
                        self.engine.apply(Step(n))
                elif s0 >= start:
                    self.engine.apply(a)
        finally:
            self.observer.recording = True
        tl.current = branch
        self._index = None if index >= len(b.journal.entries) else index
        self._watch_branch()
        self._since_ckpt = 0

    def branches(self) -> list[BranchSummary]:
        self.flush()
        cur = self.timeline.current
        return [BranchSummary(b.id, b.parent, b.fork_step, b.end_step, b.last_loss, b.reason, b.spec.optimizer,
                              b.id == cur) for b in self.timeline.branches.values()]

    # ----- undo -----

    def _push_undo(self, pos) -> None:
        self._undo.append(pos)
        del self._undo[:-200]
        self._redo.clear()

    def undo(self) -> bool:
        """Go back to where the session stood before the last edit (the edit stays in its branch)."""
        if not self._undo:
            return False
        self.flush()
        pos = self._undo.pop()
        self._redo.append(self.position())
        self._restore(*pos)
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self.flush()
        pos = self._redo.pop()
        self._undo.append(self.position())
        self._restore(*pos)
        return True

    def distribution(self, name: str, which: str = "value"):
        """(steps, bin edges, mean counts per step [buckets, bins + 1 (NaNs last)]) of a tensor,
        its gradient or a state entry over the current branch, or None if not measured yet."""
        self.flush()
        index = self.index_of().get(name)
        if index is None:
            raise SpecError(f"No tensor named {name!r}")
        d = self.timeline.branch.dists
        got = (d if self.at_head else d.truncated(self.step_count)).view((index, which))
        return None if got is None else (got[0], distributions.EDGES.copy(), got[1])

    # ----- breakpoints -----

    def set_breakpoints(self, bps) -> None:
        """Replace the breakpoints (each checked against this session first)."""
        bps = [b if isinstance(b, Breakpoint) else parse_breakpoint(b) for b in bps]
        for bp in bps:
            check_fits(bp, set(self.params), len(self.optimizer.param_groups))
        self.observer.set_breakpoints(bps)

    @property
    def breakpoints(self) -> list[Breakpoint]:
        return list(self.observer.breakpoints)

    # ----- loads (what the window's Open and the CLI's --load-* do) -----

    def load_optimizer_state(self, sd: dict, path: str = "") -> None:
        self._load(LoadOptimizer(path=str(path)), sd)

    def load_params(self, sd: dict, path: str = "") -> None:
        self._load(LoadParams(path=str(path)), sd)

    def with_spec(self, **changes) -> SessionSpec:
        return replace(self.spec, **changes)


__all__ = ["Session", "NonFinite", "StepError", "SpecError", "BranchInfo", "BreakpointError", "SMALL_NUMEL",
           "make_tensor", "make_grad", "tensor_seed", "grad_seed", "copy_state", "Journal", "torch"]
