"""Bounded per-step series: every step recorded, thinned into buckets that keep min/max/mean.

All columns of a branch (loss, norms, validation metrics, lr per group, update/weight
ratio per group) share one grid of at most ``capacity`` buckets. Bucket ``i`` covers
steps ``origin + 1 + i*width .. origin + (i+1)*width`` (``origin``: 0, or the step a resumed
checkpoint starts at). Until the grid is full a bucket is one step;
then neighbours merge in pairs and each bucket covers twice the steps (counts and sums
add, min/max combine). So the curves always run from the first step to now, with an
envelope where a bucket holds several steps, as TensorBoard draws long runs. A value
may be missing at a step (a norm that was not measured): a bucket averages what it got.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .snapshot import History, frozen

CAPACITY = 8192  # buckets per branch
# seconds a running frame's curves may lag its step: rebuilding and sending the whole grid (up to
# 8,192 points of about 14 columns) was most of a small problem's frame, and the window redraws
# its curves at most 5 times a second while running (app.main_window.SLOW_HZ) while the step and
# the tensors go at the frame rate; at 0.1 s every other rebuild went undrawn (0.55 ms each, a
# seventh of an MLP's snapshot time)
FRAME_AGE = 0.2
_STATS = (("count", 0.0, np.add), ("sum", 0.0, np.add), ("min", np.inf, np.minimum), ("max", -np.inf, np.maximum))


class SeriesSet:
    """The curves of one branch. ``add`` takes steps in increasing order."""

    def __init__(self, capacity: int = CAPACITY, origin: int = 0):
        self.capacity = capacity
        self.origin = origin  # the step before the first one recorded
        self.width = 1
        self.n = 0  # buckets in use
        self.cols: dict[str, dict[str, np.ndarray]] = {}
        self.path: list[tuple[int, float, float]] = []  # (step, x, y) of a 2-number objective
        self.last_step = 0
        self._view: History | None = None
        self._shown: tuple | None = None  # (time, History) of the last view() built
        self._path: tuple | None = None  # (time, version, array) of the last path_array()
        self._path_version = 0  # counts add_xy calls
        # view()'s derived columns (mean, low, high) over the whole grid, valid below _low: a
        # frame then recomputes the buckets that changed (the last few), not all of them
        self._derived: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._low = 0

    def _col(self, name: str) -> dict[str, np.ndarray]:
        c = self.cols.get(name)
        if c is None:
            c = self.cols[name] = {k: np.full(self.capacity, fill) for k, fill, _ in _STATS}
        return c

    def add(self, step: int, values: dict) -> None:
        """Record ``values`` (name -> float or None) for ``step``."""
        i = (step - self.origin - 1) // self.width
        while i >= self.capacity:
            self._merge()
            i = (step - self.origin - 1) // self.width
        if i >= self.n:
            self.n = i + 1
        self._low = min(self._low, i)
        for name, v in values.items():
            if v is None or math.isnan(v):
                continue
            c = self._col(name)
            if math.isfinite(v):
                c["count"][i] += 1
                c["sum"][i] += v
            if v < c["min"][i]:
                c["min"][i] = v
            if v > c["max"][i]:
                c["max"][i] = v
        self.last_step = max(self.last_step, step)
        self._view = None

    def add_many(self, steps, rows) -> None:
        """``add`` for many steps at once: one dict of values per step."""
        names = {k for r in rows for k in r}
        self.add_columns(steps, {k: [r.get(k) for r in rows] for k in names})

    def add_columns(self, steps, cols: dict) -> None:
        """``add`` for many steps at once (increasing): ``cols`` maps a name to one value per step
        (None where there is none); one vectorised pass per column."""
        if not len(steps):
            return
        steps = np.asarray(steps, np.int64)
        while (int(steps[-1]) - self.origin - 1) // self.width >= self.capacity:
            self._merge()
        idx = (steps - self.origin - 1) // self.width
        self.n = max(self.n, int(idx[-1]) + 1)
        self._low = min(self._low, int(idx[0]))
        for name, values in cols.items():
            vals = np.array([np.nan if v is None else v for v in values], np.float64)
            seen = ~np.isnan(vals)
            if not seen.any():
                continue
            c = self._col(name)
            i, v = idx[seen], vals[seen]
            fin = np.isfinite(v)
            np.add.at(c["count"], i[fin], 1.0)
            np.add.at(c["sum"], i[fin], v[fin])
            np.minimum.at(c["min"], i, v)
            np.maximum.at(c["max"], i, v)
        self.last_step = max(self.last_step, int(steps[-1]))
        self._view = None

    def add_constant(self, first: int, last: int, values: dict) -> None:
        """The same value at every step from ``first`` to ``last`` (an lr no scheduler changes)."""
        if last < first:
            return
        while (last - self.origin - 1) // self.width >= self.capacity:
            self._merge()
        w = self.width
        b0, b1 = (first - self.origin - 1) // w, (last - self.origin - 1) // w
        buckets = np.arange(b0, b1 + 1)
        lo = np.maximum(self.origin + buckets * w + 1, first)
        hi = np.minimum(self.origin + (buckets + 1) * w, last)
        counts = (hi - lo + 1).astype(np.float64)
        self.n = max(self.n, b1 + 1)
        self._low = min(self._low, b0)
        for name, v in values.items():
            if v is None or math.isnan(v):
                continue
            c = self._col(name)
            if math.isfinite(v):
                c["count"][b0:b1 + 1] += counts
                c["sum"][b0:b1 + 1] += counts * v
            c["min"][b0:b1 + 1] = np.minimum(c["min"][b0:b1 + 1], v)
            c["max"][b0:b1 + 1] = np.maximum(c["max"][b0:b1 + 1], v)
        self.last_step = max(self.last_step, last)
        self._view = None

    def add_xy(self, step: int, x: float, y: float) -> None:
        self.path.append((step, x, y))
        if len(self.path) > 2 * self.capacity:
            self.path = self.path[::2]
        self._path_version += 1

    def _merge(self) -> None:
        """Halve the resolution: bucket pairs (2k, 2k+1) become bucket k."""
        n, half = self.n, (self.n + 1) // 2
        for c in self.cols.values():
            for k, fill, op in _STATS:
                a = c[k]
                head = a[:2 * half].copy()
                if 2 * half > n:
                    head[n:] = fill
                a[:half] = op(head[0::2], head[1::2])
                a[half:] = fill
        self.width *= 2
        self.n = half
        self._low = 0

    def truncated(self, step: int) -> "SeriesSet":
        """A copy up to ``step``: exact while a bucket is one step; else to the bucket holding it."""
        out = SeriesSet(self.capacity, self.origin)
        out.width = self.width
        keep = min(self.n, max(0, (step - self.origin - 1) // self.width + 1)) if step > self.origin else 0
        out.n = keep
        for name, c in self.cols.items():
            oc = out._col(name)
            for k, _, _ in _STATS:
                oc[k][:keep] = c[k][:keep]
        out.path = [p for p in self.path if p[0] <= step]
        out.last_step = min(self.last_step, step)
        return out

    def column(self, name: str):
        """(mean, min, max) of a column over the buckets in use; NaN where a bucket has nothing."""
        n = self.n
        c = self.cols.get(name)
        if c is None:
            nan = np.full(n, np.nan)
            return nan, nan, nan
        return _stats(c, 0, n)

    def last_mean(self, name: str) -> float | None:
        """The newest bucket's mean of a column (what its curve ends on, without building it)."""
        c = self.cols.get(name)
        if c is None:
            return None
        counts = c["count"][:self.n]
        seen = np.flatnonzero(counts > 0)
        return float(c["sum"][seen[-1]] / counts[seen[-1]]) if seen.size else None

    def steps(self) -> np.ndarray:
        """The x of each bucket: its step (one-step buckets) or its last step."""
        return self.origin + (np.arange(self.n, dtype=np.float64) + 1) * self.width

    def invalidate(self) -> None:
        """Columns were changed or removed directly: the next view recomputes everything."""
        self._view = None
        self._shown = self._path = None
        self._low = 0
        self._derived.clear()

    def _groups(self, prefix: str) -> int:
        """How many groups' ``prefix{g}`` series there are: 1 + the highest ``g`` recorded."""
        return 1 + max((int(k[len(prefix):]) for k in self.cols
                        if k.startswith(prefix) and k[len(prefix):].isdigit()), default=-1)

    def _derive(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``column(name)`` as fresh arrays, recomputing only the buckets from ``_low`` on."""
        n, low = self.n, self._low
        c = self.cols.get(name)
        if c is None:
            nan = np.full(n, np.nan)
            return nan, nan.copy(), nan.copy()
        d = self._derived.get(name)
        if d is None:
            low = 0
            d = self._derived[name] = tuple(np.full(self.capacity, np.nan) for _ in range(3))
        if low < n:
            d[0][low:n], d[1][low:n], d[2][low:n] = _stats(c, low, n)
        return d[0][:n].copy(), d[1][:n].copy(), d[2][:n].copy()  # frames keep theirs unchanged

    def view(self, max_age: float = 0.0) -> History:
        """Read-only arrays for the curves (cached until the next add). ``max_age`` (a running
        frame's): the last view built, if it is younger than that many seconds."""
        if self._view is None and max_age > 0 and self._shown is not None and \
                time.perf_counter() - self._shown[0] < max_age:
            return self._shown[1]
        if self._view is None:
            derived = {}

            def get(name):
                if name not in derived:
                    derived[name] = self._derive(name)
                return derived[name]

            def mean(name):
                return frozen(get(name)[0])

            def env(name):
                _, lo, hi = get(name)
                return frozen(lo), frozen(hi)
            # one series a group, by its index: a group with none recorded (the update ratio of a
            # tensor that stays 0 is 0/0 at every step) is all NaN, and the groups after it keep
            # their places (they had been left out of the view)
            lrs = [mean(f"lr{g}") for g in range(self._groups("lr"))]
            ratios = [mean(f"update_ratio{g}") for g in range(self._groups("update_ratio"))]
            loss_lo, loss_hi = env("loss")
            g_lo, g_hi = env("grad_norm")
            u_lo, u_hi = env("update_norm")
            self._view = History(frozen(self.steps()), mean("loss"), mean("grad_norm"), mean("update_norm"),
                                 tuple(lrs), mean("val_loss"), mean("val_accuracy"),
                                 loss_min=loss_lo, loss_max=loss_hi, grad_norm_min=g_lo, grad_norm_max=g_hi,
                                 update_norm_min=u_lo, update_norm_max=u_hi, update_ratio=tuple(ratios),
                                 bucket=self.width)
            self._low = self.n
            self._shown = (time.perf_counter(), self._view)
        return self._view

    def path_array(self, max_age: float = 0.0) -> np.ndarray | None:
        """The 2-number objective's path as a (k, 2) array; ``max_age`` as for ``view``."""
        if not self.path:
            return None
        now = time.perf_counter()
        last = self._path
        if last is not None and (last[1] == self._path_version or max_age > 0 and now - last[0] < max_age):
            return last[2]
        a = frozen(np.array([(x, y) for _, x, y in self.path], np.float64))
        self._path = (now, self._path_version, a)
        return a

    # ----- saving: plain arrays -----

    def to_arrays(self) -> dict:
        n = self.n
        out = {"grid": np.array([self.width, self.n, self.capacity, self.last_step, self.origin], np.int64)}
        for name, c in self.cols.items():
            for k, _, _ in _STATS:
                out[f"{name}/{k}"] = c[k][:n].copy()
        if self.path:
            out["path"] = np.array(self.path, np.float64)
        return out

    @classmethod
    def from_arrays(cls, d: dict) -> "SeriesSet":
        grid = [int(v) for v in np.asarray(d["grid"]).tolist()]
        if len(grid) not in (4, 5):
            raise ValueError("the saved curves are damaged")
        width, n, capacity, last, origin = grid + [0] * (5 - len(grid))  # files before resuming: origin 0
        if not (1 <= capacity <= 1 << 20 and width >= 1 and 0 <= n <= capacity and origin >= 0):
            raise ValueError("the saved curves are damaged")
        out = cls(capacity, origin)
        out.width, out.n, out.last_step = width, n, last
        for key, v in d.items():
            name, _, k = key.partition("/")
            if k:
                a = np.asarray(v, np.float64)
                if a.shape != (n,) or k not in ("count", "sum", "min", "max"):
                    raise ValueError("the saved curves are damaged")
                out._col(name)[k][:n] = a
        if "path" in d:
            out.path = [(int(s), float(x), float(y)) for s, x, y in np.asarray(d["path"]).tolist()]
        return out


def _stats(c: dict, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, min, max) of buckets ``a`` to ``b`` of a column; NaN where a bucket has nothing."""
    count = c["count"][a:b]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, c["sum"][a:b] / np.maximum(count, 1), np.nan)
    seen = np.isfinite(c["min"][a:b]) | (c["max"][a:b] > c["min"][a:b])
    return mean, np.where(seen, c["min"][a:b], np.nan), np.where(seen, c["max"][a:b], np.nan)


def _num(v) -> float:
    return np.nan if v is None else float(v)
