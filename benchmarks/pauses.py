"""What a pause in stepping costs the steps after it, in a bare torch loop.

Run: python benchmarks/pauses.py [--only e] [--rounds 80]

The runner stops stepping to publish a snapshot (about 1-2.5 ms on the small cases) or to
measure norms; its budgets charge that time. This measures what they do not see: the steps
right after a pause run slower, as the caches and predictors have cooled meanwhile. For each
case of harness.py it steps the bare loop (no optimlab code in the step) and, between groups
of 4 steps, pauses by spinning on the clock (busy) or sleeping for 0.1-10 ms; it prints the
median time of the 1st..4th step after each kind of pause. The excess of the first steps
over an unpaused step, against the pause's length, is the hidden part of a pause's cost.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402

from core.runner_process import threads_for  # noqa: E402
from harness import CASES, bare_loop  # noqa: E402


def busy(seconds: float):
    def pause():
        t = time.perf_counter()
        while time.perf_counter() - t < seconds:
            pass
    return pause


PAUSES = {"none": lambda: None, "busy 0.1 ms": busy(1e-4), "busy 0.5 ms": busy(5e-4),
          "busy 2.4 ms": busy(2.4e-3), "busy 10 ms": busy(1e-2), "sleep 2.4 ms": lambda: time.sleep(2.4e-3)}
LENGTH = {"none": 0.0, "busy 0.1 ms": 1e-4, "busy 0.5 ms": 5e-4, "busy 2.4 ms": 2.4e-3, "busy 10 ms": 1e-2,
          "sleep 2.4 ms": 2.4e-3}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="abce", help="case keys (default abce; (d) has 0.1-s steps)")
    ap.add_argument("--rounds", type=int, default=80)
    args = ap.parse_args()
    print(f"torch {torch.__version__}; median µs of the 1st..4th bare step after each pause, "
          f"{args.rounds} rounds; excess = sum over the 4 steps above the unpaused step, in % of the pause")
    for c in CASES:
        if c.key not in args.only:
            continue
        step, s = bare_loop(c.spec)
        torch.set_num_threads(threads_for(s))
        for _ in range(20):
            step()
        times = {k: [[] for _ in range(4)] for k in PAUSES}
        for _ in range(args.rounds):
            for k, pause in PAUSES.items():  # interleaved: the machine's drift hits every kind alike
                pause()
                for j in range(4):
                    t = time.perf_counter()
                    step()
                    times[k][j].append(time.perf_counter() - t)
        base = statistics.median(statistics.median(x) for x in times["none"])
        print(c.label)
        for k in PAUSES:
            med = [statistics.median(x) for x in times[k]]
            excess = sum(m - base for m in med)
            share = f"{100 * excess / LENGTH[k]:6.0f}%" if LENGTH[k] else "      "
            print(f"  {k:13s} " + " ".join(f"{m * 1e6:8.0f}" for m in med) + f"   excess {share}")


if __name__ == "__main__":
    main()
