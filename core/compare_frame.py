"""The frame of a comparison: each run's Snapshot plus the series measured between runs.

Plain, read-only data like ``core.snapshot`` (numpy, no torch), so the runner process can
send it and widgets/ can draw it. A comparison frame has the fields the runners set on
every frame (``seq``, ``running``, ``error``, ``batch_done``, ...), so the same runner
loop publishes either kind.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .snapshot import FRAME_VERSION, History, RunError, Snapshot, frozen


@dataclass(frozen=True)
class CrossSeries:
    """Per-step series between two runs (by run id): the distance ||theta_a - theta_b|| between
    their parameter vectors after the step, and the cosine between the two updates of the step.
    NaN where a step was not measured (measuring shares a small budget of the run's time)."""

    step: np.ndarray
    pairs: tuple[tuple[int, int], ...] = ()
    distance: tuple[np.ndarray, ...] = ()
    cosine: tuple[np.ndarray, ...] = ()
    bucket: int = 1  # steps per point

    @staticmethod
    def empty() -> "CrossSeries":
        return CrossSeries(frozen(np.zeros(0)))

    def between(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(distance, cosine) of runs ``a`` and ``b`` (in either order), or None."""
        for k, (x, y) in enumerate(self.pairs):
            if {x, y} == {a, b}:
                return self.distance[k], self.cosine[k]
        return None


@dataclass(frozen=True)
class CompareHistory:
    """The curves of every run (in the frame's run order) and the series between runs. A new
    object only when something changed, so the pipe carries and the window redraws it only then."""

    runs: tuple[History, ...]
    cross: CrossSeries


@dataclass(frozen=True)
class RunFrame:
    """One run of the comparison as it stands."""

    id: int
    label: str
    snapshot: Snapshot  # its history is left empty: the run's curves are in the frame's history
    halted: str = ""  # why this run stopped ("" while it steps with the others)
    joined: int = 0  # the comparison's step when it was added (it started from the runs' first step and caught up)


@dataclass(frozen=True)
class ComparisonFrame:
    """Everything the compare window draws for one moment of a comparison."""

    seq: int
    step: int
    runs: tuple[RunFrame, ...]
    history: CompareHistory
    running: bool = False
    paused_reason: str | None = None
    error: RunError | None = None
    steps_per_second: float = 0.0
    batch_done: int = 0
    batch_total: int = 0
    rate_limit: float = 0.0
    objective: str | None = None  # the problem's analytic objective, if any
    condition: float = 10.0  # its condition number (what its landscape is drawn with)
    start: int = 0  # the runs' first step is the one after (a resumed checkpoint's step, else 0)
    version: int = FRAME_VERSION

    def run(self, run_id: int) -> RunFrame | None:
        for r in self.runs:
            if r.id == run_id:
                return r
        return None

    def history_of(self, run_id: int) -> History | None:
        for r, h in zip(self.runs, self.history.runs):
            if r.id == run_id:
                return h
        return None
