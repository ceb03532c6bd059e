"""What the app does before torch is imported, so a window is on screen at once.

A splash is shown first (only PySide6 loaded). The runner's fork server starts next, so it
imports torch on another core while this process imports torch, pyqtgraph and the window.
The session to open is read here without torch (a spec is plain JSON) and built in the
runner process, never in this one: building one here cost seconds (torch's first
optimizer imports torch._dynamo) before anything could be drawn.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import zipfile
from multiprocessing import forkserver
from pathlib import Path

from PySide6.QtCore import QElapsedTimer, Qt, QThread
from PySide6.QtGui import QColor, QFont, QPainter, QPixmap
from PySide6.QtWidgets import QApplication, QSplashScreen

import resources

EXAMPLES = Path(resources.__file__).resolve().parent / "examples"
# at least what core.runner_process.context() preloads in its fork server (a test checks it),
# and torch._dynamo, which a child's first optimizer step would otherwise import (about 2 s)
RUNNER_PRELOAD = ["core.runner_process", "core.edits", "torch._dynamo"]


def start_runner_server() -> None:
    """Start the runner's fork server now (it preloads torch while the window is built).

    Returns at once; the server process imports on its own. ``core.runner_process``
    uses the same server later (one per process; its preload list is covered by ours)."""
    if "forkserver" not in mp.get_all_start_methods():  # Windows: the runner spawns its children
        return
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(RUNNER_PRELOAD)
    forkserver.ensure_running()


def example_path(name: str) -> Path | None:
    p = EXAMPLES / f"{name}.json"
    return p if p.is_file() else None


def resolve(target: str) -> tuple[Path, str | None]:
    """``(path, example name or None)`` for a file or a shipped example's name."""
    p = Path(target)
    if p.exists():
        return p, None
    ex = example_path(target)
    return (ex, target) if ex is not None else (p, None)


def peek_spec(path: Path):
    """The spec of a session file, read without torch (None if it cannot be read cheaply):
    the window shows it while the runner process builds the session."""
    from core.spec import SpecError, from_document
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                doc = json.loads(z.read("session.json"))
            doc = dict(doc, format="optimlab-spec")
        else:
            doc = json.loads(Path(path).read_text())
        return from_document(doc)[0]
    except (OSError, KeyError, ValueError, TypeError, SpecError, zipfile.BadZipFile):
        return None  # the real open says what is wrong


class Splash(QSplashScreen):
    """A plain card with the app's name and what it is doing, drawn without any image file."""

    def __init__(self):
        pal = QApplication.palette()
        pix = QPixmap(440, 170)
        pix.fill(pal.window().color())
        p = QPainter(pix)
        p.setPen(QColor(pal.mid().color()))
        p.drawRect(0, 0, pix.width() - 1, pix.height() - 1)
        title = QFont(QApplication.font())
        title.setPointSizeF(title.pointSizeF() * 2.2)
        title.setBold(True)
        p.setFont(title)
        p.setPen(pal.windowText().color())
        p.drawText(24, 62, "optimlab")
        p.setFont(QApplication.font())
        p.drawText(24, 92, "watch PyTorch optimizers work, step by step")
        p.end()
        super().__init__(pix)

    def say(self, text: str) -> None:
        """Show what is being done now (repainted at once: the event loop is not running)."""
        self.showMessage(text, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom,
                         QApplication.palette().windowText().color())
        QApplication.processEvents()

    def show_now(self, timeout_ms: int = 1000) -> None:
        """Show and wait (briefly) until the window system has it on screen and painted."""
        self.show()
        self.raise_()
        clock = QElapsedTimer()
        clock.start()
        handle = self.windowHandle()
        while clock.elapsed() < timeout_ms and not (handle is not None and handle.isExposed()):
            QApplication.processEvents()
            QThread.msleep(5)
            handle = self.windowHandle()
        self.repaint()
        QApplication.processEvents()
