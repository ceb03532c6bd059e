"""Fixtures for the desktop app: a real MainWindow with its own settings file, always closed."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QLineEdit, QMessageBox

from core import edits
from core.session import Session
from core.spec import GradientSpec, ManualGrad, SessionSpec, TensorSpec
from widgets import pg_setup

pg_setup.configure()

WAIT_MS = 10_000


def manual_spec(optimizer="SGD", hparams=None, shape=(2, 2), **kw) -> SessionSpec:
    """One tensor ``weight`` with explicit values and a manual gradient of ones."""
    n = int(np.prod(shape))
    values = np.linspace(-1.0, 1.0, n).reshape(shape).tolist()
    return SessionSpec(optimizer=optimizer, hparams=dict(hparams or {}),
                       tensors=(TensorSpec("weight", shape, init="values", values=values,
                                           grad=ManualGrad("constant", 1.0)),), **kw)


def quadratic_spec(optimizer="Adam", hparams=None, shape=(16, 16), condition=10.0) -> SessionSpec:
    """``weight`` (normal init) on the quadratic objective."""
    return SessionSpec(optimizer=optimizer, hparams=dict(hparams or {}),
                       tensors=(TensorSpec("weight", shape),),
                       gradient=GradientSpec(kind="objective", objective="quadratic", condition=condition))


@pytest.fixture
def qtbot(qtbot):
    """pytest-qt's qtbot, waiting up to WAIT_MS by default: a loaded CI machine steps slowly."""
    wait_until = qtbot.waitUntil

    def wait(callback, *, timeout=WAIT_MS):
        return wait_until(callback, timeout=timeout)
    qtbot.waitUntil = wait
    return qtbot


@pytest.fixture(autouse=True)
def no_unanswered_question(monkeypatch):
    """A modal question no test answers (QMessageBox.exec) fails the test at once instead of
    waiting forever offscreen; a test that expects one patches exec to answer it."""
    def unanswered(box):
        raise AssertionError(f"a question nobody answers: {box.text()!r}")
    monkeypatch.setattr(QMessageBox, "exec", unanswered)


@pytest.fixture
def settings_path(tmp_path):
    return tmp_path / "settings.ini"


@pytest.fixture
def make_window(qtbot, settings_path):
    """``make_window(spec_or_session, journal=())`` -> a shown MainWindow; closed at teardown.

    Every window is closed with ``dirty`` cleared, so its runner thread stops before the
    thread-leak check of tests/conftest.py runs.
    """
    from app.main_window import MainWindow
    windows = []

    def make(spec_or_session=None, journal=(), settings: QSettings | None = None, bare: bool = False):
        """``bare``: no session given, as the app starts (the runner builds a blank one)."""
        s = settings if settings is not None else QSettings(str(settings_path), QSettings.Format.IniFormat)
        if bare:
            win = MainWindow(None, s)
        else:
            if spec_or_session is None:
                spec_or_session = manual_spec()
            session = spec_or_session if isinstance(spec_or_session, Session) else Session(spec_or_session, journal)
            win = MainWindow(session, s)
        windows.append(win)
        win.show()
        qtbot.waitExposed(win)
        win.activateWindow()
        qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=WAIT_MS)
        return win

    yield make
    for win in windows:
        for box in win.findChildren(QMessageBox):
            box.close()
        win.dirty = False
        for w in getattr(win, "compare_windows", []):
            w.dirty = False  # its Compare windows close with it, unasked
        win.close()
        assert not win.bridge.runner.alive, "the runner thread outlived its window"
        win.deleteLater()
    QApplication.processEvents()


# ----- helpers shared by the app tests -----

def wait_step(qtbot, win, step: int, timeout=WAIT_MS) -> None:
    """Wait until the window has drawn ``step`` with the runner idle."""
    qtbot.waitUntil(lambda: win.snapshot.step == step and not win.snapshot.running, timeout=timeout)


def wait_idle(qtbot, win, timeout=WAIT_MS):
    """Wait until every call sent to the runner so far has come back and been drawn."""
    fut = win.bridge.runner.call(edits.noop)
    qtbot.waitUntil(fut.done, timeout=timeout)
    qtbot.waitUntil(lambda: not win.bridge._callbacks, timeout=timeout)
    seq = win.bridge.runner.latest().seq
    qtbot.waitUntil(lambda: win.snapshot.seq >= seq, timeout=timeout)


def on_runner(win, fn, *args, timeout=10):
    """Run ``fn(session, *args)`` on the runner and return its result (``fn`` from tests/app/probes.py)."""
    return win.bridge.runner.call(fn, *args).result(timeout)


def shown_values(win, which="value", tensor="weight") -> np.ndarray:
    """The numbers the tensor panel draws for ``tensor`` (its value, grad or a state entry)."""
    if win.tensor_combo.currentText() != tensor:
        win.tensor_combo.setCurrentText(tensor)
    view = win.tensor_panel.views()[which]
    rows, cols = view.view().values.reshape(view.view().values.shape[0], -1).shape
    out = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            _, out[r, c] = view.valueAt(r, c)
    return out.reshape(view.view().shape)


def type_line(qtbot, edit: QLineEdit, text: str, enter: bool = True) -> None:
    """Replace a line edit's text by typing, then press Enter (editingFinished) unless told not to."""
    edit.setFocus()
    edit.selectAll()
    qtbot.keyClicks(edit, text)
    if enter:
        qtbot.keyClick(edit, Qt.Key.Key_Return)


def type_into_cell(qtbot, table, row, col, text, wait: bool = True):
    """Open a table cell's editor as a user would, type ``text`` and press Enter."""
    table.setCurrentCell(row, col)
    table.editItem(table.item(row, col))
    editor = QApplication.focusWidget()
    assert isinstance(editor, QLineEdit), editor
    editor.selectAll()
    qtbot.keyClicks(editor, text)
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    if wait:  # Qt 6 commits an item editor's data from a queued call
        qtbot.waitUntil(lambda: table.item(row, col).text() == text)
