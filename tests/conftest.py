"""Test set-up shared by every layer: headless Qt, no leaked threads."""
import multiprocessing
import os
import sys
import threading
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest  # noqa: E402


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
