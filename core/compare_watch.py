"""Series between the runs of a comparison: how far apart their parameters are, and whether
their updates point the same way.

For every pair of runs (a, b) stepping together, after a lockstep step:

- ``distance`` = ||theta_a - theta_b||, over every parameter the runs share (the problem's
  own tensors, flattened in one order), computed elementwise (``torch.cdist`` without the
  matrix-product shortcut, which loses the small distances between runs that have just
  parted to cancellation);
- ``cosine`` = <u_a, u_b> / (||u_a|| ||u_b||) with u the change that step made.

Measuring copies every run's parameters, so it takes a small share of the run's time
(``MEASURE_BUDGET``, like the observer's norms, with its floor ``floor_every``) and is
forced at the end of a Step N.
Nothing here waits on the device: results stay tensors and are read back in one transfer
every ``check_every`` steps or at a flush, like ``core.observer``.
"""
from __future__ import annotations

import time

import torch

from .history import Budget
from .observer import GPU_CHECK_EVERY, MEASURE_BUDGET, floor_allowed, floor_every
from .series import SeriesSet
from .snapshot import frozen
from .compare_frame import CrossSeries

CPU_CHECK_EVERY = 64  # steps between readbacks on the CPU (reading is cheap; fewer Python rows)


def column(kind: str, a: int, b: int) -> str:
    """A pair's column in the series: ``d3-5`` (distance), ``c3-5`` (cosine); ``a < b``."""
    return f"{kind}{min(a, b)}-{max(a, b)}"


def parse_column(name: str) -> tuple[str, int, int] | None:
    a, sep, b = name[1:].partition("-")
    if name[:1] not in ("d", "c") or not sep or not a.isdigit() or not b.isdigit() or int(a) >= int(b):
        return None
    return name[0], int(a), int(b)


def flat(params: list[torch.Tensor]) -> torch.Tensor:
    """One vector of ``params`` (a copy: the step that follows does not change it)."""
    with torch.no_grad():
        return torch.cat([p.detach().reshape(-1) for p in params])


