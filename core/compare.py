"""Compare optimizers in lockstep: 2 to 6 runs of one problem, stepped together.

Each run is a whole ``Session`` built from its own spec; the specs differ only in the
optimizer, its arguments, the groups' arguments and the scheduler. The problem part
(tensors, gradient source or task, device, seed, zero_grad mode) is the same, so by the
seeding rules of ``core.engine`` and ``core.tasks`` every run starts from the same
initial tensors and sees the same batches in the same order, and each has its own
generators (random manual gradients, data order). A task script's model may draw from
torch's global RNG (dropout): each run then keeps a global RNG state of its own, swapped
in around its steps (pytorch#49593: runs that share one generator diverge from the same
runs made alone). So each run of a comparison is bit for bit the run made alone.

Stepping is in lockstep: one step of every run, in order, per ``advance()``. A run added
later starts from the runs' first step and is stepped alone up to the others (``add``); a
branch of a session's timeline becomes a run with its journal's edits replayed at their steps
(``RunSpec.from_branch``). A run whose step fails or stops at a breakpoint (the loss
became NaN) halts there with the reason; the others go on.

A resumed session (``core.resume``) is compared from its checkpoint's step N: every run
starts there with the checkpoint's weights, data position and torch generator (the
checkpoint's data travels with the runs, so a saved comparison needs no file). A configuration
of the checkpoint's optimizer class takes its optimizer and scheduler state, with the
arguments it names set per group at step N; another class starts fresh at N (``config_run``
in ``core.compare_config``, where the configurations are made and labelled). The step, the
curves and the series between runs count from N.

The comparison has what a runner asks of a session (``advance``, ``flush``, ``run``,
``step_count``, ``observer``, ``numel``, ``spec``) and makes its own frames
(``make_frame``), so ``core.runner`` steps it like a session.
"""
from __future__ import annotations

from collections import deque
from contextlib import contextmanager

import time

import numpy as np
import torch

from . import catalogue
# the configurations (core.compare_config), importable from here as before
from .compare_config import RunSpec, check_same_problem, config_run, config_spec, describe, hparams_from_text
from .compare_frame import CompareHistory, ComparisonFrame, RunFrame
from .compare_watch import CrossWatch
from .observe import View, make_snapshot
from .observer import MEASURE_BUDGET, Hit
from .session import Session
from .snapshot import History
from .spec import SchedulerSpec, SessionSpec, SpecError

MIN_RUNS, MAX_RUNS = 2, 6
RUN_BUDGET = 64 * 2 ** 20  # checkpoint memory of each run (a comparison is not rewound)
TURN_STEPS = 32  # at most this many steps each run takes in a row (advance_many)
KEEP_BYTES = 64 * 2 ** 20  # a turn keeps the runs' parameters at this much at most for the cross-run series
HISTORY_EVERY = 0.25  # seconds: a running comparison's frames carry curves at most this old
_EMPTY = History.empty()


def seeds_globally(spec: SessionSpec) -> bool:
    """Building this spec seeds torch's and numpy's global generators (optimizers beyond torch.optim)."""
    return not catalogue.is_torch(spec.optimizer)


def draws_globally(spec: SessionSpec) -> bool:
    """Its steps may draw from the global generators: a task script's model, or an optimizer
    beyond torch.optim (SophiaH's probes, Kron's numpy draws)."""
    g = spec.gradient
    return (g.kind == "task" and g.task is not None and g.task.kind == "script") or seeds_globally(spec)


def global_rngs() -> tuple:
    return torch.random.get_rng_state(), np.random.get_state()


def set_global_rngs(states: tuple) -> None:
    torch.random.set_rng_state(states[0])
    np.random.set_state(states[1])


