"""The timeline: what happened, as a tree of branches, each a spec plus a complete journal.

A branch starts from its spec at step 0, or at the step of the checkpoint its spec resumes
(``start_step``), (``parent`` None, or a rebuild of another
branch: an optimizer switch, a constructor edit, a new problem) or forks from its
parent at ``fork_step`` (it then shares the parent's journal up to there, copied in).
Its journal holds every action with the step count before it; steps are coalesced
(``Step(n)``). Positions are "right after step k" (``at(k)``) or a branch's head.

Checkpoints (``Checkpoints``) hold complete engine states every so many steps, within
a memory bound, thinned denser near each branch's head when the bound is hit. Going
to step k is: the nearest checkpoint at or before k, then replaying the journal.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .distributions import Distributions
from .series import SeriesSet
from .spec import SessionSpec, Step

CHECKPOINT_OVERHEAD = 4096  # bytes counted per checkpoint besides its tensors (Python objects)
MAX_CHECKPOINTS = 4096
DEFAULT_BUDGET = 512 * 2 ** 20


def branch_list(ids) -> str:
    """The branches a session has, for a sentence refusing one it has not: "it has branch 0",
    "it has branches 0, 1 and 3"."""
    ids = [str(i) for i in ids]
    if len(ids) == 1:
        return f"it has branch {ids[0]}"
    return f"it has branches {', '.join(ids[:-1])} and {ids[-1]}"


class Journal:
    """(step count before the action, action) entries; consecutive steps are one Step(n)."""

    def __init__(self, entries=()):
        self.entries: list[tuple[int, object]] = list(entries)

    def record(self, step_before: int, action) -> None:
        if isinstance(action, Step) and self.entries:
            s0, last = self.entries[-1]
            if isinstance(last, Step) and s0 + last.n == step_before:
                self.entries[-1] = (s0, Step(last.n + action.n))
                return
        self.entries.append((step_before, action))

    @property
    def end_step(self) -> int:
        if not self.entries:
            return 0
        s0, last = self.entries[-1]
        return s0 + last.n if isinstance(last, Step) else s0

    def actions(self) -> list:
        return [a for _, a in self.entries]

    def index_after(self, step: int) -> int:
        """The position "right after step ``step``", before the actions recorded at it: the number
        of whole entries applied (a Step that ``step`` falls inside counts as not whole)."""
        i = 0
        for s0, a in self.entries:
            if s0 >= step or (isinstance(a, Step) and s0 + a.n > step):
                break
            i += 1
        return i

    def prefix(self, step: int, index: int) -> list[tuple[int, object]]:
        """The entries that lead to position (``step``, ``index``): the first ``index`` entries,
        plus the part of the next one up to ``step`` if it is a Step that ``step`` falls inside."""
        out = list(self.entries[:index])
        if index < len(self.entries):
            s0, a = self.entries[index]
            if isinstance(a, Step) and s0 < step:
                out.append((s0, Step(step - s0)))
        return out

    def copy_prefix(self, step: int, index: int) -> "Journal":
        return Journal(self.prefix(step, index))


@dataclass
class Branch:
    """One line of history."""

    id: int
    spec: SessionSpec
    journal: Journal = field(default_factory=Journal)
    parent: int | None = None
    fork_step: int = 0  # the parent's step where this branch left it
    inherits: bool = False  # a fork (shares the parent's history up to fork_step) vs a rebuild
    reason: str = ""
    series: SeriesSet = field(default_factory=SeriesSet)
    dists: Distributions = field(default_factory=Distributions)
    last_loss: float | None = None
    threads: int = 0  # torch threads it ran with (reduction order on the CPU depends on it)
    created: float = field(default_factory=time.time)

    @property
    def start_step(self) -> int:
        """0, or the step of the checkpoint a resumed session starts at: its first step is this + 1."""
        return self.spec.start_step

    @property
    def end_step(self) -> int:
        return self.journal.end_step if self.journal.entries else self.start_step


@dataclass
class Checkpoint:
    step: int
    state: dict
    nbytes: int


class Checkpoints:
    """Engine states by (branch, step), bounded in memory; denser near each branch's head."""

    def __init__(self, budget: int = DEFAULT_BUDGET):
        self.budget = budget
        self.by_branch: dict[int, list[Checkpoint]] = {}
        self.used = 0

    def add(self, branch: int, step: int, state: dict, nbytes: int, heads: dict[int, int]) -> None:
        lst = self.by_branch.setdefault(branch, [])
        while lst and lst[-1].step >= step:  # a branch's checkpoints only grow (truncation removes)
            self.used -= lst.pop().nbytes + CHECKPOINT_OVERHEAD
        lst.append(Checkpoint(step, state, nbytes))
        self.used += nbytes + CHECKPOINT_OVERHEAD
        self._thin(heads)

    def count(self) -> int:
        return sum(len(v) for v in self.by_branch.values())

    def latest_step(self, branch: int) -> int:
        lst = self.by_branch.get(branch)
        return lst[-1].step if lst else 0

    def nearest(self, branch: int, step: int) -> Checkpoint | None:
        """The latest checkpoint of ``branch`` at or before ``step``."""
        best = None
        for c in self.by_branch.get(branch, ()):
            if c.step <= step:
                best = c
            else:
                break
        return best

    def truncate(self, branch: int, step: int) -> None:
        """Forget checkpoints of ``branch`` after ``step`` (its later history was dropped)."""
        lst = self.by_branch.get(branch, [])
        while lst and lst[-1].step > step:
            self.used -= lst.pop().nbytes + CHECKPOINT_OVERHEAD

    def drop_branch(self, branch: int) -> None:
        for c in self.by_branch.pop(branch, []):
            self.used -= c.nbytes + CHECKPOINT_OVERHEAD

    def set_budget(self, budget: int, heads: dict[int, int]) -> None:
        self.budget = budget
        self._thin(heads)

    def _thin(self, heads: dict[int, int]) -> None:
        """Drop checkpoints until within the budget: each time the one whose removal leaves the
        smallest gap relative to its distance from its branch's head (so old history thins
        first and the spacing grows with age). A branch's newest checkpoint goes last."""
        while (self.used > self.budget or self.count() > MAX_CHECKPOINTS) and self.count():
            best = None
            for b, lst in self.by_branch.items():
                head = heads.get(b, lst[-1].step if lst else 0)
                for i in range(len(lst) - 1):
                    prev = lst[i - 1].step if i else 0
                    score = (lst[i + 1].step - prev) / (head - lst[i].step + 1)
                    if best is None or score < best[0]:
                        best = (score, b, i)
            if best is None:  # only newest checkpoints left: drop the largest
                b = max(self.by_branch, key=lambda k: self.by_branch[k][-1].nbytes if self.by_branch[k] else -1)
                if not self.by_branch[b]:
                    break
                best = (0, b, len(self.by_branch[b]) - 1)
            _, b, i = best
            c = self.by_branch[b].pop(i)
            self.used -= c.nbytes + CHECKPOINT_OVERHEAD


