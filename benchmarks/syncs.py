"""Host syncs of the step loop, counted on the CPU (what would wait for a GPU on CUDA).

Run: python benchmarks/syncs.py
For each case of harness.py, counts with tests/core/sync_counter.py the reads of tensor
values into Python or host memory made by the session's code (torch's own reads of its
CPU-held step counters excluded, see there) in: a step without probing (every step),
a probed or watched step (and its history row), and a snapshot (at most 40 a second).
Prints syncs per call and the lines that make them. (Code that reads CPU tensors one way
and GPU tensors another is seen on its CPU path here.)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from core.observe import make_snapshot  # noqa: E402
from core.session import Session  # noqa: E402
from harness import CASES  # noqa: E402
from tests.core.sync_counter import SyncCounter  # noqa: E402

N = 4


def parts(s):
    """(name, one call) for the loop's parts: before the engine rewrite the session steps itself
    and probes on a budget; after it, an Engine steps and the session's Observer watches."""
    if hasattr(s, "engine"):
        return (("engine.step_once() (every step)", s.engine.step_once),
                ("advance() (a watched step)", s.advance),
                ("advance() + flush()", lambda: (s.advance(), s.flush())),
                ("snapshot", lambda: make_snapshot(s, 1)))
    return (("step_once() (every step)", s.step_once),
            ("probed step + history row", lambda: s.record(s.step_once(probe=True))),
            ("snapshot", lambda: make_snapshot(s, 1)))


def main() -> None:
    for c in CASES:
        s = Session(c.spec)
        s.step(1)  # the first step checks once what later steps do not
        print(c.label)
        for name, fn in parts(s):
            with SyncCounter() as syncs:
                for _ in range(N):
                    fn()
            print(f"  {name:32s} {syncs.count / N:5.1f} syncs each")
            for (op, where), n in sorted(syncs.by_place().items(), key=lambda kv: -kv[1]):
                print(f"      {n / N:5.1f}  {op:14s} {where}")


if __name__ == "__main__":
    main()
