"""What the benchmarks share: the cases, a bare loop built from the runner's own spec,
timing of both sides, and statistics over interleaved bare/runner pairs.

Both sides do the same work by construction: the bare loop's tensors, optimizer and
task are built by ``Session(spec)`` from the very spec the runner builds (so they
cannot drift apart), and its loop then calls only torch: ``zero_grad``, the loss's
``backward()``, ``optimizer.step()``. Both run the same number of steps from the same
start, with the same torch thread count, on the same kind of thread: for the runner
process, the bare loop runs on a runner process's runner thread too (a bare loop on a
thread of the benchmark's own process measured about 10% slower than the same loop in a
fresh runner process, which made the runner look faster than bare).

The runner is told which tensor is shown, as the main window tells it (the first one):
frames while running carry that tensor's values and small tensors', statistics for the
others (``core.edits.show_tensor``).

On a busy machine one run proves little: a figure is the median of several pairs run
back to back (bare and runner alternating which goes first), with the spread of the
pairs' ratios beside it.
"""
from __future__ import annotations

import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core import edits, objectives  # noqa: E402
from core.runner import Runner  # noqa: E402
from core.runner_process import ProcessRunner, threads_for  # noqa: E402
from core.session import Session  # noqa: E402
from core.spec import GradientSpec, ManualGrad, SessionSpec, TensorSpec  # noqa: E402
from core.task_spec import TaskSpec  # noqa: E402

SNAPSHOT_HZ = 40  # as the app asks of its runner (app/bridge.py)
POLL = 0.025  # the GUI reads the latest snapshot about this often
FINE_POLL = 0.001  # process runner, near the end of a run: times the end closely


@dataclass(frozen=True)
class Case:
    key: str  # "a".."e"
    label: str
    spec: SessionSpec
    steps: int  # per run, on each side


def _cases() -> tuple[Case, ...]:
    mlp = [("fc1.weight", (128, 64)), ("fc1.bias", (128,)), ("fc2.weight", (10, 128)), ("fc2.bias", (10,))]
    return (
        Case("a", "(a) seed 2x2 SGD, manual gradient", SessionSpec(
            optimizer="SGD", hparams={"lr": 0.1, "momentum": 0.9}, set_to_none=False,
            tensors=[TensorSpec("weight", (2, 2), init="values", values=[[-0.0947, 1.4217], [-1.3, -1.0501]],
                                grad=ManualGrad())]), 40_000),
        Case("b", "(b) Rosenbrock, Adam", SessionSpec(
            optimizer="Adam", hparams={"lr": 0.01}, zero_grad_each_step=True,
            tensors=[TensorSpec("xy", (2,), init="values", values=[-1.5, 2.0])],
            gradient=GradientSpec("objective", objective="rosenbrock")), 15_000),
        # rosenbrock, not the quadratic: Adam drives a quadratic's parameters into denormal
        # floats, whose arithmetic is many times slower, so steps/s would depend on how far
        # the run got
        Case("c", "(c) 64-128-10 MLP parameters, Adam, backward", SessionSpec(
            optimizer="Adam", zero_grad_each_step=True, seed=0,
            tensors=[TensorSpec(n, s, init="normal", std=0.1) for n, s in mlp],
            gradient=GradientSpec("objective", objective="rosenbrock")), 8_000),
        Case("d", "(d) 4096x4096 Adam, manual gradient", SessionSpec(
            optimizer="Adam", tensors=[TensorSpec("w", (4096, 4096), init="zeros", grad=ManualGrad())]), 100),
        Case("e", "(e) digits 64-64-10 MLP, Adam, batches of 32", SessionSpec(
            optimizer="Adam", zero_grad_each_step=True,
            gradient=GradientSpec("task", task=TaskSpec(kind="digits_mlp", batch_size=32,
                                                        eval_every=1_000_000, seed=0))), 4_000),
    )


CASES = _cases()


def case(key: str) -> Case:
    return next(c for c in CASES if c.key == key)


# ----- the bare loop -----

def bare_loop(spec: SessionSpec):
    """``(step, session)``: a plain torch step doing ``spec``'s work on the objects
    ``Session(spec)`` built (same initial values, optimizer, data order). The step calls
    torch only: none of the session's bookkeeping, probes or checks."""
    s = Session(spec)
    s.observer.detach()  # its hooks on the optimizer measure norms, checks, histograms: the runner's work
    opt, g = s.optimizer, spec.gradient
    zero, set_to_none = spec.zero_grad_each_step, spec.set_to_none
    if g.kind == "manual" and g.when == "once":
        def grad():
            pass  # the gradients set at build time stay (as in the seed)
    elif g.kind == "objective":
        fn = objectives.OBJECTIVES[g.objective].fn
        params = [s.params[n] for n in (g.tensors or [t.name for t in spec.tensors])]

        def grad():
            fn(params, g.condition).backward()
    elif g.kind == "task":
        task = s.task

        def grad():
            task.loss(task.next_batch()).backward()
    else:
        raise ValueError(f"no bare loop for gradient {g.kind}/{g.when}")
    if s.opt_class is torch.optim.LBFGS:
        raise ValueError("no bare loop for LBFGS")

    def step():
        if zero:
            opt.zero_grad(set_to_none=set_to_none)
        grad()
        opt.step()
    return step, s


