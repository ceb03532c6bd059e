"""The runner: steps a session on its own thread and publishes snapshots.

Only the runner thread touches the session's tensors while it lives. Everyone
else talks to it through thread-safe commands (run, pause, step N, stop, call)
and reads ``latest()``, a slot that holds the newest Snapshot. Snapshots and the
history's measurements are taken on a time budget (a few percent of the loop's
time, and at most ``max_hz`` snapshots a second), never once per step, so watching
costs the optimizer almost nothing.
"""
from __future__ import annotations

import math
import queue
import threading
import time
import traceback
from concurrent.futures import Future
from dataclasses import replace

from .history import BUDGET, Budget

SNAPSHOT_BUDGET = 0.04  # share of wall time for snapshots (at most max_hz of them a second)
# The window is to draw at least 30 frames a second. Within the budget a session's frames come
# about 40 a second while one costs up to 1 ms; on a slower machine (or a session whose frame
# costs more) the budget alone gave 29.7. So a session's frame this late is due even over the
# budget, while frames stay under SNAPSHOT_CAP of the time (a frame of a huge tensor that
# costs 20 ms keeps to the budget). A comparison's frames (several runs, ~10 a second: its
# window draws no faster) keep to the budget.
FLOOR_INTERVAL = 1 / 35
SNAPSHOT_CAP = 0.05
BURST_SECONDS = 0.002  # stepping between looks at the clock; commands are still checked every step
MAX_BURST = 10_000
# a comparison's runs take their steps in turns (Comparison.advance_many); a burst of turns lasts
# about this long (a pause waits for the turn under way to end)
TURN_SECONDS = 0.1
from .observe import make_snapshot
from .session import Session
from .snapshot import RunError, Snapshot

def frame_of(session, seq: int, **kw):
    """The frame of what the runner steps: a session's snapshot, or what another steppable
    object (a ``core.compare.Comparison``) makes with its own ``make_frame``."""
    make = getattr(session, "make_frame", None)
    return make(seq, **kw) if make is not None else make_snapshot(session, seq, **kw)


def _close(session) -> None:
    close = getattr(session, "close", None)  # a comparison whose runs live in processes of their own
    if close is not None:
        close()


def frame_due(since: float, min_interval: float, budget: Budget, now: float, floor: bool) -> bool:
    """Whether a running frame is due ``since`` seconds after the last: no sooner than
    ``min_interval``, and within the frames' ``budget``; with ``floor`` (a session), a frame
    FLOOR_INTERVAL late is due over the budget while frames stay under SNAPSHOT_CAP."""
    if since < min_interval:
        return False
    return budget.due(now) or (floor and since >= FLOOR_INTERVAL and budget.due(now, SNAPSHOT_CAP))


def run_steps(session: Session, n: int, budget: Budget | None = None, cancelled=lambda: False) -> int:
    """Step ``n`` times on this thread (stopping at a breakpoint). Returns steps done."""
    return session.run(n, cancelled=cancelled)


class RunnerCommands:
    """The commands every runner takes, as messages to its loop (``_post``). Both runners
    (this module's thread and ``runner_process``'s process) share them and ``apply``."""

    def _post(self, cmd) -> None:
        raise NotImplementedError

    def call(self, fn, *args) -> Future:
        raise NotImplementedError

    def run(self) -> None:
        self._post(("run",))

    def pause(self) -> None:
        self._post(("pause",))

    def step(self, n: int = 1) -> None:
        self._post(("step", int(n)))

    def cancel(self) -> None:
        self._post(("cancel",))

    def set_rate_limit(self, steps_per_second: float) -> None:
        self._post(("rate", float(steps_per_second)))

    def apply(self, action) -> Future:
        """Apply a journal action between steps (refused actions raise through the Future)."""
        return self.call(Session.apply, action)


