"""Test set-up shared by every layer: headless Qt, no leaked threads, garbage collected on the main thread."""
import gc
import multiprocessing
import os
import sys
import threading
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def garbage_collected_on_this_thread():
    """As the app does (widgets.gui_gc): no automatic collection, which could run on a runner
    thread and free Qt objects there (a test hung so); each test's garbage is collected here."""
    gc.disable()
    gc.freeze()  # the imported modules' objects (core.gc_policy): collections walk only the tests' own
    yield
    gc.unfreeze()
    gc.enable()


@pytest.fixture(autouse=True)
def collect_after_each_test(garbage_collected_on_this_thread):
    """What the collector's thresholds would have collected meanwhile (a full collection after
    every test made the suite 2.5x slower)."""
    yield
    t0, t1, t2 = gc.get_threshold()
    c0, c1, c2 = gc.get_count()
    if c0 > t0:
        gc.collect(0 if c1 <= t1 else 2 if c2 > t2 else 1)


@pytest.fixture(autouse=True)
def private_recovery_dir(tmp_path, monkeypatch):
    """Windows keep their recovery files in the test's own folder (app/recovery_ui.py), never in
    the user's state folder."""
    monkeypatch.setenv("OPTIMLAB_RECOVERY_DIR", str(tmp_path / "recovery"))


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail any test that leaves a Python thread or a runner process running."""
    before = set(threading.enumerate())
    children = set(multiprocessing.active_children())
    yield
    left = [p.name for p in multiprocessing.active_children() if p not in children]
    assert not left, f"test left processes running: {left}"
    leaked = []
    for t in threading.enumerate():
        if t not in before and t.is_alive():
            t.join(timeout=5)
            if t.is_alive():
                leaked.append(t.name)
    assert not leaked, f"test left threads running: {leaked}"
