"""Comparison benchmark: 4 optimizers in lockstep on the digits MLP vs 4 bare loops run one
after another (issue 12's target: at least 0.9x).

Run: python benchmarks/compare.py [--steps 1500] [--pairs 5] [--process] [--quick]

One side is a ``core.compare.Comparison`` of four configurations (SGD with momentum, Adam,
AdamW with a cosine schedule, RMSprop) stepped by the runner with live frames, as the app's
compare window runs it: each run's observer, the distance/cosine series between runs, a frame
about 40 times a second, carrying the values of one tensor (as when the window's Tensors tab
shows it). The other side is the same four configurations as bare torch loops
(``harness.bare_loop``: tensors, optimizer and data built by ``Session(spec)`` from the same
spec, then only ``zero_grad``/``backward``/``step``), run one after another on one worker
thread with the same torch thread count. The ratio is (the four bare loops' total seconds) /
(the comparison's seconds), so 1.0 means lockstep costs nothing.

With ``--process`` the comparison runs as the app runs it: each run in a process of its own
(``core.compare_pool``), stepping side by side on the machine's cores, while the bare loops
run one after another on one thread (what a user would otherwise do: one script after
another). ``--sequential`` keeps the runs in the comparison's process (as before the twelfth
session), one after another like the bare loops.

Printed: the torch thread count of both sides, where the runs step, the median seconds of
each side over ``--pairs`` interleaved pairs (alternating which side goes first), the median
ratio with its spread (min-max, IQR), the same ratio in CPU seconds (the bare loops' thread
against the comparison's stepping thread plus the runs' processes: below 1 is the price of
the frames, measuring and processes), frames per second, and whether every run of an
(untimed) comparison ended torch.equal to its bare loop.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402

from core import compare as compare_mod, compare_edits  # noqa: E402
from core.compare import Comparison, RunSpec, config_spec  # noqa: E402
from core.runner import Runner  # noqa: E402
from core.runner_process import ProcessRunner, threads_for  # noqa: E402
from core.spec import SchedulerSpec  # noqa: E402
from harness import POLL, SNAPSHOT_HZ, bare_loop, case, ratio_summary, runner_threads  # noqa: E402

CONFIGS = (("SGD", {"lr": 0.05, "momentum": 0.9}, None),
           ("Adam", {}, None),
           ("AdamW", {"lr": 0.003}, SchedulerSpec("CosineAnnealingLR", {"T_max": 1000}, "step")),
           ("RMSprop", {"lr": 0.001}, None))


def run_specs():
    """The four configurations on the engine benchmark's digits case (64-64-10 MLP, batches of 32)."""
    base = case("e").spec
    return [RunSpec("", config_spec(base, name, hp, sched)) for name, hp, sched in CONFIGS]


@dataclass
class Side:
    seconds: float
    cpu: float  # CPU seconds of the stepping thread (and of the runs' processes)
    threads: int
    frames_per_s: float = 0.0
    processes: int = 0  # the runs' processes (0: they step in the comparison's process)


def comparison_cpu(c) -> float:
    """CPU seconds of the stepping thread and of the runs' processes."""
    own = time.thread_time()
    if getattr(c, "in_processes", False):
        own += sum(c.in_runs({r.id: (process_cpu, ()) for r in c.runs}).values())
    return own


def process_cpu(run) -> float:
    return time.process_time()


def processes(c) -> int:
    return len(c.runs) if getattr(c, "in_processes", False) else 0


def bare_step(spec):
    """``harness.bare_loop``'s step plus the scheduler's ``step()`` after the optimizer's (the
    configurations here schedule per step and evaluate never, so that is the whole order)."""
    step, s = bare_loop(spec)
    sched = s.scheduler
    if sched is None:
        return step, s

    def with_scheduler():
        step()
        sched.step()
    return with_scheduler, s


def time_bare(runs, n: int, threads: int) -> Side:
    """The four bare loops one after another (each warmed up by one step), on a worker thread."""
    out = []

    def work():
        torch.set_num_threads(threads)
        total = cpu = 0.0
        for rs in runs:
            step, _ = bare_step(rs.spec)
            step()
            t0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(n):
                step()
            cpu += time.thread_time() - c0
            total += time.perf_counter() - t0
        out.append(Side(total, cpu, torch.get_num_threads()))
    t = threading.Thread(target=work)
    t.start()
    t.join()
    return out[0]


def time_comparison(runs, n: int, process: bool, threads: int) -> Side:
    """The comparison doing ``n`` lockstep steps in the runner with live frames, from ``step(n)``
    to the frame that shows the last step (built and warmed up by one step first)."""
    if process:
        r = ProcessRunner(None, max_hz=SNAPSHOT_HZ)
        r.replace(compare_edits.build, runs).result(300)
    else:
        r = Runner(lambda: Comparison(runs), max_hz=SNAPSHOT_HZ)
    try:
        if not process:
            r.call(set_threads, threads).result(60)
        # as the window asks while its Tensors tab shows the first tensor (the heaviest frames it
        # asks for: its other tabs ask for no tensor's values)
        first = r.call(first_tensor).result(60)
        r.call(compare_edits.set_view, [first]).result(60)
        _wait_step(r, 1)
        used = r.call(runner_threads).result(60)
        procs = r.call(processes).result(60)
        start = r.latest().step
        c0 = r.call(comparison_cpu).result(60)
        seqs = set()
        t0 = time.perf_counter()
        _wait_step(r, n, seqs)
        end = time.perf_counter()
        cpu = r.call(comparison_cpu).result(60) - c0
        assert r.latest().step == start + n
    finally:
        r.stop()
    return Side(end - t0, cpu, used, len(seqs) / (end - t0), procs)


