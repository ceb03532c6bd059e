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

import os
from collections import deque
from contextlib import contextmanager
from dataclasses import replace

import time

import numpy as np
import torch

from . import catalogue, compare_pool
# the configurations (core.compare_config), importable from here as before
from .compare_config import RunSpec, check_same_problem, config_run, config_spec, describe, hparams_from_text
from .compare_frame import CompareHistory, ComparisonFrame, RunFrame
from .compare_watch import CrossWatch, flat
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
POOL_TURN_STEPS = 64  # a turn's length when the runs step in processes of their own (no caches shared)
_EMPTY = History.empty()
# Runs in processes of their own (core.compare_pool): "1" always where usable, "0" never, else
# where PROCESSES_AUTO is set (the app's runner processes set it: a comparison made in a test or a
# script steps in its own process unless asked)
PROCESSES = os.environ.get("OPTIMLAB_COMPARE_PROCESSES", "").strip()
PROCESSES_AUTO = False


def processes_wanted() -> bool:
    return PROCESSES == "1" or (PROCESSES != "0" and PROCESSES_AUTO)


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
        self.remote = False  # its session lives in a process of its own (core.compare_pool)
        self.at = 0  # its step (remote)
        self.spec0 = self.numel0 = self.blobs0 = None  # what stays known here when it does
        self.shared_bytes = 0
        self.next_at: int | None = None  # the step of its next branch action (remote)
        self.rebuild: RunSpec | None = None  # what builds it again should its process end
        self._sent_view = None  # the curves it last sent (_w_history)

    def send_away(self, pool) -> None:
        """Move this run's session to a process of its own; keep here what does not change."""
        s = self.session
        self.spec0, self.numel0, self.blobs0, self.at = s.spec, s.numel(), s.timeline.blobs, s.step_count
        if self.source is None:  # opened from a file: its journal says how to build it again
            from .compare_recovery import run_source
            self.rebuild = run_source(self)
        else:
            self.rebuild = self.source
        self.shared_bytes = sum(p.numel() * p.element_size() for p in shared_params(self))
        self.next_at = next_action(self)
        pool.start(self)
        self.remote = True
        self.session = compare_pool.Elsewhere(self.label)

    @property
    def step_count(self) -> int:
        return self.at if self.remote else self.session.step_count

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


def shared_params(run: Run) -> list[torch.Tensor]:
    """The parameters every run has (the problem's own; not those a branch added)."""
    e = run.session.engine
    added = {t.name for t in e.added_tensors()}
    return [e.params[n] for n in e.names if n not in added]


