"""Start the desktop app, or render it offscreen to a PNG.

    python -m app [SESSION_OR_FILE]
    python -m app --screenshot out.png [--example seed_walkthrough] [--steps N] [--tensor NAME] [--raise DOCK]
                  [--over-time]
    python -m app --screenshot out.png --example digits_mlp --compare table [--steps N]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

DEFAULT_EXAMPLE = "seed_walkthrough"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="optimlab", description="optimlab: watch PyTorch optimizers work")
    ap.add_argument("file", nargs="?", help="a session (.optimlab/.json) or an example's name to open")
    ap.add_argument("--example", help=f"open this shipped example (default: {DEFAULT_EXAMPLE})")
    ap.add_argument("--screenshot", metavar="PNG", help="render the window offscreen to PNG and quit")
    ap.add_argument("--steps", type=int, default=0, help="with --screenshot: steps to run first")
    ap.add_argument("--tensor", help="with --screenshot: the tensor to show")
    ap.add_argument("--size", default="1280x800", help="with --screenshot: window size")
    ap.add_argument("--over-time", action="store_true",
                    help="with --screenshot: the tensor's distributions over time, every step measured")
    ap.add_argument("--raise", dest="raise_docks", action="append", default=[], metavar="DOCK",
                    help="with --screenshot: bring this dock to the front (e.g. landscape, problem); repeatable")
    ap.add_argument("--compare", metavar="TAB", help="with --screenshot: the Compare window instead, the "
                    "session's configuration beside a second one, on this tab (curves, landscape, tensors, "
                    "between runs, table)")
    ap.add_argument("--color-scheme", choices=("system", "light", "dark"), default="system",
                    help="light or dark palette (default: the desktop's)")
    return ap


def _application(args):
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from .theme import apply_scheme
    apply_scheme(app, args.color_scheme)
    app.setApplicationName("optimlab")
    app.setOrganizationName("optimlab")
    from widgets import gui_gc
    gui_gc.install(app)  # Python's garbage collector on this thread only
    return app


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        return screenshot(args)
    return run(args)


def run(args) -> int:
    """The desktop app: a splash at once, then the window; the session is built in the runner."""
    from . import startup, startup_probe
    target = args.file or args.example or DEFAULT_EXAMPLE
    path, example = startup.resolve(target)
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in startup.EXAMPLES.glob("*.json")))
        print(f"optimlab: no such file or example: {target} (the examples: {names})", file=sys.stderr)
        return 2
    app = _application(args)
    from PySide6.QtCore import QSettings

    from . import script_trust
    script_trust.load_agreements(QSettings())  # before the runner process starts: it gets them
    splash = startup.Splash()
    startup_probe.watch(splash, "first-window")
    splash.show_now()
    startup.start_runner_server()
    splash.say("Loading the plotting library…")
    from widgets import pg_setup
    pg_setup.configure()
    splash.say("Importing PyTorch…")
    from .main_window import MainWindow
    splash.say(f"Opening {example or path.name}…")
    win = MainWindow(spec=startup.peek_spec(path))
    startup_probe.watch(win, "main-window")
    win.show()
    splash.finish(win)
    offered = win.offer_left_behind()  # a session a window left when its process ended
    win.open_initial(path, example, start_screen=args.file is None and args.example is None and not offered)
    from core import gc_policy
    gc_policy.freeze_loaded()  # torch, Qt, pyqtgraph and the window: no full collection walks them again
    return app.exec()


def screenshot(args) -> int:
    """Build the session here, draw it offscreen once everything asked is done, save a PNG."""
    app = _application(args)
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QDockWidget

    from widgets import pg_setup
    pg_setup.configure()
    from core import session_file
    from core.cli import example_paths, resolve
    from core.files import LoadError
    from core.session import Session
    from core.spec import SpecError, loads
    try:
        if args.file:
            session = session_file.load_session(resolve(args.file))
        else:
            spec, journal = loads(example_paths()[args.example or DEFAULT_EXAMPLE].read_text())
            session = Session(spec, journal)
    except (LoadError, SpecError, KeyError) as e:
        print(f"optimlab: {e}", file=sys.stderr)
        return 2

    if args.compare:
        return compare_screenshot(app, session, args)
    from .main_window import MainWindow
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
    settle(app, win, session.step_count + args.steps)
    if args.over_time:
        win.tensor_panel.setOverTime(True)
        win.measure_skipped()
        settle(app, win, session.step_count + args.steps)
    ok = win.grab().save(args.screenshot)
    win.dirty = False
    win.close()
    os.remove(settings.fileName()) if os.path.exists(settings.fileName()) else None
    print(f"wrote {args.screenshot}" if ok else f"optimlab: could not write {args.screenshot}")
    return 0 if ok else 1


def compare_screenshot(app, session, args) -> int:
    """The Compare window of the session's configuration (and a second one) after ``--steps``."""
    from core.compare import RunSpec

    from .compare_window import CompareWindow
    win = CompareWindow([RunSpec.from_spec(session)], process=False)  # a resumed one with its checkpoint data
    tabs = {win.view.tabText(i).lower(): i for i in range(win.view.count())}
    if args.compare.lower() not in tabs:
        print(f"optimlab: no Compare tab {args.compare!r}; there are {', '.join(tabs)}", file=sys.stderr)
        win.close()
        return 2
    win.view.setCurrentIndex(tabs[args.compare.lower()])
    win.resize(*(int(v) for v in args.size.lower().split("x")))
    win.show()
    end = time.monotonic() + 120
    while time.monotonic() < end and win.frame is None:
        app.processEvents()
        time.sleep(0.02)
    if args.steps:
        win.step(args.steps)
    settle(app, win, args.steps)
    ok = win.grab().save(args.screenshot)
    win.dirty = False  # a picture, not the user's work
    win.close()
    print(f"wrote {args.screenshot}" if ok else f"optimlab: could not write {args.screenshot}")
    return 0 if ok else 1


def settle(app, win, step: int, timeout: float = 120) -> None:
    """Process events until ``step`` is drawn, the run is idle and no answer is awaited."""
    from core import edits
    win.bridge.call(edits.noop)  # answered once the runner process is up and the steps are done
    end = time.monotonic() + timeout
    settled = 0
    while time.monotonic() < end and settled < 20:
        app.processEvents()
        snap = win.bridge.latest()
        # done when the steps are drawn and no answer (a landscape grid, ...) is awaited
        done = snap.step >= step and not snap.running and not win.bridge.pending \
            and not getattr(win, "_measuring", False)
        settled = settled + 1 if done else 0
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main())
