"""Soak: a million steps in the runner process, as the app runs them; its memory stays flat.

Run: python benchmarks/soak.py [--steps 1000000] [--every 50000]

The runner process steps Adam on Rosenbrock with live snapshots (read at the window's
pace) and everything the timeline keeps (journal, bucketed curves, checkpoints within
their bound). Printed: the runner process's resident memory every ``--every`` steps,
and the growth from the first sample to the last (target: flat, a few MB at most).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.runner_process import ProcessRunner  # noqa: E402
from core.session import Session  # noqa: E402
from core.spec import GradientSpec, SessionSpec, TensorSpec  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--every", type=int, default=50_000)
    args = ap.parse_args()
    spec = SessionSpec(optimizer="Adam", hparams={"lr": 0.01}, zero_grad_each_step=True,
                       tensors=[TensorSpec("xy", (2,), init="values", values=[-1.5, 2.0])],
                       gradient=GradientSpec("objective", objective="rosenbrock"))
    r = ProcessRunner(Session(spec), max_hz=40)
    pid = r._proc.pid
    r.step(args.steps)
    t0 = time.perf_counter()
    samples = []
    mark = 0
    while True:
        time.sleep(0.025)  # the window reads the latest snapshot about this often
        snap = r.latest()
        if snap.step >= mark:
            samples.append((snap.step, rss_mb(pid), time.perf_counter() - t0))
            print(f"step {snap.step:>9,}  runner RSS {samples[-1][1]:7.1f} MB  {samples[-1][2]:7.1f} s", flush=True)
            mark += args.every
        if snap.step >= args.steps and not snap.running:
            break
    samples.append((snap.step, rss_mb(pid), time.perf_counter() - t0))
    r.stop()
    first = next((s for s in samples if s[0] >= args.every), samples[0])
    print(f"{snap.step:,} steps in {samples[-1][2]:.0f} s; runner RSS {first[1]:.1f} MB at step {first[0]:,} -> "
          f"{samples[-1][1]:.1f} MB at the end (growth {samples[-1][1] - first[1]:+.1f} MB); "
          f"curves: {snap.history.bucket} steps a point, {len(snap.history.step):,} points")


if __name__ == "__main__":
    main()