def first_tensor(comparison) -> str:
    return next(iter(comparison.runs[0].session.params))


def set_threads(session, n: int) -> None:
    torch.set_num_threads(n)


def _wait_step(r, n: int, seqs=None) -> None:
    goal = r.latest().step + n
    r.step(n)
    while True:
        f = r.latest()
        if seqs is not None:
            seqs.add(f.seq)
        if f.step >= goal and not f.running:
            return
        if f.error is not None or f.paused_reason:
            raise RuntimeError(f"the comparison stopped: {f.error or f.paused_reason}")
        time.sleep(POLL if f.step < goal - 50 else 0.001)


def same_as_bare(runs, n: int, process: bool) -> bool:
    """Every run of a comparison (``n`` lockstep steps, untimed; in a runner process with
    ``process``, its runs in processes of their own as there) torch.equal to its bare loop."""
    if process:
        r = ProcessRunner(None, max_hz=SNAPSHOT_HZ)
        try:
            r.replace(compare_edits.build, runs).result(300)
            _wait_step(r, n)
            got = r.call(params_of_runs).result(300)
        finally:
            r.stop()
    else:
        c = Comparison(runs)
        c.run(n)
        got = [params_of(run) for run in c.runs]
    for rs, params in zip(runs, got):
        step, s = bare_step(rs.spec)
        for _ in range(n):
            step()
        if not all(torch.equal(s.params[k], params[k]) for k in s.params):
            return False
    return True


def params_of(run) -> dict:
    return {k: v.detach().clone() for k, v in run.session.params.items()}


def params_of_runs(c) -> list:
    got = c.in_runs({r.id: (params_of, ()) for r in c.runs})
    return [got[r.id] for r in c.runs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500, help="lockstep steps (each of the 4 bare loops does as many)")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--process", action="store_true", help="the comparison in a runner process, as the app runs it")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads of both sides (default: this process's count; the runner process's rule "
                         "with --process)")
    ap.add_argument("--quick", action="store_true", help="300 steps, 3 pairs (a smoke run, noisy)")
    ap.add_argument("--sequential", action="store_true",
                    help="the runs one after another in the comparison's process (no processes of their own)")
    args = ap.parse_args()
    if args.sequential:
        os.environ["OPTIMLAB_COMPARE_PROCESSES"] = "0"  # read by the runner process at its start
        compare_mod.PROCESSES = "0"
    n, pairs = (300, 3) if args.quick else (args.steps, args.pairs)
    runs = run_specs()
    c = Comparison(runs)
    c.processes = args.process and not args.sequential  # as in the runner process (threads_for reads it)
    threads = args.threads or (threads_for(c) if args.process else torch.get_num_threads())
    if args.process and args.threads:
        os.environ["OPTIMLAB_THREADS"] = str(args.threads)  # the runner process's rule reads it
    del c
    print(f"torch {torch.__version__}; {'runner process' if args.process else 'runner thread'}; "
          f"{len(runs)} configurations x {n} steps on digits 64-64-10 (batches of 32): "
          + ", ".join(f"{o}{' ' + s.name if s else ''}" for o, _, s in CONFIGS))
    bare, comp = [], []
    for k in range(pairs):
        if k % 2 == 0:
            bare.append(time_bare(runs, n, threads))
            comp.append(time_comparison(runs, n, args.process, threads))
        else:
            comp.append(time_comparison(runs, n, args.process, threads))
            bare.append(time_bare(runs, n, threads))
        print(f"  pair {k + 1}: bare {bare[-1].seconds:.2f} s, lockstep {comp[-1].seconds:.2f} s, "
              f"ratio {bare[-1].seconds / comp[-1].seconds:.3f}", flush=True)
    med = statistics.median
    ratios = [b.seconds / c.seconds for b, c in zip(bare, comp)]
    cpu = [b.cpu / c.cpu for b, c in zip(bare, comp)]
    thr = {s.threads for s in bare + comp}
    print(f"threads {'/'.join(map(str, sorted(thr)))}{'' if len(thr) == 1 else ' (DIFFER!)'}; "
          f"bare {med(b.seconds for b in bare):.2f} s ({4 * n / med(b.seconds for b in bare):.0f} steps/s); "
          f"lockstep {med(c.seconds for c in comp):.2f} s ({4 * n / med(c.seconds for c in comp):.0f} run-steps/s)")
    print(f"ratio bare/lockstep (target >= 0.9): {ratio_summary(ratios)}")
    procs = {c.processes for c in comp}
    print(f"runs stepped in {'/'.join(map(str, sorted(procs)))} processes of their own" if procs != {0}
          else "runs stepped one after another in the comparison's process")
    print(f"cpu ratio: {ratio_summary(cpu)}; frames/s {med(c.frames_per_s for c in comp):.1f}")
    print(f"every run torch.equal to its bare loop ({min(n, 300)} steps): {'yes' if same_as_bare(runs, min(n, 300), args.process) else 'NO'}")


if __name__ == "__main__":
    main()
