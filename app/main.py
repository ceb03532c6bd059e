"""Start the desktop app, or render it offscreen to a PNG.

    python -m app [SESSION_OR_FILE]
    python -m app --screenshot out.png [--example seed_walkthrough] [--steps N] [--tensor NAME] [--raise DOCK]
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def _session(args):
    from core import session_file
    from core.cli import example_paths, resolve
    from core.spec import loads
    if args.file:
        return session_file.load_session(resolve(args.file))
    name = args.example or "seed_walkthrough"
    spec, journal = loads(example_paths()[name].read_text())
    return __import__("core.session", fromlist=["Session"]).Session(spec, journal)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="optimlab", description="optimlab: watch PyTorch optimizers work")
    ap.add_argument("file", nargs="?", help="a session (.optimlab/.json) or an example's name to open")
    ap.add_argument("--example", help="open this shipped example (default: seed_walkthrough)")
    ap.add_argument("--screenshot", metavar="PNG", help="render the window offscreen to PNG and quit")
    ap.add_argument("--steps", type=int, default=0, help="with --screenshot: steps to run first")
    ap.add_argument("--tensor", help="with --screenshot: the tensor to show")
    ap.add_argument("--size", default="1280x800", help="with --screenshot: window size")
    ap.add_argument("--raise", dest="raise_docks", action="append", default=[], metavar="DOCK",
                    help="with --screenshot: bring this dock to the front (e.g. landscape, problem); repeatable")
    ap.add_argument("--color-scheme", choices=("system", "light", "dark"), default="system",
                    help="light or dark palette (default: the desktop's)")
    args = ap.parse_args(argv)
    if args.screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication, QDockWidget

    from widgets import pg_setup
    pg_setup.configure()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from .theme import apply_scheme
    apply_scheme(app, args.color_scheme)
    app.setApplicationName("optimlab")
    app.setOrganizationName("optimlab")
    from core.files import LoadError
    from core.spec import SpecError
    try:
        session = _session(args)
    except (LoadError, SpecError, KeyError) as e:
        print(f"optimlab: {e}", file=sys.stderr)
        return 2
    from core import edits

    from .main_window import MainWindow
    if args.screenshot:
        settings = QSettings(os.path.join(os.path.dirname(os.path.abspath(args.screenshot)), ".optimlab-shot.ini"),
                             QSettings.Format.IniFormat)
        settings.clear()
        win = MainWindow(session, settings)
        w, h = (int(v) for v in args.size.lower().split("x"))
        win.resize(w, h)
        win.show()
        if args.tensor:
            win.tensor_combo.setCurrentText(args.tensor)
        docks = {d.objectName(): d for d in win.findChildren(QDockWidget)}
        for name in args.raise_docks:
            dock = docks.get(name.replace(" ", "_").lower())
            if dock is None:
                print(f"optimlab: no dock {name!r}; there are {', '.join(sorted(docks))}", file=sys.stderr)
                win.close()
                return 2
            dock.raise_()
        if args.steps:
            win.bridge.runner.step(args.steps)
        target = session.step_count + args.steps
        win.bridge.call(edits.noop)  # answered once the runner process is up and the steps are done
        end = time.monotonic() + 120
        settled = 0
        while time.monotonic() < end and settled < 20:
            app.processEvents()
            snap = win.bridge.latest()
            # done when the steps are drawn and no answer (a landscape grid, ...) is awaited
            done = snap.step >= target and not snap.running and not win.bridge.pending
            settled = settled + 1 if done else 0
            time.sleep(0.02)
        ok = win.grab().save(args.screenshot)
        win.dirty = False
        win.close()
        os.remove(settings.fileName()) if os.path.exists(settings.fileName()) else None
        print(f"wrote {args.screenshot}" if ok else f"optimlab: could not write {args.screenshot}")
        return 0 if ok else 1
    win = MainWindow(session)
    del session  # it now lives in the runner process: no second copy of its tensors here
    from . import startup_probe
    startup_probe.watch(win, "first-window", "main-window")
    win.show()
    from PySide6.QtCore import QTimer
    QTimer.singleShot(0, lambda: startup_probe.ready(win))
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
