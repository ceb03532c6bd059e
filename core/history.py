"""Bounded, downsampled scalar series recorded while the optimizer runs."""
from __future__ import annotations

import time

import numpy as np

from .snapshot import History, frozen

CAPACITY = 4096  # points kept per series; when full, every other point is dropped
BUDGET = 0.015  # share of wall time spent on curve probes while running
_FIXED = ("step", "loss", "grad_norm", "update_norm", "x", "y", "val_loss", "val_accuracy")


class Budget:
    """Allows costly work while its total stays under ``fraction`` of elapsed time."""

    def __init__(self, fraction: float = BUDGET):
        self.fraction = fraction
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.spent = 0.0
        self.early = 0.0  # what the measuring floor's early points took since (observer.floor_wait)

    def due(self, now: float, fraction: float | None = None) -> bool:
        """Whether the work done so far is within ``fraction`` (default: the budget's) of the time."""
        return self.spent <= (self.fraction if fraction is None else fraction) * (now - self.start)

    def charge(self, seconds: float) -> None:
        self.spent += seconds


class HistoryRecorder:
    """Append (step, loss, grad norm, update norm, lr per group[, x, y]) rows.

    Memory stays bounded: rows live in preallocated numpy columns; when they are
    full every other row is dropped and from then on only every ``stride``-th
    offered row is kept, so a run of any length keeps an evenly thinned curve from
    its first step to now. Reading a view copies at most CAPACITY floats a column.
    """

    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self.clear()

    def clear(self) -> None:
        self._cols = {k: np.full(self.capacity, np.nan) for k in _FIXED}
        self._lr: list[np.ndarray] = []
        self._n = 0
        self._stride = 1
        self._offered = 0
        self._has_xy = False
        self._cache: History | None = None

    def add(self, step: int, loss, grad_norm, update_norm, lrs, xy=None, val_loss=None,
            val_accuracy=None) -> None:
        self._offered += 1
        if (self._offered - 1) % self._stride:
            return
        i = self._n
        c = self._cols
        nan = np.nan
        c["step"][i] = step
        c["loss"][i] = nan if loss is None else loss
        c["grad_norm"][i] = nan if grad_norm is None else grad_norm
        c["update_norm"][i] = nan if update_norm is None else update_norm
        c["val_loss"][i] = nan if val_loss is None else val_loss
        c["val_accuracy"][i] = nan if val_accuracy is None else val_accuracy
        if xy is not None:
            c["x"][i], c["y"][i] = xy
            self._has_xy = True
        while len(self._lr) < len(lrs):
            self._lr.append(np.full(self.capacity, np.nan))
        for g, lr in enumerate(lrs):
            self._lr[g][i] = nan if lr is None else lr
        self._n += 1
        if self._n >= self.capacity:
            self._halve()
        self._cache = None

    def _halve(self) -> None:
        keep = self._n // 2 + self._n % 2
        for col in list(self._cols.values()) + self._lr:
            col[:keep] = col[:self._n:2].copy()
            col[keep:] = np.nan
        self._n = keep
        self._stride *= 2

    def __len__(self) -> int:
        return self._n

    def view(self) -> History:
        """Read-only copies of what was recorded (cached until the next add)."""
        if self._cache is None:
            n = self._n
            cut = lambda a: frozen(a[:n].copy())
            c = self._cols
            self._cache = History(cut(c["step"]), cut(c["loss"]), cut(c["grad_norm"]), cut(c["update_norm"]),
                                  tuple(cut(a) for a in self._lr), cut(c["val_loss"]), cut(c["val_accuracy"]))
            self._path = frozen(np.stack([c["x"][:n], c["y"][:n]], axis=1)) if self._has_xy and n else None
        return self._cache

    def path(self) -> np.ndarray | None:
        self.view()
        return self._path

    # saving with a session: plain arrays
    def to_arrays(self) -> dict:
        h = self.view()
        out = {"step": h.step, "loss": h.loss, "grad_norm": h.grad_norm, "update_norm": h.update_norm,
               "val_loss": h.val_loss, "val_accuracy": h.val_accuracy,
               "stride": np.array([self._stride, self._offered])}
        for g, s in enumerate(h.lr):
            out[f"lr{g}"] = s
        if self.path() is not None:
            out["path"] = self.path()
        return out

    @classmethod
    def from_arrays(cls, d: dict) -> "HistoryRecorder":
        rec = cls()
        steps = np.asarray(d.get("step", np.zeros(0)), dtype=np.float64)
        n = min(len(steps), rec.capacity - 1)
        rec._n = n
        for k in ("step", "loss", "grad_norm", "update_norm", "val_loss", "val_accuracy"):
            if k in d:
                rec._cols[k][:n] = np.asarray(d[k], dtype=np.float64)[:n]
        lrs = sorted((k for k in d if k.startswith("lr")), key=lambda k: int(k[2:]))
        for k in lrs:
            col = np.full(rec.capacity, np.nan)
            col[:n] = np.asarray(d[k], dtype=np.float64)[:n]
            rec._lr.append(col)
        path = d.get("path")
        if path is not None and len(path) == len(steps):
            rec._cols["x"][:n] = np.asarray(path)[:n, 0]
            rec._cols["y"][:n] = np.asarray(path)[:n, 1]
            rec._has_xy = True
        if "stride" in d:
            rec._stride, rec._offered = int(d["stride"][0]), int(d["stride"][1])
        return rec
