"""Engine benchmark: the runner stepping continuously with live snapshots vs a bare torch loop.

Run: python benchmarks/engine.py [--process] [--only '(c)'] [--pairs 5] [--quick]
     python benchmarks/engine.py --ablate [--process] [--only '(e)'] [--pairs 3]

For each case, prints the torch thread count both sides used (the runner process's rule
with ``--process``, this process's count for the thread runner), the median steps/s of
both sides over ``--pairs`` interleaved bare/runner pairs, the median of the pairs' ratios
(runner / bare) with their spread (min-max and interquartile range), the same ratio in
steps per CPU second of the stepping thread (the runner's own cost, which the machine's
load hardly moves; waits are not in it), the snapshots the runner published per second,
and whether the first pair ended on identical parameters (the same work on both sides).
``--ablate`` shows where the gap goes instead: interleaved rounds of the bare loop, the runner
as shipped, and the runner without one thing each (frames at 1 a second instead of 40, no
timeline checkpoints, no measuring) and without all three; then without frames too (only the
last), and without the observer recording anything (not even the loss): what is left is the
session's and the runner's own stepping. Ratios against the bare loop (medians of the rounds). See harness.py for how the sides are built (with ``--process`` the bare loop, too, runs in
a runner process, on its runner thread).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402

from core.session import Session  # noqa: E402
from core.spec import GradientSpec, SessionSpec  # noqa: E402
from core.task_spec import TaskSpec  # noqa: E402
import harness  # noqa: E402
from harness import CASES, measure_histogram_pairs, measure_pairs, ratio_summary  # noqa: E402


def chosen(args) -> list:
    """(case, steps) of the cases asked for (``--only``), a tenth of the steps with ``--quick``."""
    return [(c, max(10, c.steps // 10) if args.quick else c.steps) for c in CASES
            if not args.only or c.label.startswith(args.only)]


def time_to_accuracy(target: float = 0.9, max_steps: int = 20_000):
    """Steps and seconds to reach ``target`` validation accuracy on digits, default hyperparameters."""
    rows = []
    for name, opt, hp in (("SGD", "SGD", {}), ("SGD+momentum 0.9", "SGD", {"momentum": 0.9}),
                          ("Adam", "Adam", {}), ("AdamW", "AdamW", {})):
        ts = TaskSpec(kind="digits_mlp", batch_size=32, eval_every=10, seed=0)
        s = Session(SessionSpec(optimizer=opt, hparams=hp, zero_grad_each_step=True,
                                gradient=GradientSpec("task", task=ts)))
        t0 = time.perf_counter()
        reached = None
        while s.step_count < max_steps:
            s.run(10)
            if s.last_eval.get("val_accuracy", 0.0) >= target:
                reached = s.step_count
                break
        rows.append((name, reached, time.perf_counter() - t0, s.last_eval.get("val_accuracy", 0.0)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a tenth of the steps, 3 pairs (a smoke run, noisy)")
    ap.add_argument("--only", help="run only the cases whose label starts with this, e.g. '(c)'")
    ap.add_argument("--pairs", "--repeats", type=int, default=None, help="bare/runner pairs per case (default 5)")
    ap.add_argument("--process", action="store_true",
                    help="measure the runner in its own process, as the app runs it")
    ap.add_argument("--no-accuracy", action="store_true", help="skip the time-to-accuracy table")
    ap.add_argument("--histograms", action="store_true",
                    help="instead: the runner with distributions counted vs not (ratio = on/off)")
    ap.add_argument("--ablate", action="store_true",
                    help="instead: the runner without frames, checkpoints, measuring, and none of them, vs bare")
    args = ap.parse_args()
    if args.histograms:
        return histograms(args)
    if args.ablate:
        return ablate(args)
    pairs = args.pairs or (3 if args.quick else 5)
    where = "runner process" if args.process else "runner thread"
    print(f"torch {torch.__version__}; {where}; median of {pairs} interleaved bare/runner pairs; "
          f"ratio = runner/bare, median (min-max, IQR); cpu = the same in steps per CPU second")
    print(f"{'case':46s} {'thr':>3s} {'bare/s':>9s} {'runner/s':>9s} {'ratio (spread)':36s} "
          f"{'cpu (spread)':36s} {'snaps/s':>7s} {'same':>4s}")
    med = statistics.median
    for c, n in chosen(args):
        p = measure_pairs(c, n, pairs, args.process)
        print(f"{c.label:46s} {p.threads():>3s} {med(b.rate for b in p.bare):9.1f} "
              f"{med(r.rate for r in p.runner):9.1f} {ratio_summary(p.ratios):36s} "
              f"{ratio_summary(p.cpu_ratios):36s} {med(r.snapshots_per_s for r in p.runner):7.1f} "
              f"{'yes' if p.same_result else 'NO':>4s}", flush=True)
    if args.no_accuracy or args.only:
        return
    print()
    print("time to 90% validation accuracy, digits MLP (default hyperparameters, batches of 32, eval every 10 steps)")
    print(f"{'optimizer':18s} {'steps':>7s} {'seconds':>8s} {'val acc':>8s}")
    for name, steps, secs, acc in time_to_accuracy(max_steps=2_000 if args.quick else 20_000):
        shown = str(steps) if steps is not None else "not reached"
        print(f"{name:18s} {shown:>7s} {secs:8.2f} {acc:8.3f}")


def histograms(args) -> None:
    """Distributions over time cost: the runner counting histograms at measured steps vs not."""
    pairs = args.pairs or (3 if args.quick else 5)
    print(f"torch {torch.__version__}; {'runner process' if args.process else 'runner thread'}; median of "
          f"{pairs} interleaved off/on pairs; ratio = with distributions / without, median (min-max, IQR)")
    print(f"{'case':46s} {'off/s':>9s} {'on/s':>9s} {'ratio (spread)':36s} {'cpu (spread)':36s}")
    med = statistics.median
    for c, n in chosen(args):
        p = measure_histogram_pairs(c, n, pairs, args.process)
        print(f"{c.label:46s} {med(b.rate for b in p.bare):9.1f} {med(r.rate for r in p.runner):9.1f} "
              f"{ratio_summary(p.ratios):36s} {ratio_summary(p.cpu_ratios):36s}", flush=True)


ABLATIONS = (("as shipped", None, harness.SNAPSHOT_HZ), ("frames 1/s", None, 1.0),
             ("no checkpoints", harness.checkpoints_off, harness.SNAPSHOT_HZ),
             ("no measuring", harness.measuring_off, harness.SNAPSHOT_HZ),
             ("none of the three", harness.none_of_them, 1.0),
             ("nor frames", harness.none_of_them, 0.01),
             ("nor recording", harness.not_recording, 0.01))


def ablate(args) -> None:
    """Where the runner's time goes: each of its per-run costs taken away in turn."""
    rounds = args.pairs or 3
    print(f"torch {torch.__version__}; {'runner process' if args.process else 'runner thread'}; medians of "
          f"{rounds} interleaved rounds; ratio = runner/bare")
    med = statistics.median
    for c, n in chosen(args):
        bare, got = [], {name: [] for name, _, _ in ABLATIONS}
        for _ in range(rounds):
            bare.append(harness.time_bare(c.spec, n, args.process).rate)
            for name, setup, hz in ABLATIONS:
                got[name].append(harness.time_runner(c.spec, n, args.process, setup=setup, max_hz=hz).rate)
        b = med(bare)
        print(f"{c.label}: bare {b:.1f} steps/s; " + "; ".join(
            f"{name} {med(v) / b:.3f} ({min(v) / b:.3f}-{max(v) / b:.3f})" for name, v in got.items()), flush=True)


if __name__ == "__main__":
    main()