def bare_threads(session: Session, process: bool) -> int:
    """The torch thread count the runner steps ``session`` with: the runner process's rule
    (``threads_for``), or, for the thread runner, this process's count."""
    return threads_for(session) if process else torch.get_num_threads()


@dataclass
class Run:
    rate: float  # steps/s (wall clock)
    cpu_rate: float  # steps per CPU second of the stepping thread
    threads: int  # torch threads it stepped with
    params: dict | None = None  # final parameters, when asked for
    snapshots_per_s: float = 0.0  # the runner's


def time_bare(spec: SessionSpec, n: int, process: bool) -> Run:
    """``n`` bare steps after one warm-up step, on the thread that would run the runner: with
    ``process``, a runner process's runner thread (a call, between steps: nothing else runs
    there meanwhile), so both sides run in the same kind of process, forked from the same
    fork server; else a worker thread of this process, as the thread runner's (torch work on
    one thread leaves its OpenMP team behind, which would slow the other)."""
    if process:
        r = ProcessRunner(None, max_hz=SNAPSHOT_HZ)
        try:
            return r.call(bare_here, spec, n, True).result(3600)
        finally:
            r.stop()
    out = []
    t = threading.Thread(target=lambda: out.append(bare_here(None, spec, n, False)))
    t.start()
    t.join()
    return out[0]


def bare_here(session, spec: SessionSpec, n: int, process: bool) -> Run:
    """The bare loop on this thread (``session``, the runner's own, is not used)."""
    step, s = bare_loop(spec)
    threads = bare_threads(s, process)
    torch.set_num_threads(threads)  # per thread, as the runner process sets it on its runner thread
    step()  # warm-up, as the runner's warm step
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(n):
        step()
    c1, t1 = time.thread_time(), time.perf_counter()
    return Run(n / (t1 - t0), n / (c1 - c0), torch.get_num_threads(), params_of(s))


# ----- the runner (module-level functions: they travel to the runner process by name) -----

def warm_step(session) -> None:
    session.step(1)


def runner_threads(session) -> int:
    return torch.get_num_threads()


def thread_cpu(session) -> float:
    """CPU seconds of the runner thread (calls run on it, between steps)."""
    return time.thread_time()


def params_of(session) -> dict:
    return {n: p.detach().clone() for n, p in session.params.items()}


def show_first(session) -> None:
    """Runner function: the window shows the first tensor (``core.edits.show_tensor``): frames
    while running carry its values and small tensors', statistics for the others."""
    edits.show_tensor(session, next(iter(session.params), ""))


def histograms_off(session) -> None:
    """Runner function: stop counting distributions (the histograms of measured steps)."""
    session.observer.histograms = False


def checkpoints_off(session) -> None:
    """Runner function (ablation): no timeline checkpoints (rewinding would replay from step 0)."""
    session.checkpoint_if_due = _nothing
    session.checkpoint = _nothing
    session._ckpt_every = 1 << 62


def measuring_off(session) -> None:
    """Runner function (ablation): no norms or histograms measured (the loss still is): neither
    the time budget's nor the floor's (its early points had a 50 ms allowance of their own)."""
    session.observer._budget.fraction = 1e-12
    session.observer._floor_due = _never


def none_of_them(session) -> None:
    """Runner function (ablation): neither checkpoints nor measuring (frames are the caller's)."""
    checkpoints_off(session)
    measuring_off(session)


def not_recording(session) -> None:
    """Runner function (ablation): none of the three, and the observer records nothing (not even
    the loss): what is left is the session's and the runner's own stepping."""
    none_of_them(session)
    session.observer.recording = False


def _never(now: float) -> bool:
    return False


def _nothing() -> None:
    return None


