"""Compare window benchmark: how long the GUI thread stalls while a comparison runs.

Run: python benchmarks/compare_window.py [--seconds 8] [--runs 3] [--tabs curves,tensors] [--quick]
(offscreen by default; under Xvfb set QT_QPA_PLATFORM=xcb).

For each tab of the Compare window (Curves, Landscape, Tensors, Between runs, Table), ``--runs``
times: a fresh window (1280x800) with the four configurations of benchmarks/compare.py (SGD
with momentum, Adam, AdamW with a cosine schedule, RMSprop on the digits MLP) in a runner
process, as the app runs it, is run from step 0 for ``--seconds`` while a 5 ms QTimer
probes the GUI thread (the stall is how late each tick fires: the window's drawing, which
the runner process does not share). Prints, per tab, the median over the runs of the p50 and
p99 stall, the worst run's p99 and max, the frames drawn a second and the lockstep steps done.
The first 8 s of a run are where the axes grow fastest (the step axis from 0).
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import numpy as np  # noqa: E402
from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from stall_probe import PROBE_MS, StallProbe  # noqa: E402

TABS = ("curves", "landscape", "tensors", "between runs", "table")


def one_run(app, tab: str, seconds: float) -> tuple[float, float, float, float, int]:
    """(p50, p99, max stall in ms, frames drawn a second, lockstep steps) of one live run."""
    from app.compare_window import CompareWindow
    from compare import run_specs
    win = CompareWindow(run_specs(), process=True)
    tabs = {win.view.tabText(i).lower(): i for i in range(win.view.count())}
    win.view.setCurrentIndex(tabs[tab])
    win.resize(1280, 800)
    win.show()
    end = time.monotonic() + 120
    while time.monotonic() < end and win.frame is None:  # the runner process built the comparison
        app.processEvents()
        time.sleep(0.02)
    seqs: set[int] = set()
    probe = StallProbe(on_tick=lambda: win.frame is not None and seqs.add(win.frame.seq))
    probe.start()
    t0 = time.perf_counter()
    win.toggle_run()
    loop = QEventLoop()  # Qt's own event loop, as app.exec() runs it
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    elapsed = time.perf_counter() - t0
    probe.stop()
    steps = win.frame.step
    win.toggle_run()
    end = time.monotonic() + 30
    while time.monotonic() < end and win.frame.running:
        app.processEvents()
        time.sleep(0.01)
    win.dirty = False
    win.close()
    app.processEvents()
    lat = np.array(probe.lateness[10:]) if len(probe.lateness) > 10 else np.zeros(1)
    return (float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), float(lat.max()),
            len(seqs) / elapsed, steps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0, help="live run per window (default 8)")
    ap.add_argument("--runs", type=int, default=3, help="fresh windows per tab (default 3)")
    ap.add_argument("--tabs", default=",".join(TABS), help="comma-separated tabs (default: all)")
    ap.add_argument("--quick", action="store_true", help="one run of 3 s a tab (a smoke run)")
    args = ap.parse_args()
    seconds, runs = (3.0, 1) if args.quick else (args.seconds, args.runs)
    app = QApplication.instance() or QApplication(sys.argv)
    from widgets import pg_setup
    pg_setup.configure()
    for module in ("app.main_window", "app.compare_window"):  # imported before freezing, as the app has by then
        importlib.import_module(module)
    from widgets import gui_gc
    gui_gc.as_the_app(app)  # garbage collection as the app does it
    med = statistics.median
    print(f"platform {app.platformName()}; 4 runs of the digits MLP from step 0, {seconds:g} s live, "
          f"{runs} fresh window(s) a tab; stall = lateness of a {PROBE_MS} ms timer, medians over the windows")
    print(f"{'tab':14s} {'p50':>6s} {'p99':>6s} {'worst p99':>9s} {'worst max':>9s} {'frames/s':>8s} {'steps':>6s}")
    for tab in (t.strip().lower() for t in args.tabs.split(",")):
        rows = [one_run(app, tab, seconds) for _ in range(runs)]
        print(f"{tab:14s} {med(r[0] for r in rows):5.1f}ms {med(r[1] for r in rows):5.1f}ms "
              f"{max(r[1] for r in rows):7.1f}ms {max(r[2] for r in rows):7.1f}ms "
              f"{med(r[3] for r in rows):8.1f} {med(r[4] for r in rows):6.0f}", flush=True)


if __name__ == "__main__":
    main()
