"""Render the pictures of File > New…: ``python -m app.thumbnails`` writes
``resources/examples/NAME.png`` for every shipped example.

Each picture is the part of the window that tells the example apart, drawn after the
example's journal has run: the landscape with the path for a 2-parameter objective, the
decision boundary for a 2-D classifier, else the first tensor's heatmap.
"""
from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, QSize, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

SIZE = QSize(240, 160)  # twice what the dialog shows, for high-dpi screens


def picture(win):
    """The widget that shows what the example is about."""
    s = win.snapshot
    if s.objective is not None and s.path is not None:
        win.landscape_dock.raise_()
        return win.landscape.plot
    if s.decision is not None:
        win.decision_dock.raise_()
        return win.decision.plot
    view = next(iter(win.tensor_panel.views().values()))
    return view.pages.currentWidget()


def main() -> int:
    from widgets import pg_setup
    pg_setup.configure()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from core.cli import example_paths
    from core.session import Session
    from core.spec import loads

    from .main import settle
    from .main_window import MainWindow
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in example_paths().items():
            spec, journal = loads(path.read_text())
            session = Session(spec, journal)
            win = MainWindow(session, QSettings(os.path.join(tmp, "thumbs.ini"), QSettings.Format.IniFormat))
            win.resize(1280, 800)
            win.show()
            settle(app, win, session.step_count)
            widget = picture(win)
            settle(app, win, session.step_count)
            pix = widget.grab().scaled(SIZE, Qt.AspectRatioMode.KeepAspectRatioByExpanding,
                                       Qt.TransformationMode.SmoothTransformation)
            x, y = (pix.width() - SIZE.width()) // 2, (pix.height() - SIZE.height()) // 2
            out = path.with_suffix(".png")
            ok = pix.copy(x, y, SIZE.width(), SIZE.height()).save(str(out))
            print(f"wrote {out}" if ok else f"could not write {out}")
            win.dirty = False
            win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
