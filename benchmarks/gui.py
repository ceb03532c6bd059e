"""GUI benchmark: the window live while the runner steps at full speed.

Run: python benchmarks/gui.py [--seconds 5]   (offscreen by default; under Xvfb set
QT_QPA_PLATFORM=xcb). For (b) Rosenbrock/Adam and (c) the MLP-sized Adam case of
benchmarks/engine.py it prints: the GUI thread's stall (p50/p99 ms, measured by a 5 ms
QTimer probe: how late each tick fires), frames drawn per second, and the runner's
step rate relative to a bare loop on the same work; then the GUI-thread time of one
heatmap update for a 4096x4096 tensor (preview made by the runner, drawn by TensorView).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

import engine  # noqa: E402
from core.observe import array_view  # noqa: E402
from core.session import Session  # noqa: E402
from widgets import pg_setup  # noqa: E402

PROBE_MS = 5


def fresh_bare_rate(case_name: str, n: int) -> float:
    """The bare loop in a fresh interpreter: this one has done torch work on its main thread
    (building the window's session), which leaves an OpenMP team behind that slows parallel
    ops on every other thread."""
    code = (f"import sys; sys.path[:0] = {[str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]!r}\n"
            f"import engine\nname, spec, bare, _ = engine.{case_name}()\nprint(engine.time_bare(bare, {n}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def live_case(app, spec, case_name: str, seconds: float, settings_dir: Path):
    from app.main_window import MainWindow
    settings = QSettings(str(settings_dir / "bench.ini"), QSettings.Format.IniFormat)
    win = MainWindow(Session(spec), settings)
    win.resize(1280, 800)
    win.show()
    frames = []
    win.bridge.snapshotChanged.connect(lambda s: frames.append(time.perf_counter()))
    lateness = []
    clock = QElapsedTimer()
    last = [None]

    def tick():
        now = clock.nsecsElapsed() / 1e6
        if last[0] is not None:
            lateness.append(max(0.0, now - last[0] - PROBE_MS))
        last[0] = now
    probe = QTimer()
    probe.setInterval(PROBE_MS)
    probe.timeout.connect(tick)
    # warm-up: one short Step N so the state views exist (their first build is not a stall
    # of the steady run being measured), then the live run
    win.step(5)
    while win.bridge.latest().step < 5 or win.bridge.latest().running:
        app.processEvents()
    for _ in range(20):
        app.processEvents()
    clock.start()
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
    bare_rate = fresh_bare_rate(case_name, max(200, steps))  # the same steps: same trajectory
    fps = len([f for f in frames if f >= t0]) / elapsed
    lat = np.array(lateness) if lateness else np.zeros(1)
    return np.percentile(lat, 50), np.percentile(lat, 99), fps, runner_rate, bare_rate


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
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=3, help="runs per case; the median run is printed")
    args = ap.parse_args()
    pg_setup.configure()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    import tempfile
    tmp = Path(tempfile.mkdtemp())
    print(f"platform {app.platformName()}, torch {torch.__version__}, {args.seconds:.0f} s per run, "
          f"median of {args.repeats} runs (by ratio)")
    print(f"{'case':40s} {'stall p50':>9s} {'stall p99':>9s} {'frames/s':>8s} "
          f"{'runner/s':>9s} {'bare/s':>9s} {'ratio':>6s}")
    for case in (engine.case_rosenbrock, engine.case_mlp):
        name, spec, _bare, _ = case()
        runs = sorted((live_case(app, spec, case.__name__, args.seconds, tmp) for _ in range(args.repeats)),
                      key=lambda r: r[3] / r[4])
        p50, p99, fps, rr, br = runs[len(runs) // 2]
        print(f"{name:40s} {p50:7.1f}ms {p99:7.1f}ms {fps:8.1f} {rr:9.0f} {br:9.0f} {rr / br:6.3f}")
    print(f"heatmap update, 4096x4096 tensor (GUI thread): {heatmap_update(app):.1f} ms")


if __name__ == "__main__":
    main()
