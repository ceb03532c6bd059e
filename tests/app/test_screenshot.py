"""The offscreen screenshot mode, and a default layout where every dock has room."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QDockWidget

from .conftest import quadratic_spec

ROOT = Path(__file__).resolve().parents[2]


def test_screenshot_mode_writes_a_png_of_the_window(tmp_path):
    png = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-m", "app", "--screenshot", str(png), "--example", "seed_walkthrough",
                           "--raise", "state dict"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert png.stat().st_size > 10_000
    img = QImage(str(png))
    assert (img.width(), img.height()) == (1280, 800)
    assert not list(tmp_path.glob(".optimlab-shot*")), "the throwaway settings file was left behind"


def test_every_dock_has_room_and_none_is_hidden_in_the_default_layout(make_window, qtbot):
    win = make_window(quadratic_spec(shape=(4, 4)))
    win.resize(1280, 800)
    qtbot.waitUntil(lambda: win.width() == 1280 and win.height() == 800)
    docks = win.findChildren(QDockWidget)
    assert {d.windowTitle() for d in docks} == {"Controls", "Problem", "Optimizer", "Curves", "State dict",
                                                "Landscape", "Decision boundary"}
    for d in docks:
        assert not d.isFloating()
        assert d.toggleViewAction().isChecked(), f"{d.windowTitle()} is closed"
        d.raise_()  # a tabified dock shows when its tab is chosen
        qtbot.waitUntil(lambda d=d: d.isVisible() and not d.visibleRegion().isEmpty())
        assert d.width() >= 200 and d.height() >= 120, (d.windowTitle(), d.size())
    assert win.centralWidget().width() >= 400 and win.centralWidget().height() >= 400