def time_runner(spec: SessionSpec, n: int, process: bool, want_params: bool = False, setup=None,
                max_hz: float = SNAPSHOT_HZ) -> Run:
    """The runner doing ``n`` steps with live snapshots, from ``step(n)`` to the snapshot that
    shows the last step. Built (and warmed up by one step) on its runner thread.

    It is read every POLL, as the window reads it. The thread runner's end is timed on its
    own thread (``on_publish``); the process runner's by reading it every FINE_POLL once the
    end is near (the rate so far says when), so the end is timed closely without a busy
    reader the rest of the run (on 2 cores it would take time from a two-thread runner)."""
    seen: list = []
    done = threading.Event()
    target = [None]

    def published(snap):  # thread runner: on the runner thread, at each publish
        seen.append(snap.seq)
        if target[0] is not None and snap.step >= target[0] and not snap.running and not done.is_set():
            target.append(time.perf_counter())
            done.set()

    if process:
        r = ProcessRunner(None, max_hz=max_hz)
        r.replace(edits.build, spec).result(120)
    else:
        r = Runner(lambda: Session(spec), max_hz=max_hz, on_publish=published)
    try:
        r.call(show_first).result(120)  # as the main window tells its runner (its tensor box's first)
        if setup is not None:
            r.call(setup).result(120)
        r.call(warm_step).result(120)
        threads = r.call(runner_threads).result(120)
        start = r.latest().step
        c0 = r.call(thread_cpu).result(120)
        seen.clear()
        target[0] = start + n
        t0 = time.perf_counter()
        r.step(n)
        if process:
            end, count = _read_until(r, start, n, t0)
        else:
            while not done.wait(POLL):
                r.latest()
            end, count = target[-1], len(seen)
        cpu = r.call(thread_cpu).result(120) - c0
        params = r.call(params_of).result(120) if want_params else None
    finally:
        r.stop()
    return Run(n / (end - t0), n / cpu, threads, params, count / (end - t0))


def _read_until(r, start: int, n: int, t0: float) -> tuple[float, int]:
    """Read ``r`` until it shows step ``start + n`` done: (when, snapshots seen)."""
    seqs = set()
    while True:
        snap = r.latest()
        now = time.perf_counter()
        seqs.add(snap.seq)
        if snap.step >= start + n and not snap.running:
            return now, len(seqs)
        done = snap.step - start
        left = (n - done) * (now - t0) / done if done > 0 else float("inf")  # seconds, at the rate so far
        time.sleep(FINE_POLL if left < 2 * POLL else POLL)


# ----- pairs -----

@dataclass
class Pairs:
    """Interleaved bare/runner pairs of one case."""
    bare: list[Run]
    runner: list[Run]
    same_result: bool | None = None  # the first pair's final parameters equal (torch.equal)

    @property
    def ratios(self) -> list[float]:
        """runner / bare steps/s (wall clock), one per pair."""
        return [r.rate / b.rate for r, b in zip(self.runner, self.bare)]

    @property
    def cpu_ratios(self) -> list[float]:
        """runner / bare steps per CPU second of the stepping thread: what the runner's own
        work costs, whatever the machine's load (waits, such as for the interpreter lock, are
        not in it)."""
        return [r.cpu_rate / b.cpu_rate for r, b in zip(self.runner, self.bare)]

    def threads(self) -> str:
        bare, runner = {b.threads for b in self.bare}, {r.threads for r in self.runner}
        if bare == runner and len(bare) == 1:
            return str(next(iter(bare)))
        return f"bare {sorted(bare)} / runner {sorted(runner)}!"


def ratio_summary(ratios: list[float]) -> str:
    """``median (min-max, IQR q1-q3)``."""
    med = statistics.median(ratios)
    if len(ratios) >= 4:
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        return f"{med:.3f} ({min(ratios):.3f}-{max(ratios):.3f}, IQR {q1:.3f}-{q3:.3f})"
    return f"{med:.3f} ({min(ratios):.3f}-{max(ratios):.3f})"


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def measure_pairs(c: Case, n: int, pairs: int, process: bool) -> Pairs:
    """``pairs`` bare/runner pairs of ``n`` steps each; even pairs run bare first, odd ones
    the runner first, so a drift in the machine's load hurts both sides alike."""
    out = Pairs([], [])
    for k in range(pairs):
        if k % 2 == 0:
            bare = time_bare(c.spec, n, process)
            run = time_runner(c.spec, n, process, want_params=k == 0)
        else:
            run = time_runner(c.spec, n, process)
            bare = time_bare(c.spec, n, process)
        if k == 0:
            out.same_result = same(bare.params, run.params)
        bare.params = run.params = None
        out.bare.append(bare)
        out.runner.append(run)
    return out


def measure_histogram_pairs(c: Case, n: int, pairs: int, process: bool) -> Pairs:
    """Interleaved pairs of the runner with distributions off (``bare``) and on (``runner``)."""
    out = Pairs([], [])
    for k in range(pairs):
        first_off = k % 2 == 0
        a = time_runner(c.spec, n, process, setup=histograms_off if first_off else None)
        b = time_runner(c.spec, n, process, setup=None if first_off else histograms_off)
        off, on = (a, b) if first_off else (b, a)
        out.bare.append(off)
        out.runner.append(on)
    return out