def next_action(run: Run) -> int | None:
    return run.script[0][0] if run.script else None


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
            if r.remote:
                self._c._reset = True  # with the next turn
            else:
                r.session.observer.reset_budget()
        self._c.watch.reset_budget()

    @property
    def force_next(self) -> bool:
        return self._c.watch.force_next

    @force_next.setter
    def force_next(self, on: bool) -> None:
        for r in self._c.runs:
            if r.remote:
                self._c._force = on  # with the next turn
            else:
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
        self._blob_pool = {k: v for rs in runs for k, v in rs.blobs.items()}  # checkpoint data runs share
        self._init_processes()
        for rs in runs:
            self._check(rs)
            self.runs.append(self._make(rs, joined=self._step))
        self._share_budgets()

    def _init_processes(self) -> None:
        self.processes = processes_wanted()  # step the runs in processes of their own where usable
        self._workers: compare_pool.Pool | None = None
        self._force = self._reset = self._hold = False
        self._views: dict = {}  # run id -> the last history view it sent (_w_history)
        self._ahead: dict = {}  # run id -> (step, view, snapshot, with curves) sent with its last turn

    def _share_budgets(self) -> None:
        """Each run's observer measures, and its session checkpoints, within its share of the
        time: its clock runs while the other runs step too, so a whole share each would spend
        n times what the same runs made alone spend."""
        share = self._time_share()
        self.in_runs({r.id: (_w_share, (share,)) for r in self.runs})

    def _time_share(self) -> float:
        """The share of its clock's time each run steps in: 1/n of it in one process; in processes
        of their own, the runs step side by side, one core each while there are enough (a share of
        1/n there had held their curves without a point for seconds)."""
        n = len(self.runs)
        return min(1.0, compare_pool.cores() / n) if self._workers is not None else 1.0 / n

    @property
    def hold_checkpoints(self) -> bool:
        """The runs' sessions leave their checkpoints to the runner (``Session.hold_checkpoints``)."""
        return all(self._hold if r.remote else r.session.hold_checkpoints for r in self.runs)

    @hold_checkpoints.setter
    def hold_checkpoints(self, on: bool) -> None:
        self._hold = on
        self.in_runs({r.id: (_w_hold, (on,)) for r in self.runs})

    def checkpoint_if_due(self) -> None:
        """Each run's held checkpoint, if due: together, with the runner's flush and frame."""
        self.in_runs({r.id: (_w_checkpoint_if_due, ()) for r in self.runs})

    @classmethod
    def restore(cls, runs: list[Run], step: int, watch: CrossWatch, next_id: int) -> "Comparison":
        """A comparison from runs as they stand (how a saved one reopens)."""
        c = cls.__new__(cls)
        c.budget, c.runs, c.watch, c._step, c._next_id = RUN_BUDGET, list(runs), watch, step, next_id
        c.observer, c.last_hit, c._hist, c._hist_at, c._hist_ids = _Observers(c), None, None, 0.0, ()
        c.view = View()
        c._blob_pool = {}
        c._rng0 = torch.random.get_rng_state()
        c._init_processes()
        c._share_budgets()
        return c

    # ----- what the runner reads -----

    @property
    def step_count(self) -> int:
        return self._step

    @property
    def spec(self) -> SessionSpec:
        """The first run's spec (the problem every run shares)."""
        r = self.runs[0]
        return r.spec0 if r.remote else r.session.spec

    def numel(self) -> int:
        return max(r.numel0 if r.remote else r.session.numel() for r in self.runs)

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
        r = self.runs[0]
        return config_run(self.spec, optimizer, hparams, scheduler, r.blobs0 if r.remote else r.session.timeline.blobs)

    def _checkpoint_data(self, rs: RunSpec) -> dict:
        """``rs``'s blobs with the checkpoint data its spec resumes (a configuration made from the
        problem's spec alone carries none: it is the runs' shared one)."""
        r = rs.spec.resume
        if r is None or r.blob in rs.blobs:
            return rs.blobs
        for source in [self._blob_pool] + [x.blobs0 if x.remote else x.session.timeline.blobs for x in self.runs]:
            if r.blob in source:
                return {**rs.blobs, r.blob: source[r.blob]}
        return rs.blobs  # the session refuses it in one sentence

    def _session_of(self, rs: RunSpec) -> tuple[Session, tuple | None]:
        """A run's session at the runs' first step, and its own global generators' states (or None)."""
        saved = global_rngs()
        session = Session(rs.spec, blobs=self._checkpoint_data(rs), budget=self.budget)
        rng = None
        if draws_globally(rs.spec):  # from where a session alone would start drawing
            rng = global_rngs() if seeds_globally(rs.spec) or _sets_rng(session) else (self._rng0.clone(), saved[1])
        set_global_rngs(saved)
        return session, rng

    def _make(self, rs: RunSpec, joined: int = 0) -> Run:
        session, rng = self._session_of(rs)
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
        if self._workers is not None:  # the others live in processes of their own: so does it
            run.session.hold_checkpoints = self._hold
            run.send_away(self._workers)
        self._share_budgets()
        self.watch.invalidate()
        return run

    def remove(self, run_id: int) -> None:
        if len(self.runs) <= MIN_RUNS:
            raise SpecError(f"A comparison needs at least {MIN_RUNS} configurations")
        run = self.get(run_id)
        self.runs.remove(run)
        if run.remote:
            self._workers.stop(run_id)
            self._views.pop(run_id, None)
        self._share_budgets()
        self.watch.forget(run_id)

    # ----- runs in processes of their own (core.compare_pool) -----

    def in_run(self, run_id: int, fn, *args):
        """``fn(run, *args)`` where run ``run_id``'s session lives (here, or its own process; there
        ``fn`` must be a module-level function and the result picklable)."""
        run = self.get(run_id)
        if run.remote:
            return self._workers.one(run_id, fn, *args)
        return fn(run, *args)

    def in_runs(self, requests: dict) -> dict:
        """{run id: (fn, args)} -> {run id: fn(run, *args)}, each where the run lives (the runs
        in processes of their own answering in parallel)."""
        remote = {rid: req for rid, req in requests.items() if self.get(rid).remote}
        out = self._workers.ask(remote) if remote else {}
        out.update({rid: fn(self.get(rid), *args) for rid, (fn, args) in requests.items() if rid not in remote})
        return {rid: out[rid] for rid in requests}

    @property
    def in_processes(self) -> bool:
        """Whether the runs live in processes of their own (from the first step where usable)."""
        return self._workers is not None

    def _usable(self) -> bool:
        """Stepping in processes of their own is safe and pays: a fork (Linux, macOS), two cores or
        more, one torch thread (a forked child must not inherit an OpenMP team), CPU tensors (no
        CUDA context may be forked)."""
        if not hasattr(os, "fork") or compare_pool.cores() < 2 or torch.get_num_threads() != 1:
            return False
        if sum(not r.halted for r in self.runs) < 2:
            return False
        return all(torch.device(r.session.engine.device).type == "cpu" for r in self.runs)

    def _start_processes(self) -> bool:
        if self._workers is not None:
            return True
        if not self.processes or not self._usable():
            return False
        self._workers = compare_pool.Pool(torch.get_num_threads())
        try:
            for r in self.runs:
                r.send_away(self._workers)
        except BaseException:
            # a fork that failed (out of memory): the runs sent away so far are lost here
            self._workers.close()
            raise
        self._share_budgets()
        return True

    def _revive(self, run: Run, step: int) -> None:
        """Run ``run``'s process ended (killed, out of memory): build it again from its
        configuration and step it here to ``step`` (a run is the same run alone, so it stands as
        it stood), then in a process of its own again."""
        self._workers.stop(run.id)
        run.session, run.rng = self._session_of(run.rebuild)
        run.script, run.halted, run.remote, run.acted = deque(run.rebuild.script), "", False, False
        run.replay_due()
        run.run_to(step)
        run.flush()
        run.session.hold_checkpoints = self._hold
        _w_share(run, self._time_share())
        self._views.pop(run.id, None)
        run._sent_view = None  # its new session's curves are sent whole
        run.send_away(self._workers)

    def close(self) -> None:
        """End the runs' processes (the comparison cannot step or answer after it)."""
        if self._workers is not None:
            self._workers.close()

    def _turn(self, k: int) -> tuple[int, Hit | None]:
        """``advance_many`` with the runs in their processes: each takes up to ``k`` steps at once,
        in parallel; the same rules as a turn here (a run stopping at step s brings the others
        that went further back to s; a branch action due ends the turn before it)."""
        active = self.active()
        if not active:
            return 1, Hit(self._step, "every run has stopped", "every run has stopped")
        k0, asked = self._step, k
        k = min(k, POOL_TURN_STEPS)
        for r in active:
            if r.next_at is not None:
                k = min(k, r.next_at - k0 - 1)
        k = max(1, k)
        per_point = 2 * len(active) * max(r.shared_bytes for r in active)
        chosen, k = self.watch.plan(len(active), k0, k, KEEP_BYTES // max(1, per_point))
        stands = frozenset(chosen) | {s - 1 for s in chosen}
        force, reset, self._force, self._reset = self._force, self._reset, False, False
        # the last turn of what the runner asked is usually followed by a frame: each run sends its
        # snapshot (and its curves when due) with its answer, made while slower runs still step
        ahead = (self.view, self._history_due(False)) if k == asked else None
        got, lost = self._workers.ask({r.id: (_w_turn, (k0 + k, stands, force, reset, ahead)) for r in active},
                                      lost=True)
        for rid, a in got.items():
            if a.get("ahead") is not None:
                snap, views = a["ahead"]
                if views is not None:
                    self._views[rid] = views
                self._ahead[rid] = (a["step"], ahead[0], snap, ahead[1])
        for rid, why in lost.items():  # its process ended: rebuilt here, it stops where the turn began
            self._revive(self.get(rid), k0)
            got[rid] = {"stopped": k0, "hit": Hit(k0, why, why), "kept": {}, "kept_s": 0.0, "acted": False,
                        "next_at": self.get(rid).next_at, "halted": "", "step": k0}
        end, first = k0 + k, None
        stops = [(got[r.id]["stopped"], i) for i, r in enumerate(active) if got[r.id]["stopped"] is not None]
        if stops:
            end, i = min(stops)
            first = got[active[i].id]["hit"]
        back = {}
        for r in active:
            a = got[r.id]
            if a["stopped"] is not None and a["stopped"] > end:  # it stopped later: in lockstep it
                back[r.id] = (_w_back, (end, True))  # would not have got there (nor failed)
            elif a["step"] > end:
                back[r.id] = (_w_back, (end, False))
        if back:
            for rid, halted in self._workers.ask(back).items():
                got[rid]["halted"], got[rid]["step"] = halted, end
        acted, spent = False, 0.0
        for r in active:
            a = got[r.id]
            r.halted, r.next_at, r.at = a["halted"], a["next_at"], a["step"]
            acted = acted or a["acted"]
            spent += a["kept_s"]
        self._step = end
        self.watch._budget.charge(spent)
        self.watch.after_turn({r.id: got[r.id]["kept"] for r in active if got[r.id]["kept"]}, chosen, k0, end)
        if acted:
            self.watch.invalidate()
        return end - k0, first

    # ----- stepping -----

    def advance(self) -> Hit | None:
        """One lockstep step of every run still stepping; the first breakpoint or failure, if any
        (that run halts there; the others took their step)."""
        if self._start_processes():
            return self._turn(1)[1]
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
        if self._start_processes():
            return self._turn(k)
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
        return shared_params(run)

    def flush(self) -> Hit | None:
        """Read every pending measurement (a breakpoint found late on a GPU halts its run)."""
        first = None
        got = self.in_runs({r.id: (_w_flush, ()) for r in self.runs})
        for r in self.runs:
            hit, r.halted = got[r.id]
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
        if not self._history_due(fresh):
            return self._hist
        return self._history_from(self.in_runs({r.id: (_w_history, ()) for r in self.runs}))

    def _history_due(self, fresh: bool) -> bool:
        ids = tuple(r.id for r in self.runs)
        return fresh or self._hist is None or time.perf_counter() - self._hist_at >= HISTORY_EVERY or \
            ids != self._hist_ids

    def _history_from(self, sent: dict) -> CompareHistory:
        """The history from every run's view (``sent``: the views the runs sent, None where
        unchanged: ``_w_history``)."""
        self._hist_at, self._hist_ids = time.perf_counter(), tuple(r.id for r in self.runs)
        for rid, v in sent.items():
            if v is not None:
                self._views[rid] = v
        runs = tuple(self._views[r.id] for r in self.runs)
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
        want = self._history_due(not running)
        ahead, self._ahead = (self._ahead if running else {}), {}
        ready = {r.id: replace(a[2], seq=seq) for r in self.runs if (a := ahead.get(r.id)) is not None
                 and a[0] == r.step_count and a[1] is self.view and (a[3] or not want)}
        # one question to each other run: its snapshot, its curves when due
        got = self.in_runs({r.id: (_w_frame, (seq, running, self.view, want)) for r in self.runs if r.id not in ready})
        history = self._history_from({rid: v for rid, (_, v) in got.items()}) if want else self._hist
        got.update({rid: (snap, None) for rid, snap in ready.items()})
        runs = tuple(RunFrame(r.id, r.label, got[r.id][0], r.halted, r.joined) for r in self.runs)
        g = self.spec.gradient
        return ComparisonFrame(seq=seq, step=self._step, runs=runs, history=history,
                               running=running,
                               paused_reason=paused_reason, error=error, steps_per_second=steps_per_second,
                               objective=g.objective if g.kind == "objective" else None,
                               condition=float(g.condition), start=self.spec.start_step)


# ----- what a run's own process does (core.compare_pool: fn(run, *args) there) -----

def _w_share(run: Run, share: float) -> None:
    run.session.observer._budget.fraction = MEASURE_BUDGET * share
    run.session.time_share = share


def _w_hold(run: Run, on: bool) -> None:
    run.session.hold_checkpoints = on


def _w_checkpoint_if_due(run: Run) -> None:
    run.session.checkpoint_if_due()


def _w_flush(run: Run) -> tuple:
    return run.flush(), run.halted


def _w_history(run: Run):
    """The run's curves, or None when they are the ones sent last."""
    v = run.session.history.view()
    if run._sent_view is v:
        return None
    run._sent_view = v
    return v


def _w_frame(run: Run, seq: int, running: bool, view, with_history: bool) -> tuple:
    snap = make_snapshot(run.session, seq, history=_EMPTY, running=running, view=view)
    return snap, (_w_history(run) if with_history else None)


def _w_turn(run: Run, end: int, stands, force: bool, reset: bool, ahead=None) -> dict:
    """This run's part of a turn: its steps up to lockstep step ``end`` (fewer if it stops), its
    shared parameters copied at the steps in ``stands`` (CrossWatch.keep); with ``ahead`` (view,
    with curves), its running snapshot at the end (and its curves)."""
    s = run.session
    if reset:
        s.observer.reset_budget()
    if force:
        s.observer.force_next = True
    kept, spent, stopped, hit = {}, [0.0], None, None

    def keep(at: int) -> None:
        if at in stands:
            t0 = time.perf_counter()
            kept[at] = flat(shared_params(run))
            spent[0] += time.perf_counter() - t0

    if not run.halted:
        keep(s.step_count)
        for at in range(s.step_count + 1, end + 1):
            hit = run.advance()
            if hit is not None:
                stopped = at
                break
            keep(at)
    acted, run.acted = run.acted, False
    if ahead is not None and hit is None:
        ahead = _w_frame(run, 0, True, *ahead)
    else:
        ahead = None
    return {"ahead": ahead, "stopped": stopped, "hit": hit, "kept": kept, "kept_s": spent[0], "acted": acted,
            "next_at": next_action(run), "halted": run.halted, "step": s.step_count}


def _w_back(run: Run, step: int, force: bool) -> str:
    run.session.back_to(step, force=force)
    if force:
        run.halted = ""
    return run.halted


__all__ = ["MIN_RUNS", "MAX_RUNS", "Comparison", "Run", "RunSpec", "check_same_problem", "config_run", "config_spec",
           "describe", "draws_globally", "global_rngs", "hparams_from_text"]
