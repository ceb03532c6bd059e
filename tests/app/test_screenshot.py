"""The offscreen screenshot mode, and a default layout where every dock has room."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QDockWidget

from app.theme import apply_scheme

from .conftest import quadratic_spec

ROOT = Path(__file__).resolve().parents[2]


def test_screenshot_mode_writes_a_png_of_the_window(tmp_path):
    png = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-m", "app", "--screenshot", str(png), "--example", "seed_walkthrough",
                           "--raise", "state dict"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
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
                                                "Landscape", "Decision boundary", "Branches", "Breakpoints"}
    for d in docks:
        assert not d.isFloating()
        assert d.toggleViewAction().isChecked(), f"{d.windowTitle()} is closed"
        d.raise_()  # a tabified dock shows when its tab is chosen
        qtbot.waitUntil(lambda d=d: d.isVisible() and not d.visibleRegion().isEmpty())
        assert d.width() >= 200 and d.height() >= 120, (d.windowTitle(), d.size())
    assert win.centralWidget().width() >= 400 and win.centralWidget().height() >= 400


def test_docks_tabbed_together_show_whole_titles_never_elided(make_window, qtbot):
    """Under Xvfb a right dock at 280 px showed tabs "Cur…", "Landsca…": Qt elides dock tabs
    when their bar is narrower than their titles. They stay whole now (the bar scrolls),
    also on a bar Qt makes later, when docks are tabbed together."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QTabBar
    win = make_window(quadratic_spec(shape=(4, 4)))
    win.tabifyDockWidget(win.controls_dock, win.branches_dock)  # a new tab bar, made now

    def bars():
        return [b for b in win.findChildren(QTabBar) if b.isVisible() and b.count() > 1]
    qtbot.waitUntil(lambda: len(bars()) >= 4)
    titles = {b.tabText(i) for b in bars() for i in range(b.count())}
    assert {"Curves", "Landscape", "Decision boundary", "Controls", "Branches"} <= titles
    qtbot.waitUntil(lambda: all(b.elideMode() == Qt.TextElideMode.ElideNone and b.usesScrollButtons()
                                for b in bars()))


def test_dark_screenshot_waits_for_the_runner_and_draws_the_landscape(tmp_path):
    png = tmp_path / "dark.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-m", "app", "--screenshot", str(png), "--example", "adam_rosenbrock",
                           "--color-scheme", "dark", "--raise", "landscape"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    img = QImage(str(png))
    assert img.pixelColor(640, 795).lightness() < 80  # the status bar: a dark palette
    # the landscape dock (top right) shows the contour map, not an empty black plot
    colourful = sum(img.pixelColor(x, y).saturation() > 80 and img.pixelColor(x, y).value() > 60
                    for x in range(960, 1240, 10) for y in range(60, 320, 10))
    assert colourful > 0.5 * 28 * 26


def test_an_unknown_colour_scheme_is_refused_in_one_sentence():
    with pytest.raises(ValueError, match="Unknown colour scheme 'blue'"):
        apply_scheme(None, "blue")


def test_the_optimlab_command_opens_files_and_window_options_in_the_app_and_subcommands_headless():
    from app.entry import wants_cli
    assert wants_cli(["run", "seed_walkthrough"]) and wants_cli(["optimizers"]) and wants_cli(["--help"])
    for argv in ([], ["session.optimlab"], ["seed_walkthrough"], ["--color-scheme", "dark"],
                 ["--screenshot", "x.png"], ["gui"]):
        assert not wants_cli(argv), argv


def test_every_cli_subcommand_runs_headless():
    """``optimlab resume ...`` had opened the window, which refused its arguments."""
    import argparse

    from app.entry import wants_cli
    from core.cli import parser
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.choices and all(wants_cli([name, "--help"]) for name in sub.choices), sorted(sub.choices)


def test_at_1024x700_the_tensors_keep_room_and_the_optimizer_form_uses_the_dock(make_window, qtbot):
    from PySide6.QtWidgets import QScrollArea
    win = make_window(quadratic_spec(shape=(4, 4)))
    for w, h in ((1280, 800), (1024, 700)):
        win.resize(w, h)
        qtbot.waitUntil(lambda: win.width() == w and win.height() == h)
        qtbot.waitUntil(lambda: win.centralWidget().width() >= 0.36 * w)  # the side docks gave way
        win.optimizer_dock.raise_()
        scroll = win.optimizer_dock.widget()
        assert isinstance(scroll, QScrollArea)  # the dock scrolls as a whole...
        form = win.optimizer_panel.form
        inner = [a for a in scroll.widget().findChildren(QScrollArea)]
        assert not inner  # ...with no small scroll box of its own inside
        qtbot.waitUntil(lambda: form.height() >= form.sizeHint().height())
        toggle = form._toggle
        scroll.ensureWidgetVisible(toggle)
        qtbot.waitUntil(lambda: toggle.visibleRegion().boundingRect() == toggle.rect())  # "Advanced" not clipped


def test_the_splash_is_on_screen_before_torch_is_imported_and_the_session_opens_after(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OPTIMLAB_STARTUP_PROBE="quit", HOME=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "app", "adam_rosenbrock"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = [line.split() for line in done.stdout.splitlines() if line.startswith("startup ")]
    assert [e[1] for e in events] == ["first-window", "main-window", "ready"]
    assert events[0][3] == "torch=no"  # a window at once, not after seconds of imports
    assert float(events[0][2]) <= float(events[1][2]) <= float(events[2][2])


def test_screenshot_mode_draws_the_compare_window_on_the_tab_asked(tmp_path, qapp, capsys):
    png = tmp_path / "compare.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-m", "app", "--screenshot", str(png), "--example", "adam_rosenbrock",
                           "--compare", "table", "--steps", "5", "--size", "1024x700"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    img = QImage(str(png))
    assert (img.width(), img.height()) == (1024, 700) and png.stat().st_size > 10_000
    from app.main import main
    assert main(["--screenshot", str(tmp_path / "no.png"), "--example", "adam_rosenbrock", "--compare", "plots"]) == 2
    assert "no Compare tab 'plots'; there are curves, landscape, tensors, between runs, table" in capsys.readouterr().err
    assert not (tmp_path / "no.png").exists()


def test_a_name_that_is_neither_a_file_nor_an_example_is_refused_naming_the_examples(capsys):
    from app.main import main
    assert main(["two_moons"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optimlab: no such file or example: two_moons (the examples: adam_rosenbrock, ")
    assert "moons_mlp" in err and len(err.splitlines()) == 1
