"""Startup benchmark: how soon a runner process is usable after it is asked for.

Run: python benchmarks/startup.py [--quick] [--interpreters 5] [--later 5]

Times, in fresh interpreters (the fork server lives as long as the process that started
it, so a cold start needs a new one), from ``ProcessRunner(...)`` to the first answered
call that built a session and stepped it once:

- cold: the interpreter's first runner (it also starts the fork server, which imports
  torch and everything ``core.runner_process.context()`` preloads);
- later, built there: ``ProcessRunner(None)``, then ``replace(edits.build, spec)`` and one
  step (how the window starts over after a crash);
- later, sent whole: ``ProcessRunner(session)``, then one step (how the window starts).

The session is (b) of benchmarks/engine.py (Rosenbrock, Adam): the first Adam step is
what used to import torch._dynamo in every child. Prints the median and the spread.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]

TARGET = 0.3  # seconds: issue 10, "a runner process is usable within 0.3 s of being asked"


def one_interpreter(later: int) -> dict:
    """In this (fresh) interpreter: the cold first start, then ``later`` of each later kind."""
    import torch  # the window has torch imported before it asks for a runner
    from core import edits
    from core.runner_process import ProcessRunner
    from core.session import Session
    from core.spec import Step
    from harness import SNAPSHOT_HZ, case

    spec = case("b").spec
    assert torch.get_num_threads() >= 1

    def built_there() -> float:
        t0 = time.perf_counter()
        r = ProcessRunner(None, max_hz=SNAPSHOT_HZ)
        try:
            built = r.replace(edits.build, spec)  # both sent at once, as the window sends them
            r.call(edits.apply, Step(1)).result(120)
            elapsed = time.perf_counter() - t0
            built.result(0)  # answered before the step: had the build failed, the blank one stepped
            return elapsed
        finally:
            r.stop()

    def sent_whole() -> float:
        session = Session(spec)  # the window's session exists before its runner
        t0 = time.perf_counter()
        r = ProcessRunner(session, max_hz=SNAPSHOT_HZ)
        try:
            r.call(edits.apply, Step(1)).result(120)
            return time.perf_counter() - t0
        finally:
            r.stop()

    cold = built_there()
    return {"cold": cold,
            "built_there": [built_there() for _ in range(later)],
            "sent_whole": [sent_whole() for _ in range(later)]}


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.3f} s  ({min(xs):.3f}-{max(xs):.3f}, n={len(xs)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2 interpreters, 2 later starts each (a smoke run)")
    ap.add_argument("--interpreters", type=int, default=5, help="fresh interpreters, one cold start each")
    ap.add_argument("--later", type=int, default=5, help="later starts of each kind per interpreter")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_interpreter(args.later)))
        return
    if args.quick:
        args.interpreters, args.later = 2, 2
    runs = []
    for _ in range(args.interpreters):
        out = subprocess.run([sys.executable, __file__, "--child", "--later", str(args.later)],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    import torch
    print(f"torch {torch.__version__}; {args.interpreters} fresh interpreters, {args.later} later starts "
          f"of each kind in each; median (min-max); target {TARGET} s for later starts")
    print(f"{'cold: first runner (starts the fork server)':48s} {spread([r['cold'] for r in runs])}")
    print(f"{'later: built there (blank, replace, step)':48s} {spread([t for r in runs for t in r['built_there']])}")
    print(f"{'later: session sent whole, step':48s} {spread([t for r in runs for t in r['sent_whole']])}")


if __name__ == "__main__":
    main()
