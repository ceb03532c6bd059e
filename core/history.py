"""Bounded, downsampled scalar series recorded while the optimizer runs."""
from __future__ import annotations

import time

import numpy as np

from .snapshot import History, frozen

CAPACITY = 4096  # points kept per series; when full, every other point is dropped
BUDGET = 0.03  # share of wall time spent on probes and snapshots while running


class Budget:
    """Allows costly work while its total stays under ``fraction`` of elapsed time."""

    def __init__(self, fraction: float = BUDGET):
        self.fraction = fraction
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.spent = 0.0

    def due(self, now: float) -> bool:
        return self.spent <= self.fraction * (now - self.start)

    def charge(self, seconds: float) -> None:
        self.spent += seconds


class HistoryRecorder:
    """Append (step, loss, grad norm, update norm, lr per group[, x, y]) rows.

    Memory stays bounded: when the buffer is full it keeps every other row and
    from then on records only every ``stride``-th offered row, so a run of any
    length keeps an evenly thinned curve from step 0 to now.
    """

    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self.clear()

    def clear(self) -> None:
        self._rows: list[tuple] = []
        self._stride = 1
        self._offered = 0
        self._cache: History | None = None

    def add(self, step: int, loss, grad_norm, update_norm, lrs, xy=None) -> None:
        self._offered += 1
        if (self._offered - 1) % self._stride:
            return
        self._rows.append((step, loss, grad_norm, update_norm, tuple(lrs), xy))
        if len(self._rows) >= self.capacity:
            self._rows = self._rows[::2]
            self._stride *= 2
        self._cache = None

    def __len__(self) -> int:
        return len(self._rows)

    def view(self) -> History:
        """Read-only numpy arrays of what was recorded (cached until the next add)."""
        if self._cache is not None:
            return self._cache
        if not self._rows:
            self._cache = History.empty()
            return self._cache
        nan = float("nan")
        col = lambda i: frozen(np.array([nan if r[i] is None else r[i] for r in self._rows], dtype=np.float64))
        ngroups = max(len(r[4]) for r in self._rows)
        lr = tuple(frozen(np.array([r[4][g] if g < len(r[4]) and r[4][g] is not None else nan
                                    for r in self._rows], dtype=np.float64)) for g in range(ngroups))
        self._cache = History(col(0), col(1), col(2), col(3), lr)
        return self._cache

    def path(self) -> np.ndarray | None:
        pts = [r[5] for r in self._rows if r[5] is not None]
        if not pts:
            return None
        return frozen(np.array(pts, dtype=np.float64))

    # saving with a session: plain arrays
    def to_arrays(self) -> dict:
        h = self.view()
        out = {"step": h.step, "loss": h.loss, "grad_norm": h.grad_norm, "update_norm": h.update_norm,
               "stride": np.array([self._stride, self._offered])}
        for g, s in enumerate(h.lr):
            out[f"lr{g}"] = s
        p = self.path()
        if p is not None:
            out["path"] = p
        return out

    @classmethod
    def from_arrays(cls, d: dict) -> "HistoryRecorder":
        rec = cls()
        steps = d.get("step", np.zeros(0))
        lrs = [d[k] for k in sorted((k for k in d if k.startswith("lr")), key=lambda k: int(k[2:]))]
        path = d.get("path")
        for i in range(len(steps)):
            num = lambda a: None if np.isnan(a[i]) else float(a[i])
            xy = tuple(path[i]) if path is not None and len(path) == len(steps) else None
            rec._rows.append((int(steps[i]), num(d["loss"]), num(d["grad_norm"]), num(d["update_norm"]),
                              tuple(num(s) for s in lrs), xy))
        if "stride" in d:
            rec._stride, rec._offered = int(d["stride"][0]), int(d["stride"][1])
        return rec
