"""Keep Python's cyclic garbage collector off the objects of the modules a process imported.

torch and its submodules (and, in the window, Qt and pyqtgraph) leave 230,000-290,000 objects
that the cyclic collector tracks; every full (generation 2) collection walks them all: 55-65 ms
in the window's process on this project's 2-core machine, 50-55 ms in a runner process. They
come rarely once a process has settled (none in 24 s of a live Compare window, none in a
runner process's benchmark runs), but they do come after heavy allocation: while torch imported
its lazily loaded modules at an in-process comparison's first step, two took 108 ms; in the
window each one is a stall of a frame or more. These objects are never garbage (modules live as long as the
process), so ``freeze_loaded()`` moves everything alive now into the permanent generation,
which collections skip (``gc.freeze``, the recipe CPython documents for long-lived processes
and fork servers: it also keeps a forked child from writing to the pages it shares with its
parent). Objects made afterwards (sessions, frames, windows) are collected as before; call it
once the imports are done and before any session exists, since a frozen reference cycle is
never freed.
"""
from __future__ import annotations

import gc


def freeze_loaded() -> int:
    """Exempt every object alive now from later collections; returns how many are frozen."""
    gc.freeze()
    return gc.get_freeze_count()