class CrossWatch:
    """Measures the pairs' series around each lockstep step and keeps them in a SeriesSet."""

    def __init__(self, budget: float = MEASURE_BUDGET, origin: int = 0):
        self.series = SeriesSet(origin=origin)  # origin: the step the runs start at (a resumed checkpoint's)
        self.force_next = False
        self.check_every = CPU_CHECK_EVERY
        self._budget = Budget(budget)
        self._due = False
        self._unmeasured = 0  # lockstep steps since the last measured one
        self._last: dict[int, torch.Tensor] = {}  # run id -> its parameters after step _last_step
        self._last_step = -1
        self._raw: list = []  # (step, ids, distance matrix, cosine matrix), not read yet
        self._view: CrossSeries | None = None
        self._viewed = None

    def reset_budget(self) -> None:
        self._budget.reset()

    def invalidate(self) -> None:
        """Something other than a step changed the parameters (an edit, a run joined): the next
        update is measured from a fresh copy."""
        self._last, self._last_step = {}, -1

    def due(self, n_runs: int, step: int) -> bool:
        """Whether lockstep step ``step + 1`` is measured (then call ``before`` and ``after``)."""
        now = time.perf_counter()
        # the time budget, with the observer's floor: a point at least every so many steps, so a
        # fast run's distance curve is not a few far-apart points joined by straight lines
        self._due = n_runs >= 2 and (self.force_next or self._budget.due(now)
                                     or (self._unmeasured >= floor_every(step + 1) - 1
                                         and floor_allowed(self._budget, now, step + 1)))
        self.force_next = False
        if self._due:
            self._unmeasured = 0
        else:
            self._unmeasured += 1
            self._last_step = -1  # the parameters move on unseen
        return self._due

    def plan(self, n_runs: int, step: int, k: int, at_most: int) -> tuple[list[int], int]:
        """The lockstep steps among ``step + 1`` .. ``step + k`` to measure while the runs take
        them in turns (Comparison.advance_many), and how many steps the turn then takes: the
        first step, if the time budget (or a request) asks for one, and the floor's points while
        it is allowed, at most ``at_most`` of them (the runs' parameters are kept at each until
        the turn ends; the turn ends at the last one when there would be more)."""
        if n_runs < 2:
            return [], k
        now = time.perf_counter()
        chosen = [step + 1] if self.force_next or self._budget.due(now) else []
        self.force_next = False
        unmeasured = self._unmeasured
        for s in range(step + 1, step + k + 1):
            if chosen and chosen[-1] == s:
                unmeasured = 0
            elif unmeasured >= floor_every(s) - 1 and floor_allowed(self._budget, now, s):
                if len(chosen) == max(1, at_most):
                    return chosen, chosen[-1] - step
                chosen.append(s)
                unmeasured = 0
            else:
                unmeasured += 1
        return chosen, k

    def keep(self, kept: dict, run_id: int, step: int, params: list[torch.Tensor]) -> None:
        """During a turn: ``run_id``'s parameters as they stand at ``step`` (a copy, into ``kept``)."""
        t0 = time.perf_counter()
        kept.setdefault(run_id, {})[step] = flat(params)
        self._budget.charge(time.perf_counter() - t0)

    def after_turn(self, kept: dict, chosen: list[int], step: int, end: int) -> None:
        """After a turn from lockstep step ``step`` to ``end`` (fewer steps than planned when a run
        stopped): each chosen step up to ``end`` from the parameters ``kept`` at it and at the step
        before, over the runs that stood at both (a run that stopped at a step is not in it)."""
        t0 = time.perf_counter()
        done = [s for s in chosen if s <= end]
        for s in done:
            self._last = {i: at[s - 1] for i, at in kept.items() if s - 1 in at and s in at}
            self._measure({i: kept[i][s] for i in self._last}, s)
        self._unmeasured = end - done[-1] if done else self._unmeasured + end - step
        if not done or done[-1] != end:
            self._last, self._last_step = {}, -1  # the parameters moved on unseen
        self._budget.charge(time.perf_counter() - t0)

    def before(self, runs: dict[int, list[torch.Tensor]], step: int) -> None:
        """Before lockstep step ``step + 1``: each stepping run's parameters (run id -> tensors)."""
        t0 = time.perf_counter()  # the budget is charged this and after()'s own time, not the steps'
        if self._last_step != step or not set(runs) <= set(self._last):
            self._last = {i: flat(ps) for i, ps in runs.items()}
        self._last_step = step
        on_cpu = all(v.device.type == "cpu" for v in self._last.values())
        self.check_every = CPU_CHECK_EVERY if on_cpu else GPU_CHECK_EVERY
        self._budget.charge(time.perf_counter() - t0)

    def after(self, runs: dict[int, list[torch.Tensor]], step: int) -> None:
        """After lockstep step ``step``: the runs that took it (and still step)."""
        t0 = time.perf_counter()
        self._measure({i: flat(runs[i]) for i in runs if i in self._last}, step)
        self._budget.charge(time.perf_counter() - t0)

    def _measure(self, now: dict[int, torch.Tensor], step: int) -> None:
        """The pairs' distances (parameters ``now``) and cosines (their change from ``_last``)."""
        self._due = False
        ids = sorted(now)
        devices = {v.device for v in now.values()} | {self._last[i].device for i in ids}
        if len(ids) >= 2 and len(devices) == 1 and len({v.numel() for v in now.values()}) == 1:
            with torch.no_grad():
                t = torch.stack([now[i] for i in ids])
                u = t - torch.stack([self._last[i] for i in ids])
                dist = torch.cdist(t[None], t[None], compute_mode="donot_use_mm_for_euclid_dist")[0]
                gram = u @ u.T
                norm = gram.diagonal().clamp_min(0).sqrt()
                cos = gram / (norm[:, None] * norm[None, :])
            self._raw.append((step, ids, dist, cos))
        self._last, self._last_step = now, step
        if len(self._raw) >= self.check_every:
            self.resolve()

    def resolve(self) -> None:
        """Read what is pending (one transfer) into the series."""
        raw, self._raw = self._raw, []
        if not raw:
            return
        values = torch.cat([torch.cat([d.reshape(-1), c.reshape(-1)]).double() for _, _, d, c in raw]).cpu().tolist()
        steps, rows, at = [], [], 0
        for step, ids, _, _ in raw:
            n = len(ids)
            d, c = values[at:at + n * n], values[at + n * n:at + 2 * n * n]
            at += 2 * n * n
            row = {}
            for x in range(n):
                for y in range(x + 1, n):
                    row[column("d", ids[x], ids[y])] = d[x * n + y]
                    row[column("c", ids[x], ids[y])] = c[x * n + y]
            steps.append(step)
            rows.append(row)
        self.series.add_many(steps, rows)

    def forget(self, run_id: int) -> None:
        """Drop a removed run's pairs."""
        self.resolve()
        for name in list(self.series.cols):
            p = parse_column(name)
            if p is not None and run_id in p[1:]:
                del self.series.cols[name]
        self.series.invalidate()
        self._last.pop(run_id, None)

    def view(self) -> CrossSeries:
        """The series as plain data (a new object only when they changed)."""
        s = self.series
        if self._view is not None and self._viewed == (s.n, s.width, s.last_step, len(s.cols)):
            return self._view
        pairs = sorted({p[1:] for p in map(parse_column, s.cols) if p is not None})
        self._view = CrossSeries(frozen(s.steps()), tuple(pairs),
                                 tuple(frozen(s.column(column("d", a, b))[0]) for a, b in pairs),
                                 tuple(frozen(s.column(column("c", a, b))[0]) for a, b in pairs), s.width)
        self._viewed = (s.n, s.width, s.last_step, len(s.cols))
        return self._view
