"""Timeline benchmark: how long rewinding takes, and how much memory the timeline holds.

Run: python benchmarks/timeline.py [--steps 10000] [--rewinds 21] [--long 100000]

1. A digits MLP session (64-64-10, Adam, batches of 32, the app's default task) steps
   ``--steps`` times as the app does (checkpoints taken by the session's own rule),
   then goes to ``--rewinds`` random steps; each ``goto`` is timed alone (restore the
   nearest checkpoint, replay the journal). Printed: median, min, max (target: median
   under 300 ms at 10,000 steps), and the checkpoints kept and their bytes.
2. Memory at ``--steps`` and ``--long`` steps of the same session kind: the checkpoints'
   bytes (bounded by the budget, 512 MB by default), the curves' arrays and the journal,
   and the process's resident memory before and after.
"""
from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.runner_process import threads_for  # noqa: E402
from core.session import Session  # noqa: E402
from core.spec import GradientSpec, SessionSpec  # noqa: E402
from core.task_spec import TaskSpec  # noqa: E402


def digits_spec() -> SessionSpec:
    return SessionSpec(optimizer="Adam", zero_grad_each_step=True,
                       gradient=GradientSpec("task", task=TaskSpec("digits_mlp", batch_size=32, eval_every=100)))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timeline_bytes(s: Session) -> dict:
    tl = s.timeline
    series = sum(v.nbytes for b in tl.branches.values() for c in b.series.cols.values() for v in c.values())
    return {"checkpoints": tl.checkpoints.used, "count": tl.checkpoints.count(), "series": series,
            "journal entries": sum(len(b.journal.entries) for b in tl.branches.values())}


def run(steps: int) -> tuple[Session, float]:
    s = Session(digits_spec())
    t0 = time.perf_counter()
    s.run(steps)
    return s, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--rewinds", type=int, default=21)
    ap.add_argument("--long", type=int, default=100_000, help="steps for the second memory figure (0: skip)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: the app's rule for this problem)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or threads_for(Session(digits_spec())))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rss0 = rss_mb()
    s, dt = run(args.steps)
    info = timeline_bytes(s)
    print(f"digits MLP: {args.steps:,} steps in {dt:.1f} s ({args.steps / dt:,.0f} steps/s); "
          f"{info['count']} checkpoints, {info['checkpoints'] / 2**20:.1f} MB; curves {info['series'] / 2**20:.2f} MB; "
          f"{info['journal entries']} journal entries; max RSS {rss0:.0f} -> {rss_mb():.0f} MB")
    rng = random.Random(0)
    times = []
    for k in [rng.randrange(1, args.steps) for _ in range(args.rewinds)]:
        t0 = time.perf_counter()
        s.goto(k)
        times.append(time.perf_counter() - t0)
        assert s.step_count == k
    times_ms = sorted(t * 1e3 for t in times)
    print(f"rewind to a random step: median {statistics.median(times_ms):.1f} ms "
          f"(min {times_ms[0]:.1f}, max {times_ms[-1]:.1f}, n={len(times_ms)}); target < 300 ms")
    if args.long:
        del s
        s, dt = run(args.long)
        info = timeline_bytes(s)
        print(f"digits MLP: {args.long:,} steps in {dt:.1f} s; {info['count']} checkpoints, "
              f"{info['checkpoints'] / 2**20:.1f} MB (budget {s.timeline.checkpoints.budget / 2**20:.0f} MB); "
              f"curves {info['series'] / 2**20:.2f} MB; {info['journal entries']} journal entries; "
              f"max RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