class Run:
    """One run of a comparison: its session, the branch actions still to replay, why it halted."""

    def __init__(self, run_id: int, label: str, session: Session, script=(), joined: int = 0, halted: str = "",
                 rng: tuple | None = None):
        self.id, self.label, self.session, self.joined, self.halted = run_id, label, session, joined, halted
        self.script = deque(script)
        self.rng = rng  # its own global generators' states (see draws_globally), else None
        self.acted = False  # a replayed action changed something since the last step
        self.source = None  # the RunSpec it was made from (None: opened from a file)

    @property
    def step_count(self) -> int:
        return self.session.step_count

    @contextmanager
    def own_rng(self):
        """Torch's and numpy's global generators are this run's for the duration (task scripts and
        optimizers beyond torch.optim may draw from them; runs sharing them would differ from the
        same runs alone, pytorch#49593)."""
        if self.rng is None:
            yield
            return
        saved = global_rngs()
        set_global_rngs(self.rng)
        try:
            yield
        finally:
            self.rng = global_rngs()
            set_global_rngs(saved)

    def halt(self, step: int, why: str) -> Hit:
        self.halted = why
        return Hit(step, why, f"{self.label} stopped: {why}")

    def advance(self) -> Hit | None:
        """One step (then the branch actions due at the new step); a failure halts this run only."""
        try:
            if self.rng is None:  # no generators to swap: no context manager per step (about 2%
                hit = self.session.advance()  # of a digits MLP's lockstep steps)
            else:
                with self.own_rng():
                    hit = self.session.advance()
        except Exception as e:  # noqa: BLE001 - this run stops; the comparison goes on
            return self.halt(self.session.step_count, _sentence(e))
        if hit is not None:
            return self.halt(hit.step, hit.detail or hit.text)
        return self.replay_due() if self.script else None

    def run_to(self, step: int) -> Hit | None:
        """Step alone to ``step`` (catching up), in runs between the branch actions."""
        self.replay_due()
        while not self.halted and self.session.step_count < step:
            stop = min([step] + [s0 for s0, _ in self.script if s0 > self.session.step_count])
            try:
                with self.own_rng():
                    self.session.run(stop - self.session.step_count)
            except Exception as e:  # noqa: BLE001
                return self.halt(self.session.step_count, _sentence(e))
            hit = self.session.last_hit
            if hit is not None:
                return self.halt(hit.step, hit.detail or hit.text)
            self.replay_due()
        return None

    def replay_due(self) -> Hit | None:
        """Apply the branch actions recorded at the step this run stands at."""
        while self.script and self.script[0][0] <= self.session.step_count:
            _, action = self.script.popleft()
            try:
                with self.own_rng():
                    self.session.apply(action, undoable=False)
            except Exception as e:  # noqa: BLE001
                return self.halt(self.session.step_count, _sentence(e))
            self.acted = True
        return None

    def flush(self) -> Hit | None:
        hit = self.session.flush()
        if hit is not None and not self.halted:
            return self.halt(hit.step, hit.detail or hit.text)
        return None


def _sets_rng(session: Session) -> bool:
    """Building it set torch's generator: the checkpoint it resumes carries one."""
    r = session.spec.resume
    data = session.timeline.blobs.get(r.blob) if r is not None else None
    return isinstance(data, dict) and data.get("rng") is not None


