"""GUI benchmark: the window live while the runner steps at full speed.

Run: python benchmarks/gui.py [--seconds 5] [--pairs 5] [--quick]   (offscreen by default;
under Xvfb set QT_QPA_PLATFORM=xcb). For (b) Rosenbrock/Adam and (c) the MLP-sized Adam
case of benchmarks/engine.py, each of ``--pairs`` pairs runs the window live for
``--seconds`` (the runner in its own process, as the app runs it), then a bare loop for
the same number of steps from the same start, in a runner process of its own with the
torch thread count the live one used (harness.py). It prints medians over the pairs:
the GUI thread's stall (p50/p99 ms, measured by a 5 ms QTimer probe: how late each tick
fires; the worst pair's p99 beside it), frames drawn per second, steps/s of both sides,
and the ratio runner/bare with its spread (min-max, IQR); then the GUI-thread time of
one heatmap update for a 4096x4096 tensor (preview made by the runner, drawn by TensorView).
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

import harness  # noqa: E402
from stall_probe import StallProbe  # noqa: E402
from core.observe import array_view  # noqa: E402
from core.session import Session  # noqa: E402
from widgets import pg_setup  # noqa: E402



@dataclass
class LiveRun:
    stall_p50: float  # ms
    stall_p99: float
    fps: float
    runner: float  # steps/s
    bare: float
    threads: int


def live_case(app, spec, seconds: float, settings_dir: Path):
    from app.main_window import MainWindow
    settings = QSettings(str(settings_dir / "bench.ini"), QSettings.Format.IniFormat)
    win = MainWindow(Session(spec), settings)
    win.resize(1280, 800)
    win.show()
    frames = []
    win.bridge.snapshotChanged.connect(lambda s: frames.append(time.perf_counter()))
    probe = StallProbe()
    # warm-up: one short Step N so the state views exist (their first build is not a stall
    # of the steady run being measured), then the live run
    win.step(5)
    while win.bridge.latest().step < 5 or win.bridge.latest().running:
        app.processEvents()
    for _ in range(20):
        app.processEvents()
    probe.start()
    step0 = win.bridge.latest().step
    t0 = time.perf_counter()
    win.run()
    loop = QEventLoop()  # Qt's own event loop, as app.exec() runs it (no Python polling)
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    snap = win.bridge.latest()
    elapsed = time.perf_counter() - t0
    probe.stop()
    win.pause()
    steps = snap.step - step0
    while win.bridge.latest().running:
        app.processEvents()
    win.dirty = False
    win.close()
    app.processEvents()
    runner_rate = steps / elapsed
    # the same steps (same trajectory), in a runner process of its own like the live runner's;
    # not in this process, whose main thread has done torch work (its OpenMP team would slow it)
    bare = harness.time_bare(spec, max(200, steps), process=True)
    bare_rate, threads = bare.rate, bare.threads
    fps = len([f for f in frames if f >= t0]) / elapsed
    lat = np.array(probe.lateness) if probe.lateness else np.zeros(1)
    return LiveRun(float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), fps, runner_rate, bare_rate, threads)



def heatmap_update(app) -> float:
    from widgets.tensor_view import TensorView
    view = TensorView()
    view.resize(420, 380)
    view.show()
    t = torch.randn(4096, 4096)
    times = []
    for k in range(12):
        t.mul_(1.01)
        av = array_view(t, exact_stats=False)  # what the runner publishes while running
        app.processEvents()
        t0 = time.perf_counter()
        view.setView(av, "weight")
        view.repaint()  # include drawing the frame
        times.append(time.perf_counter() - t0)
    view.close()
    return float(np.median(times[2:]) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=None, help="live run per pair (default 5)")
    ap.add_argument("--pairs", "--repeats", type=int, default=None, help="live/bare pairs per case (default 5)")
    ap.add_argument("--quick", action="store_true", help="3 pairs of 1.5 s (a smoke run, noisy)")
    args = ap.parse_args()
    seconds = args.seconds or (1.5 if args.quick else 5.0)
    pairs = args.pairs or (3 if args.quick else 5)
    pg_setup.configure()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    for module in ("app.main_window", "app.compare_window"):  # imported before freezing, as the app has by then
        importlib.import_module(module)
    from widgets import gui_gc
    gui_gc.as_the_app(app)  # garbage collection as the app does it
    import tempfile
    tmp = Path(tempfile.mkdtemp())
    print(f"platform {app.platformName()}, torch {torch.__version__}; {pairs} pairs of a {seconds:g} s live run "
          f"and a bare loop of as many steps; medians; ratio = runner/bare, median (min-max, IQR)")
    print(f"{'case':28s} {'thr':>3s} {'stall p50':>9s} {'p99 (worst)':>15s} {'frames/s':>8s} "
          f"{'runner/s':>9s} {'bare/s':>9s} ratio (spread)")
    for key in ("b", "c"):
        c = harness.case(key)
        runs = [live_case(app, c.spec, seconds, tmp) for _ in range(pairs)]
        med = statistics.median
        threads = sorted({r.threads for r in runs})
        print(f"{c.label[:28]:28s} {'/'.join(map(str, threads)):>3s} {med(r.stall_p50 for r in runs):7.1f}ms "
              f"{med(r.stall_p99 for r in runs):6.1f} ({max(r.stall_p99 for r in runs):5.1f})ms "
              f"{med(r.fps for r in runs):8.1f} {med(r.runner for r in runs):9.0f} {med(r.bare for r in runs):9.0f} "
              f"{harness.ratio_summary([r.runner / r.bare for r in runs])}", flush=True)
    print(f"heatmap update, 4096x4096 tensor (GUI thread): {heatmap_update(app):.1f} ms")


if __name__ == "__main__":
    main()
