"""Measure the steps a run skipped, afterwards: the branch replayed on an engine of its own.

While a run goes, norms and histograms are measured within a small share of its time
(``core.observer``'s budget): on a small problem one step in tens or hundreds, so the tensor
panel's distributions over time and the curves' norms have gaps ("3 of 200 columns measured").
A debugger can do better than a tracker here: every step of the timeline can be had again
exactly (rewinding does it: the nearest checkpoint, then the journal). ``measure_skipped``
replays the current branch from the first step whose bucket is incomplete to the branch's
end on a separate engine whose observer measures every step, and the buckets the replay
covers take its histograms and norms (the same bins and grid). The session itself (its
position, engine, undo history) is untouched, and the numbers are the run's own: the replay
is the same computation, bit for bit, as a rewind's.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .distributions import Distributions
from .observer import Observer
from .replay import engine_before, generators_kept
from .series import SeriesSet
from .spec import Step

MEASURED = ("grad_norm", "update_norm")  # the series columns the budget thins (and update_ratio<g>)


@dataclass(frozen=True)
class Remeasured:
    first: int  # the first step replayed (0: nothing was missing)
    last: int  # the last one (its bucket complete)
    seconds: float
    end: int = 0  # the branch's last step

    @property
    def steps(self) -> int:
        return self.last - self.first + 1 if self.first else 0

    @property
    def done(self) -> bool:
        """Nothing is left to measure (else call again: it goes on from where this stopped)."""
        return not self.first or self.last >= self.end

    @property
    def message(self) -> str:
        if not self.first:
            return "Every step is measured already"
        return (f"Measured steps {self.first:,}-{self.last:,} by replaying them "
                f"({self.steps:,} steps in {self.seconds:.1f} s)")


def _bucket_steps(origin: int, width: int, n: int, end: int) -> np.ndarray:
    """How many steps each of the first ``n`` buckets holds, the last one ending at ``end``."""
    lo = origin + np.arange(n) * width
    return np.clip(end - lo, 0, width)


def _first_short(counts: list, origin: int, width: int, n: int, end: int) -> int | None:
    """The first step of the first of ``n`` buckets whose count (the most of ``counts``) is short
    of the steps it holds; else the step after the last bucket if the branch goes on past it."""
    got = np.max(np.stack([c[:n] for c in counts]), axis=0)
    short = np.nonzero(got < _bucket_steps(origin, width, n, end))[0]
    if len(short):
        return origin + int(short[0]) * width + 1
    covered = origin + n * width
    return covered + 1 if covered < end else None


def first_unmeasured_dists(d: Distributions, end: int) -> int | None:
    """The first step of the first bucket whose histograms miss a step, or None."""
    if not d.samples or d.n == 0:
        return d.origin + 1 if end > d.origin else None
    return _first_short(list(d.samples.values()), d.origin, d.width, d.n, end)


def _measured_names(s: SeriesSet) -> list[str]:
    return [n for n in s.cols if n in MEASURED or n.startswith("update_ratio")]


def first_unmeasured_series(s: SeriesSet, end: int) -> int | None:
    """The first step of the first bucket whose norms miss a step, or None (nothing measured
    at all: the norms were never asked for, e.g. a run without gradients, so nothing to fill)."""
    names = _measured_names(s)
    if not names or s.n == 0:
        return None
    return _first_short([s.cols[n]["count"] for n in names], s.origin, s.width, s.n, end)


def measure_skipped(session, seconds: float | None = None, cancelled=lambda: False) -> Remeasured:
    """Fill the current branch's skipped measurements (histograms and norms) by replaying it;
    see the module's note. With ``seconds``, it stops at the first bucket boundary after about
    that long (the window asks in such slices: the runner answers its other commands between
    them, and the user can stop); ``done`` says whether anything is left. A bucket is filled
    only when the replay measured all its steps. The global generators are left as they were."""
    with generators_kept():
        return _measure_skipped(session, seconds, cancelled)


def _measure_skipped(session, seconds, cancelled) -> Remeasured:
    session.flush()
    tl = session.timeline
    b = tl.branch
    end = b.end_step
    firsts = [f for f in (first_unmeasured_dists(b.dists, end), first_unmeasured_series(b.series, end))
              if f is not None and f <= end]
    if not firsts:
        return Remeasured(0, 0, 0.0)
    first = max(min(firsts), b.start_step + 1)
    t0 = time.perf_counter()
    width, origin = b.dists.width, b.dists.origin  # its buckets' ends are the series' too (origin, 2^k)

    def stop() -> bool:
        if cancelled():
            return True
        return (eng.step_count - origin) % width == 0 and time.perf_counter() > deadline
    rep = _Replayer(tl, b, first)
    eng = rep.eng
    # the slice's time starts once the engine stands there (the replay from the nearest
    # checkpoint is not progress: counted in, a short slice could end before its first bucket)
    deadline = math.inf if seconds is None else time.perf_counter() + seconds
    obs = Observer()
    obs.set_breakpoints(())
    obs.every_step = True
    obs.dists = Distributions(b.dists.capacity, b.dists.origin)
    obs.dists.width = b.dists.width
    obs.series = SeriesSet(b.series.capacity, b.series.origin)
    obs.series.width = b.series.width
    obs.lr_each_step = eng.scheduler is not None
    eng.observer = obs
    obs.attach(eng.optimizer)
    try:
        while eng.step_count < end:
            metrics = rep.step()
            obs.end_step(eng.step_count, eng.loss, metrics, eng)
            if stop():
                break
        obs.resolve()
        obs.flush_series()
    finally:
        obs.detach()
    last = eng.step_count
    _take_dists(b.dists, obs.dists, first_unmeasured_dists(b.dists, end), last, end)
    _take_series(b.series, obs.series, first_unmeasured_series(b.series, end), last, end)
    return Remeasured(first, last, time.perf_counter() - t0, end)


def _covered(origin: int, width: int, first: int | None, last: int, end: int) -> range:
    """The buckets from the one starting at ``first`` whose every step the replay (to ``last``)
    measured: a bucket ending after ``last`` only if the branch ends inside it there."""
    if first is None:
        return range(0)
    b0 = (first - origin - 1) // width
    b1 = (last - origin - 1) // width + 1  # past the bucket holding ``last``
    if last < end and (last - origin) % width:
        b1 -= 1  # cancelled inside a bucket: that one stays as it was
    return range(b0, max(b0, b1))


def _take_dists(d: Distributions, got: Distributions, first, last: int, end: int) -> None:
    r = _covered(d.origin, d.width, first, last, end)
    if not r or got.width != d.width:
        return
    for key, a in got.data.items():
        if key not in d.data:
            d.data[key] = np.zeros_like(a)
            d.samples[key] = np.zeros_like(got.samples[key])
        d.data[key][r.start:r.stop] = a[r.start:r.stop]
        d.samples[key][r.start:r.stop] = got.samples[key][r.start:r.stop]
    d.n = max(d.n, r.stop)


def _take_series(s: SeriesSet, got: SeriesSet, first, last: int, end: int, names=None) -> None:
    r = _covered(s.origin, s.width, first, last, end)
    if not r or got.width != s.width:
        return
    for name in (_measured_names(got) if names is None else names(got)):
        dst, src = s._col(name), got.cols[name]
        for k in src:
            dst[k][r.start:r.stop] = src[k][r.start:r.stop]
    s.n = max(s.n, r.stop)
    s.invalidate()


# ----- a comparison: each run's own, then the series between the runs -----

def _cross_names(s: SeriesSet) -> list[str]:
    from .compare_watch import parse_column
    return [n for n in s.cols if parse_column(n) is not None]


def first_unmeasured_cross(s: SeriesSet, end: int) -> int | None:
    """The first step of the first bucket whose distance/cosine between runs miss a step."""
    names = [n for n in _cross_names(s) if n.startswith("d")]
    if s.n == 0 or not names:
        return s.origin + 1 if end > s.origin else None
    return _first_short([s.cols[n]["count"] for n in names], s.origin, s.width, s.n, end)


def _run_skipped(run, seconds, cancelled=None) -> Remeasured:
    """(Where a comparison's run lives: Comparison.in_run; ``cancelled`` stays behind.) Its own
    skipped measurements."""
    with generators_kept():
        return _measure_skipped(run.session, seconds, cancelled or (lambda: False))


def _cross_start(run, first: int) -> int | None:
    """(Where the run lives.) A replayer of its branch from step ``first`` (kept on the run for
    ``_cross_block``); the number of elements it compares, or None if its branch ends before."""
    tl = run.session.timeline
    if tl.branch.end_step < first:
        run.cross_replay = None
        return None
    run.cross_replay = _Replayer(tl, tl.branch, first)
    return run.cross_replay.shared().numel()


def _cross_block(run, at: int, stop: int) -> dict:
    """(Where the run lives.) Its replay's steps ``at + 1`` .. ``stop`` (to where it stopped): for
    each, the shared parameters before and after."""
    rep, out = run.cross_replay, {}
    with generators_kept():
        for s in range(at + 1, min(stop, rep.end) + 1):
            b = rep.shared()
            try:
                rep.step()
            except Exception:  # noqa: BLE001 - the step the run failed at: it stopped there
                rep.end = s - 1
                break
            out[s] = (b, rep.shared())
    return out


class _Replayer:
    """Branch ``b`` of ``tl`` replayed from step ``first`` on an engine of its own, a step at a
    time (the actions recorded between two steps applied before the second)."""

    def __init__(self, tl, b, first: int):
        self.end = b.end_step
        self.eng = engine_before(tl, b.id, first)
        self.entries = b.journal.entries
        self.j = next(i for i, (s0, a) in enumerate(self.entries) if isinstance(a, Step) and s0 < first <= s0 + a.n)

    def shared(self) -> torch.Tensor:
        """The problem's own parameters (not those a branch added), as one vector (a copy)."""
        from .compare_watch import flat
        e = self.eng
        added = {t.name for t in e.added_tensors()}
        return flat([e.params[n] for n in e.names if n not in added])

    def step(self) -> dict:
        """The next step (its evaluation's metrics, if one ran)."""
        e, s = self.eng, self.eng.step_count + 1
        while True:
            s0, a = self.entries[self.j]
            if isinstance(a, Step):
                if s0 < s <= s0 + a.n:
                    break
            else:
                e.apply(a)
            self.j += 1
        if e.step_count == e.spec.start_step:
            e.check_can_step()
        return e.step_once()


def measure_comparison(c, seconds: float | None = None, cancelled=lambda: False) -> Remeasured:
    """A comparison's skipped measurements: each run's own (``measure_skipped``), then the
    distance and cosine between the runs at every lockstep step: the runs replayed in turns of
    a block of steps each, their parameters kept before and after every step of the block.
    In slices of about ``seconds`` like ``measure_skipped``; the global generators are kept."""
    t0 = time.perf_counter()
    deadline = math.inf if seconds is None else t0 + seconds
    c.flush()
    with generators_kept():
        first_any = 0
        for r in c.runs:
            left = None if seconds is None else max(0.0, deadline - time.perf_counter())
            got = c.in_run(r.id, _run_skipped, left, None if r.remote else cancelled)
            first_any = first_any or got.first
            if not got.done:
                return Remeasured(got.first, got.last, time.perf_counter() - t0, got.end)
        got = _measure_cross(c, deadline, cancelled)
    first = first_any or got.first
    if not first:
        return Remeasured(0, 0, 0.0)
    return Remeasured(first, got.last if got.first else c.step_count, time.perf_counter() - t0,
                      got.end if got.first else c.step_count)


CROSS_BLOCK = 64  # steps each run replays in a row (at least one bucket)
CROSS_KEEP = 64 * 2 ** 20  # bytes of kept parameters a block may hold


def _measure_cross(c, deadline: float, cancelled) -> Remeasured:
    from .compare_watch import CrossWatch
    w = c.watch
    w.resolve()
    end = c.step_count
    first = first_unmeasured_cross(w.series, end)
    if first is None or len(c.runs) < 2:
        return Remeasured(0, 0, 0.0)
    t0 = time.perf_counter()
    width = w.series.width
    sizes = c.in_runs({r.id: (_cross_start, (first,)) for r in c.runs})  # each run replays where it lives
    reps = [rid for rid, n in sizes.items() if n is not None]
    deadline = max(deadline, time.perf_counter())  # from where the engines stand (as in _measure_skipped)
    numel = max((sizes[rid] for rid in reps), default=1)
    block = max(width, min(CROSS_BLOCK, CROSS_KEEP // max(1, 8 * numel * len(reps))) // width * width)
    got = CrossWatch(origin=w.series.origin)
    got.series.width = width
    got.check_every = 1 << 30  # read once, at the end
    at = first - 1
    while at < end:
        stop = min(end, at + block)
        before: dict = {}
        after: dict = {}
        done = c.in_runs({rid: (_cross_block, (at, stop)) for rid in reps})
        for rid in reps:
            for s, (b, a) in done[rid].items():
                before.setdefault(s, {})[rid] = b
                after.setdefault(s, {})[rid] = a
        for s in range(at + 1, stop + 1):
            got._last = before.get(s, {})
            got._measure(after.get(s, {}), s)
        at = stop
        if cancelled() or (time.perf_counter() > deadline and (at - w.series.origin) % width == 0):
            break
    got.resolve()
    _take_series(w.series, got.series, first, at, end, names=_cross_names)
    w._view = None
    return Remeasured(first, at, time.perf_counter() - t0, end)