class Timeline:
    """The branches, the current one, the stored data of loads, and the checkpoints."""

    def __init__(self, spec: SessionSpec, budget: int = DEFAULT_BUDGET):
        start = spec.start_step  # curves count from the step a resumed checkpoint starts at
        self.branches: dict[int, Branch] = {0: Branch(0, spec, series=SeriesSet(origin=start),
                                                      dists=Distributions(origin=start))}
        self.current = 0
        self.blobs: dict[str, object] = {}  # loaded state_dicts and parameters, by content id
        self.checkpoints = Checkpoints(budget)
        self._next = 1

    @property
    def branch(self) -> Branch:
        return self.branches[self.current]

    def clear(self) -> None:
        """No branches (a saved timeline is read into an empty one)."""
        self.branches.clear()
        self._next = 0

    def heads(self) -> dict[int, int]:
        return {b.id: b.end_step for b in self.branches.values()}

    def new_branch(self, spec: SessionSpec, parent: int | None, fork_step: int, inherits: bool,
                   reason: str, journal: Journal | None = None, series: SeriesSet | None = None,
                   dists: Distributions | None = None) -> Branch:
        b = Branch(self._next, spec, journal or Journal(), parent, fork_step, inherits, reason,
                   series or SeriesSet(origin=spec.start_step), dists or Distributions(origin=spec.start_step))
        self.branches[b.id] = b
        self._next += 1
        return b

    def lineage(self, branch: int) -> list[tuple[int, int]]:
        """(branch, highest step whose checkpoints are valid for ``branch``), nearest first."""
        out = []
        limit = None
        b = self.branches[branch]
        while True:
            out.append((b.id, limit if limit is not None else 1 << 62))
            if not b.inherits or b.parent is None:
                return out
            limit = b.fork_step if limit is None else min(limit, b.fork_step)
            b = self.branches[b.parent]

    def nearest_checkpoint(self, branch: int, step: int) -> Checkpoint | None:
        """The latest usable checkpoint at or before ``step`` on ``branch`` or, for a fork, on
        its ancestors before the fork."""
        best = None
        for b, limit in self.lineage(branch):
            c = self.checkpoints.nearest(b, min(step, limit))
            if c is not None and (best is None or c.step > best.step):
                best = c
        return best
