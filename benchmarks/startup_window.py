"""Startup benchmark: seconds from starting ``python -m app`` to its first window on screen.

Run: python benchmarks/startup_window.py [--runs 5] [APP ARGS...]
Uses the display in $DISPLAY (xcb) when there is one, else the offscreen platform.
Each run starts a fresh ``python -m app`` with OPTIMLAB_STARTUP_PROBE=quit, which prints
``startup EVENT TIME`` (time.monotonic, the same clock as this process) when the first
window is exposed (``first-window``: a splash or the main window), when the main window is
exposed (``main-window``) and when the opened session is drawn (``ready``), then quits.
Prints each run and the median of each event. A fresh settings file per run (no restored
layout) and a throwaway HOME keep runs alike.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ("first-window", "main-window", "ready")


def one_run(app_args: list[str], env: dict) -> dict[str, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "app", *app_args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise SystemExit(f"the app failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    out = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "startup":
            out[parts[1]] = float(parts[2]) - t0
    missing = [e for e in EVENTS if e not in out]
    if missing:
        raise SystemExit(f"the app did not report {missing}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args, app_args = ap.parse_known_args()
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, OPTIMLAB_STARTUP_PROBE="quit", HOME=home, XDG_CONFIG_HOME=home)
        env.setdefault("QT_QPA_PLATFORM", "xcb" if os.environ.get("DISPLAY") else "offscreen")
        print(f"platform {env['QT_QPA_PLATFORM']}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
        runs = []
        for k in range(args.runs):
            r = one_run(app_args, env)
            runs.append(r)
            print(f"run {k + 1}: " + ", ".join(f"{e} {r[e]:.2f} s" for e in EVENTS), flush=True)
    print("median: " + ", ".join(f"{e} {statistics.median(r[e] for r in runs):.2f} s" for e in EVENTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