class Runner(RunnerCommands):
    """Owns a Session on a background thread (plain ``threading``, no Qt)."""

    def __init__(self, session, max_hz: float = 60.0, budget: float = BUDGET, on_publish=None, fallback=None,
                 on_session=None):
        """``session`` is a Session, or a function that makes one: it is then called on the
        runner thread. Build where you step: a torch op run on another thread first leaves
        that thread's OpenMP team behind, and the steps then run at a third of their speed
        (seen on the digits MLP). If the function raises, ``fallback()`` is used and the
        error is shown in the first snapshot. ``on_session(session)`` is called on the runner
        thread whenever a session is taken on (built or swapped in)."""
        built = hasattr(session, "advance")  # a Session (or a Comparison), not a function making one
        self._on_session = on_session
        self._factory = None if built else session
        self._fallback = fallback
        self._session = session if built else None
        self._ready = threading.Event()
        self._on_publish = on_publish  # called on the runner thread with each new snapshot
        self._min_interval = 1.0 / max_hz
        self._snap_budget = Budget(SNAPSHOT_BUDGET)  # snapshots: their own share, so probes cannot starve them
        self._cmds: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = False
        self._running = False
        self._pending = 0  # steps left of a "step N" request
        self._batch_total = 0
        self._batch_done = 0
        self._rate_limit = 0.0
        self._burst_len = 1  # steps between looks at the clock (see _burst)
        self._step_time = 1.0  # seconds a step took in the last burst (a comparison: all runs' step)
        self._seq = 0
        self._error: RunError | None = None
        self._paused_reason: str | None = None
        self._sps = 0.0
        self._sps_mark = (time.perf_counter(), 0)
        self._last_step_time = 0.0
        self._published_at = 0.0
        self._latest: Snapshot | None = frame_of(session, 0) if built else None
        if built:
            self._ready.set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="optimlab-runner", daemon=True)
        self._thread.start()

    # ----- commands (any thread) -----

    def latest(self) -> Snapshot:
        self._ready.wait()
        with self._lock:
            return self._latest

    def call(self, fn, *args) -> Future:
        """Run ``fn(session, *args)`` on the runner thread between steps; its result arrives in
        the Future, after the snapshot that shows its effect has been published."""
        fut: Future = Future()
        self._post(("call", fn, args, fut))
        return fut

    def replace(self, build, *args) -> Future:
        """Swap in the session ``build(session, *args)`` returns, built on the runner thread
        between steps; the Future gets the new session's spec. The run stops. If ``build``
        raises, the old session stays and the error arrives in the Future."""
        return self.call(self._swap, build, args)

    def _swap(self, session, build, args):
        new = build(session, *args)
        if not hasattr(new, "advance"):
            raise TypeError(f"{getattr(build, '__name__', build)} returned {type(new).__name__}, not a Session")
        if new is not session:
            _close(session)  # a comparison's runs end their processes
        self._session = new
        if self._on_session is not None:
            self._on_session(new)
        self._running = False
        self._pending = 0
        self._batch_total = self._batch_done = 0
        self._error = None
        self._paused_reason = None
        return new.spec

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread (within one step) and wait for it."""
        self._stop = True
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _post(self, cmd) -> None:
        self._cmds.put(cmd)
        self._wake.set()

    # ----- the loop (runner thread) -----

    def _build(self) -> None:
        try:
            self._session = self._factory()
        except Exception as e:  # noqa: BLE001 - shown in the first snapshot
            if self._fallback is None:
                raise
            self._error = RunError(type(e).__name__, f"Could not open the session: {e}", traceback.format_exc())
            self._session = self._fallback()
        if self._on_session is not None:
            self._on_session(self._session)
        self._publish()
        self._ready.set()

    def _loop(self) -> None:
        if self._factory is not None:
            try:
                self._build()
            finally:
                self._ready.set()
        while not self._stop:
            dirty = self._drain() if not self._cmds.empty() else False  # no exception per step
            if self._stop:
                break
            busy = self._running or self._pending > 0
            if not busy:
                if dirty:
                    self._publish()
                self._wake.wait(0.25)
                self._wake.clear()
                continue
            if self._rate_limit > 0 and not self._wait_for_rate():
                continue
            self._burst()
        try:
            self._flush()
            self._publish()
        finally:
            _close(self._session)

    def _drain(self) -> bool:
        dirty = False
        while True:
            try:
                cmd = self._cmds.get_nowait()
            except queue.Empty:
                return dirty
            dirty = True
            kind = cmd[0]
            if kind == "run":
                self._running, self._error, self._paused_reason = True, None, None
                self._session.observer.reset_budget()
                self._snap_budget.reset()
                self._sps_mark = (time.perf_counter(), self._session.step_count)
            elif kind == "pause":
                self._running = False
                self._flush()
            elif kind == "step":
                if self._pending == 0:
                    self._batch_done, self._batch_total = 0, 0
                self._pending += cmd[1]
                self._batch_total += cmd[1]
                self._error, self._paused_reason = None, None
                self._session.observer.reset_budget()
                self._snap_budget.reset()
            elif kind == "cancel":
                self._pending = 0
                self._batch_total = self._batch_done = 0
                self._flush()
            elif kind == "rate":
                self._rate_limit = max(0.0, cmd[1])
            elif kind == "call":
                _, fn, args, fut = cmd
                self._flush()
                if fut.set_running_or_notify_cancel():
                    try:
                        result = fn(self._session, *args)
                    except BaseException as e:  # noqa: BLE001 - delivered to the caller
                        self._publish()
                        fut.set_exception(e)
                    else:
                        self._publish()  # the caller's next look at latest() shows the effect
                        fut.set_result(result)

    def _wait_for_rate(self) -> bool:
        """Sleep until the next step is allowed; False if a command arrived meanwhile."""
        due = self._last_step_time + 1.0 / self._rate_limit
        delay = due - time.perf_counter()
        if delay > 0:
            if self._wake.wait(delay):
                self._wake.clear()
                return False
        return True

    def _burst(self) -> None:
        """Step until a command arrives, a Step N ends or about BURST_SECONDS have passed, then
        publish if a snapshot is due: the clocks and budgets are read once a burst, not once a
        step (a tiny problem's step takes 15 µs). A rate limit steps one at a time."""
        s = self._session
        n = 1 if self._rate_limit > 0 else self._burst_len
        batch = self._pending > 0
        if batch:
            n = min(n, self._pending)
        many = getattr(s, "advance_many", None) if self._rate_limit <= 0 else None  # a comparison's turns
        if many is not None:
            n = max(n, min(MAX_BURST, int(TURN_SECONDS / max(self._step_time, 1e-6))))
            if batch:
                n = min(n, self._pending)
        hold = getattr(s, "checkpoint_if_due", None)
        if hold is not None:
            s.hold_checkpoints = True
        t0 = time.perf_counter()
        if many is None:
            done, hit, error = self._steps(s, n, batch)
        else:
            done, hit, error = self._turns(s, many, n, batch)
        if error is not None:
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self._halt(error=RunError(type(error).__name__, str(error), tb))
            return
        if hit is not None:
            self._halt(paused_reason=hit.message)
            return
        after = time.perf_counter()
        self._last_step_time = after
        self._burst_len = max(1, min(MAX_BURST, int(BURST_SECONDS * done / max(after - t0, 1e-9))))
        self._step_time = (after - t0) / max(done, 1)
        last = batch and self._pending == 0
        if last or frame_due(after - self._published_at, self._min_interval, self._snap_budget, after,
                             floor=many is None):
            if hold is not None:
                s.checkpoint_if_due()  # with the flush and the frame: see Session.hold_checkpoints
            after = time.perf_counter()
            self._publish()
            self._snap_budget.charge(time.perf_counter() - after)

    def _steps(self, s, n: int, batch: bool):
        """A session's burst: up to ``n`` steps, one ``advance`` each, and nothing else per step
        but what must be (a tiny problem's step takes 15 µs, and any work between two steps
        slows the next ones: README, "Where the rest of the gap goes"). Returns (steps done, the breakpoint that
        held or None, the exception that stopped the run or None); a Step N's steps are
        counted after the loop."""
        cmds = self._cmds
        advance = s.advance
        last = self._pending if batch else 0  # a Step N's last step is always measured
        done, hit = 0, None
        try:
            while done < n:
                if done + 1 == last:
                    s.observer.force_next = True
                done += 1
                hit = advance()
                if hit is not None or self._stop or not cmds.empty():
                    break
        except Exception as e:  # noqa: BLE001 - the run stops; the error travels as data
            return done, None, e
        if batch:
            self._count_steps(done)
        return done, hit, None

    def _turns(self, s, many, n: int, batch: bool):
        """A comparison's burst: lockstep steps in turns (``advance_many``); a Step N's last
        step goes alone (measured). Commands are read between turns. Returns as ``_steps``."""
        cmds = self._cmds
        done = 0
        while done < n:
            if self._pending == 1:
                s.observer.force_next = True  # the end of a Step N is always measured
            k = min(n - done, self._pending - 1) if batch else n - done
            try:
                took, hit = many(k) if k >= 2 else (1, s.advance())
            except Exception as e:  # noqa: BLE001 - the run stops; the error travels as data
                return done, None, e
            done += took
            if batch:
                self._count_steps(took)
            if hit is not None:
                return done, hit, None
            if self._stop or not cmds.empty():
                break
        return done, None, None

    def _count_steps(self, k: int) -> None:
        if self._pending > 0:
            self._pending = max(0, self._pending - k)
            self._batch_done += k
            if self._pending == 0:
                self._batch_total = self._batch_done = 0

    def _halt(self, error: RunError | None = None, paused_reason: str | None = None) -> None:
        self._running = False
        self._pending = 0
        self._batch_total = self._batch_done = 0
        self._error = error
        self._paused_reason = paused_reason
        self._publish()

    def _flush(self) -> None:
        hit = self._session.flush()
        if hit is not None:  # a breakpoint read back late (GPU): the session stands at its step
            self._running = False
            self._pending = 0
            self._batch_total = self._batch_done = 0
            self._paused_reason = hit.message

    def _publish(self) -> None:
        try:
            self._flush()
        except Exception as e:  # noqa: BLE001 - shown like any error of the run
            self._error = RunError(type(e).__name__, str(e), traceback.format_exc())
        now = time.perf_counter()
        t0, s0 = self._sps_mark
        steps = self._session.step_count
        if now - t0 >= 0.25:
            rate = (steps - s0) / (now - t0)
            self._sps = rate if (self._running or self._pending) else (self._sps if steps > s0 else 0.0)
            self._sps_mark = (now, steps)
        self._seq += 1
        try:
            snap = frame_of(self._session, self._seq, running=self._running or self._pending > 0,
                                 paused_reason=self._paused_reason, error=self._error,
                                 steps_per_second=self._sps if math.isfinite(self._sps) else 0.0)
        except Exception as e:  # noqa: BLE001 - keep the old picture, report why
            self._error = RunError(type(e).__name__, str(e), traceback.format_exc())
            self._running = False
            self._pending = 0
            if self._latest is None:
                raise
            snap = replace(self._latest, seq=self._seq, running=False, error=self._error)
        snap = replace(snap, batch_done=self._batch_done, batch_total=self._batch_total,
                       rate_limit=self._rate_limit)
        with self._lock:
            self._latest = snap
        if self._on_publish is not None:
            self._on_publish(snap)
        self._published_at = time.perf_counter()