def _sentence(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class _Observers:
    """What a runner asks of "the observer", passed on to every run's and to the cross-run watch."""

    def __init__(self, comparison: "Comparison"):
        self._c = comparison

    def reset_budget(self) -> None:
        for r in self._c.runs:
            r.session.observer.reset_budget()
        self._c.watch.reset_budget()

    @property
    def force_next(self) -> bool:
        return self._c.watch.force_next

    @force_next.setter
    def force_next(self, on: bool) -> None:
        for r in self._c.runs:
            r.session.observer.force_next = on
        self._c.watch.force_next = on


class Comparison:
    """2 to 6 runs of one problem stepped in lockstep, and the series between them."""

    recover_to: int | None = None  # a recovered comparison: the step it stood at (compare_edits.open_recovery)

    def __init__(self, runs, budget: int = RUN_BUDGET):
        runs = list(runs)
        if not MIN_RUNS <= len(runs) <= MAX_RUNS:
            raise SpecError(f"A comparison needs {MIN_RUNS} to {MAX_RUNS} configurations, not {len(runs)}")
        self.budget = budget
        self.runs: list[Run] = []
        self.observer = _Observers(self)
        self.last_hit: Hit | None = None
        self._step = runs[0].spec.start_step  # 0, or the step of the checkpoint every run resumes
        self.watch = CrossWatch(origin=self._step)
        self._next_id = 0
        self._rng0 = torch.random.get_rng_state()  # the global RNG each run starts from
        self._hist = None
        self._hist_at = 0.0
        self._hist_ids: tuple = ()  # the runs the last history was read from
        self.view = View()  # the tensors whose values frames carry (the window: the one it shows)
        self._pool = {k: v for rs in runs for k, v in rs.blobs.items()}  # checkpoint data runs share
        for rs in runs:
            self._check(rs)
            self.runs.append(self._make(rs, joined=self._step))
        self._share_budgets()

    def _share_budgets(self) -> None:
        """Each run's observer measures, and its session checkpoints, within its share of the
        time: its clock runs while the other runs step too, so a whole share each would spend
        n times what the same runs made alone spend."""
        for r in self.runs:
            r.session.observer._budget.fraction = MEASURE_BUDGET / len(self.runs)
            r.session.time_share = 1.0 / len(self.runs)

    @property
    def hold_checkpoints(self) -> bool:
        """The runs' sessions leave their checkpoints to the runner (``Session.hold_checkpoints``)."""
        return all(r.session.hold_checkpoints for r in self.runs)

    @hold_checkpoints.setter
    def hold_checkpoints(self, on: bool) -> None:
        for r in self.runs:
            r.session.hold_checkpoints = on

    def checkpoint_if_due(self) -> None:
        """Each run's held checkpoint, if due: together, with the runner's flush and frame."""
        for r in self.runs:
            r.session.checkpoint_if_due()

    @classmethod
    def restore(cls, runs: list[Run], step: int, watch: CrossWatch, next_id: int) -> "Comparison":
        """A comparison from runs as they stand (how a saved one reopens)."""
        c = cls.__new__(cls)
        c.budget, c.runs, c.watch, c._step, c._next_id = RUN_BUDGET, list(runs), watch, step, next_id
        c.observer, c.last_hit, c._hist, c._hist_at, c._hist_ids = _Observers(c), None, None, 0.0, ()
        c.view = View()
        c._pool = {}
        c._rng0 = torch.random.get_rng_state()
        c._share_budgets()
        return c

    # ----- what the runner reads -----

    @property
    def step_count(self) -> int:
        return self._step

    @property
    def spec(self) -> SessionSpec:
        """The first run's spec (the problem every run shares)."""
        return self.runs[0].session.spec

    def numel(self) -> int:
        return max(r.session.numel() for r in self.runs)

    def active(self) -> list[Run]:
        return [r for r in self.runs if not r.halted]

    def get(self, run_id: int) -> Run:
        for r in self.runs:
            if r.id == run_id:
                return r
        raise SpecError(f"There is no run {run_id} in this comparison")

    # ----- configurations -----

    def _check(self, rs: RunSpec) -> None:
        if self.runs:
            check_same_problem(self.spec, rs.spec, rs.label or describe(rs.spec))

    def _label(self, wanted: str) -> str:
        taken = {r.label for r in self.runs}
        label, k = wanted, 2
        while label in taken:
            label, k = f"{wanted} ({k})", k + 1
        return label

    def config(self, optimizer: str, hparams: dict, scheduler: SchedulerSpec | None) -> RunSpec:
        """A configuration on this comparison's problem (``config_run``, with the checkpoint's
        data the runs hold)."""
        return config_run(self.spec, optimizer, hparams, scheduler, self.runs[0].session.timeline.blobs)

    def _checkpoint_data(self, rs: RunSpec) -> dict:
        """``rs``'s blobs with the checkpoint data its spec resumes (a configuration made from the
        problem's spec alone carries none: it is the runs' shared one)."""
        r = rs.spec.resume
        if r is None or r.blob in rs.blobs:
            return rs.blobs
        for source in [self._pool] + [x.session.timeline.blobs for x in self.runs]:
            if r.blob in source:
                return {**rs.blobs, r.blob: source[r.blob]}
        return rs.blobs  # the session refuses it in one sentence

    def _make(self, rs: RunSpec, joined: int = 0) -> Run:
        saved = global_rngs()
        session = Session(rs.spec, blobs=self._checkpoint_data(rs), budget=self.budget)
        rng = None
        if draws_globally(rs.spec):  # from where a session alone would start drawing
            rng = global_rngs() if seeds_globally(rs.spec) or _sets_rng(session) else (self._rng0.clone(), saved[1])
        set_global_rngs(saved)
        run = Run(self._next_id, self._label(rs.label or describe(rs.spec)), session, rs.script, joined, rng=rng)
        # what rebuilds it from the runs' first step (compare_edits.recovery_runs)
        run.source = RunSpec(run.label, rs.spec, tuple(rs.script), self._checkpoint_data(rs))
        self._next_id += 1
        run.replay_due()
        return run

    def add(self, rs: RunSpec) -> Run:
        """Add a configuration: it starts from the runs' first step (0, or a resumed checkpoint's)
        and is stepped alone to the others' step."""
        if len(self.runs) >= MAX_RUNS:
            raise SpecError(f"A comparison holds at most {MAX_RUNS} configurations")
        self._check(rs)
        self.flush()
        run = self._make(rs, joined=self._step)
        run.run_to(self._step)
        run.flush()
        self.runs.append(run)
        self._share_budgets()
        self.watch.invalidate()
        return run

    def remove(self, run_id: int) -> None:
        if len(self.runs) <= MIN_RUNS:
            raise SpecError(f"A comparison needs at least {MIN_RUNS} configurations")
        run = self.get(run_id)
        self.runs.remove(run)
        self._share_budgets()
        self.watch.forget(run_id)

    # ----- stepping -----

    def advance(self) -> Hit | None:
        """One lockstep step of every run still stepping; the first breakpoint or failure, if any
        (that run halts there; the others took their step)."""
        active = self.active()
        if not active:
            return Hit(self._step, "every run has stopped", "every run has stopped")
        k = self._step
        watch = self.watch.due(len(active), k)
        if watch:
            self.watch.before({r.id: self._shared(r) for r in active}, k)
        first = None
        for r in active:
            hit = r.advance()
            if hit is not None and first is None:
                first = hit
        self._step = k + 1
        if watch:
            self.watch.after({r.id: self._shared(r) for r in active if not r.halted}, k + 1)
        if any(r.acted for r in active):
            for r in active:
                r.acted = False
            self.watch.invalidate()  # an edit moved the parameters: not part of the next update
        return first

    def advance_many(self, k: int) -> tuple[int, Hit | None]:
        """Up to ``k`` lockstep steps, each run taking its steps in a row: four models stepped in
        turn ran about 12% slower than each alone (measured: the digits MLP with SGD, Adam, AdamW
        and RMSprop, 0.86x; in turns of 30 steps, 0.95x), as each step finds the caches and
        predictors full of the other runs' tensors and code. The result is that of ``advance``
        ``k`` times: when a run stops at step s, the runs that went past s go back to it exactly
        (``Session.back_to``), and the runs after it step only to s. One step at a time where
        that cannot hold cheaply: a branch action due within the steps, a run drawing from the
        global generators (see ``Run.own_rng``). The cross-run series are measured inside the
        turn (``CrossWatch.plan``): each run keeps a copy of its parameters at the chosen steps
        and the steps before them, measured when every run has taken its turn, so the floor's
        close points early in a run do not cut the turns short.
        Returns (steps taken, the first breakpoint or failure)."""
        active = self.active()
        k0 = self._step
        k = min(k, TURN_STEPS)
        for r in active:
            if r.script:
                k = min(k, r.script[0][0] - r.session.step_count - 1)
        if k < 2 or len(active) < 2 or any(r.rng is not None for r in active):
            return 1, self.advance()
        per_point = 2 * len(active) * sum(p.numel() * p.element_size() for p in self._shared(active[0]))
        chosen, k = self.watch.plan(len(active), k0, k, KEEP_BYTES // max(1, per_point))
        stands = set(chosen) | {s - 1 for s in chosen}
        kept: dict = {}
        end, first, first_at, done = k0 + k, None, 0, []
        for r in active:
            at, hit = r.session.step_count, None
            if at in stands:
                self.watch.keep(kept, r.id, at, self._shared(r))
            for at in range(at + 1, end + 1):  # the lockstep step this step belongs to
                hit = r.advance()
                if hit is not None:
                    break
                if at in stands:
                    self.watch.keep(kept, r.id, at, self._shared(r))
            if hit is not None and (first is None or at < first_at):
                first, first_at, end = hit, at, at  # the runs after it step only to there
                for d, d_at in done:  # and those that went further come back
                    if d_at is not None and d_at > end:  # it stopped later: one step at a time, it
                        d.session.back_to(end, force=True)  # would not have got there (nor failed)
                        d.halted = ""
                    elif d.session.step_count > end:
                        d.session.back_to(end)
            done.append((r, at if hit is not None else None))
        self._step = end
        self.watch.after_turn(kept, chosen, k0, end)
        return end - k0, first

    def _shared(self, run: Run) -> list[torch.Tensor]:
        """The parameters every run has (the problem's own; not those a branch added)."""
        e = run.session.engine
        added = {t.name for t in e.added_tensors()}
        return [e.params[n] for n in e.names if n not in added]

    def flush(self) -> Hit | None:
        """Read every pending measurement (a breakpoint found late on a GPU halts its run)."""
        first = None
        for r in self.runs:
            hit = r.flush()
            if hit is not None and first is None:
                first = hit
        self.watch.resolve()
        return first

    def run(self, n: int, cancelled=lambda: False) -> int:
        """``n`` lockstep steps (fewer if ``cancelled()`` or a run halts: ``last_hit`` says why),
        in turns of up to TURN_STEPS steps a run (``cancelled`` is read between turns)."""
        done = 0
        self.last_hit = None
        try:
            while done < n:
                if cancelled():
                    break
                if done == n - 1:
                    self.observer.force_next = True  # the last step alone, measured
                took, hit = self.advance_many(n - done - 1) if n - done > 2 else (1, self.advance())
                done += took
                if hit is not None:
                    self.last_hit = hit
                    break
        finally:
            hit = self.flush()
            self.last_hit = self.last_hit or hit
        return done

    # ----- frames -----

    def history(self, fresh: bool = True) -> CompareHistory:
        """Every run's curves and the cross-run series (the same object while nothing changed).
        ``fresh=False`` (a running comparison's frames): the last one while it is younger than
        HISTORY_EVERY seconds. Reading the curves of every run and, in the app's runner process,
        pickling them (about 1 MB for 4 runs of 1,500 steps) cost most of a frame, and frames
        share a small time budget: curves at a few updates a second let the rest of the window
        (the step, the tensors) update several times as often."""
        now = time.perf_counter()
        ids = tuple(r.id for r in self.runs)
        if not fresh and self._hist is not None and now - self._hist_at < HISTORY_EVERY and ids == self._hist_ids:
            return self._hist
        self._hist_at, self._hist_ids = now, ids
        runs = tuple(r.session.history.view() for r in self.runs)
        cross = self.watch.view()
        old = self._hist
        if old is None or old.cross is not cross or len(old.runs) != len(runs) or \
                any(a is not b for a, b in zip(old.runs, runs)):
            self._hist = CompareHistory(runs, cross)
        return self._hist

    def make_frame(self, seq: int, running: bool = False, paused_reason: str | None = None, error=None,
                   steps_per_second: float = 0.0) -> ComparisonFrame:
        """The frame the window draws: each run's snapshot (without curves; the values of the
        tensors ``view`` names, the others' shapes and statistics) and the history."""
        runs = tuple(RunFrame(r.id, r.label, make_snapshot(r.session, seq, history=_EMPTY, running=running,
                                                           view=self.view),
                              r.halted, r.joined) for r in self.runs)
        g = self.spec.gradient
        return ComparisonFrame(seq=seq, step=self._step, runs=runs, history=self.history(fresh=not running),
                               running=running,
                               paused_reason=paused_reason, error=error, steps_per_second=steps_per_second,
                               objective=g.objective if g.kind == "objective" else None,
                               condition=float(g.condition), start=self.spec.start_step)


__all__ = ["MIN_RUNS", "MAX_RUNS", "Comparison", "Run", "RunSpec", "check_same_problem", "config_run", "config_spec",
           "describe", "draws_globally", "global_rngs", "hparams_from_text"]
