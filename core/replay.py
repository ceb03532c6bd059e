"""A separate engine standing at a position of the timeline, the session itself untouched.

``Session.goto`` moves the session (and its undo history); reading a past step for an
explanation or an export should not. ``engine_at`` does what rewinding does (the
nearest checkpoint, then the journal replayed) on an engine of its own.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from .engine import Engine
from .spec import Step


@contextmanager
def generators_kept():
    """Torch's (CPU and initialised CUDA devices') and numpy's global generators as they were:
    a replay restores the states its checkpoints saved, and the session's next step must draw
    from where the session stands, not from where the replay ended."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    saved = np.random.get_state()
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            np.random.set_state(saved)


def engine_at(timeline, branch: int, step: int, index: int) -> Engine:
    """An engine at ``step`` of ``branch`` with the first ``index`` journal entries applied (the
    part of the next entry up to ``step`` too, if it is a Step that ``step`` falls inside)."""
    b = timeline.branches[branch]
    ck = timeline.nearest_checkpoint(branch, step)
    eng = Engine(b.spec, timeline.blobs)
    start = eng.step_count  # 0, or the step a resumed checkpoint starts at
    if ck is not None:
        eng.restore(ck.state, check=bool(ck.state.get("_check", False)))
        start = ck.step
    for s0, a in b.journal.prefix(step, index):
        if isinstance(a, Step):
            n = s0 + a.n - max(s0, start)
            if n > 0:
                eng.apply(Step(n))
        elif s0 >= start:
            eng.apply(a)
    return eng


def engine_before(timeline, branch: int, step: int) -> Engine:
    """An engine right before step ``step`` begins: after step - 1 and the actions recorded
    between the two steps (edits, zero_grad, loads...)."""
    entries = timeline.branches[branch].journal.entries
    j = next(i for i, (s0, a) in enumerate(entries) if isinstance(a, Step) and s0 < step <= s0 + a.n)
    return engine_at(timeline, branch, step - 1, j)
