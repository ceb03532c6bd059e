"""Turn a live session into a Snapshot of numpy copies (runs on the runner thread).

Small tensors travel whole. Large ones travel as a strided preview of at most
PREVIEW_SIDE per axis plus whole-tensor statistics: copying a 4096x4096 weight and
its Adam moments every frame would cost far more than a frame can afford.
Nothing here changes a tensor, its dtype or its device, or draws random numbers.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .snapshot import (HIST_BINS, PREVIEW_SIDE, WHOLE_LIMIT, ArrayView, BranchSummary, Decision, GroupSnapshot,
                       History, Snapshot, TensorSnapshot, frozen)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def array_view(t: torch.Tensor, exact_stats: bool = True) -> ArrayView:
    """An ArrayView of ``t``: whole if small, else a strided preview plus statistics.

    For a big tensor the statistics are of the whole tensor when ``exact_stats``
    (three passes, float32 accumulation as torch does), else of the preview
    (``stats_exact`` False): the runner asks for exact ones when the run is idle.
    """
    t = t.detach()
    if t.is_sparse:
        t = t.to_dense()
    shape = tuple(t.shape)
    dtype = str(t.dtype).replace("torch.", "")
    if t.numel() <= WHOLE_LIMIT:
        a = _np(t)
        lo, hi, mean, norm = _np_stats(a)
        # no histogram: the whole tensor travels, a widget can bin it if it wants to
        return ArrayView(shape, dtype, frozen(a), True, (1,) * len(shape), lo, hi, mean, norm)
    stride = tuple(max(1, math.ceil(s / PREVIEW_SIDE)) for s in shape)
    preview = t[tuple(slice(None, None, st) for st in stride)]
    a = np.ascontiguousarray(_np(preview))
    if exact_stats and t.is_floating_point():
        with torch.no_grad():
            lo, hi = torch.aminmax(t)
            stats = torch.stack([lo, hi, t.mean(), torch.linalg.vector_norm(t)]).double().cpu().tolist()
    else:
        stats = list(_np_stats(a))
    counts, edges = _hist(a)
    return ArrayView(shape, dtype, frozen(a), False, stride, *stats, counts, edges,
                     stats_exact=exact_stats and t.is_floating_point())


def _np_stats(a: np.ndarray):
    if not a.size:
        nan = float("nan")
        return nan, nan, nan, nan
    af = a.astype(np.float64, copy=False)
    return float(af.min()), float(af.max()), float(af.mean()), float(np.sqrt((af * af).sum()))


def _hist(a: np.ndarray):
    finite = a[np.isfinite(a)] if a.size else a
    if finite.size == 0:
        return None, None
    finite = finite.astype(np.float64, copy=False)
    lo, hi = float(finite.min()), float(finite.max())
    if not hi - lo > 1e-6 * max(1.0, abs(lo), abs(hi)):
        pad = max(0.5, 1e-3 * abs(lo))  # (nearly) constant data: one bin in the middle
        lo, hi = lo - pad, hi + pad
    try:
        counts, edges = np.histogram(finite, bins=HIST_BINS, range=(lo, hi))
    except ValueError:  # a range numpy cannot split (huge magnitudes): no histogram
        return None, None
    return frozen(counts), frozen(edges)


def state_value(v, exact_stats: bool = True):
    """One optimizer state entry as plain data."""
    if isinstance(v, torch.Tensor):
        return array_view(v, exact_stats)
    if isinstance(v, (bool, str)) or v is None:
        return str(v)
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, (list, tuple)):
        kinds = {type(x).__name__ for x in v}
        return f"list of {len(v)} {'/'.join(sorted(kinds)) or 'items'}"
    return repr(v)[:80]


def plain(v):
    """A hyperparameter as a plain Python value (a tensor lr becomes a float)."""
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, tuple):
        return tuple(plain(x) for x in v)
    return v


def make_snapshot(session, seq: int, history: History | None = None, running: bool = False,
                  paused_reason: str | None = None, error=None, steps_per_second: float = 0.0) -> Snapshot:
    """Copy what the GUI shows out of ``session``. Call only on the thread that owns it.

    While running, big tensors carry preview statistics (cheap); when idle, exact ones.
    """
    exact = not running
    opt = session.optimizer
    index = session.index_of()
    group_of = session.group_of()
    tensors = []
    for name, p in session.params.items():
        st = opt.state.get(p, {})
        tensors.append(TensorSnapshot(
            name=name, index=index[name], group=group_of[name], value=array_view(p, exact),
            grad=None if p.grad is None else array_view(p.grad, exact),
            grad_sparse=p.grad is not None and p.grad.is_sparse,
            state={k: state_value(v, exact) for k, v in st.items()}))
    tensors.sort(key=lambda t: t.index)
    names_by_index = {i: n for n, i in index.items()}
    groups = []
    start = 0
    for gi, g in enumerate(opt.param_groups):
        idx = tuple(range(start, start + len(g["params"])))
        start += len(g["params"])
        groups.append(GroupSnapshot(gi, {k: plain(v) for k, v in g.items() if k != "params"}, idx,
                                    tuple(names_by_index[i] for i in idx)))
    obj = session.spec.gradient.objective if session.spec.gradient.kind == "objective" else None
    decision = None
    grid = session.decision_grid(0.1 if running else 0.0)
    if grid is not None:
        decision = Decision(frozen(grid.xs), frozen(grid.ys), frozen(grid.probs), frozen(grid.points),
                            frozen(grid.labels))
    task = session.task
    series = session.history
    tl = session.timeline
    branches = tuple(BranchSummary(b.id, b.parent, b.fork_step, b.steps, b.last_loss, b.reason, b.optimizer,
                                   b.current) for b in session.branches())
    return Snapshot(seq=seq, step=session.step_count, loss=session.loss_value(), optimizer=session.spec.optimizer,
                    device=session.device, defaults={k: plain(v) for k, v in opt.defaults.items()},
                    groups=tuple(groups), tensors=tuple(tensors),
                    history=history if history is not None else series.view(),
                    running=running, paused_reason=paused_reason, error=error,
                    steps_per_second=steps_per_second, objective=obj, path=series.path_array(),
                    decision=decision, epoch=None if task is None else task.epoch,
                    metrics=dict(session.last_eval), run_id=session.run_id, branch=tl.current,
                    branches=branches, at_head=session.at_head, head_step=tl.branch.end_step,
                    breakpoints=tuple((b.text, b.enabled) for b in session.breakpoints),
                    checkpoint_bytes=tl.checkpoints.used, checkpoint_budget=tl.checkpoints.budget,
                    notice=session.notice, added=tuple(t.name for t in session.engine.added_tensors()), can_undo=bool(session._undo), can_redo=bool(session._redo))


def exact_value(session, name: str, which: str, index: tuple[int, ...]) -> float:
    """The exact value of one element of a parameter, its gradient or a state tensor."""
    p = session.params[name]
    if which == "value":
        t = p
    elif which == "grad":
        t = p.grad
    else:
        t = session.optimizer.state.get(p, {}).get(which)
    if not isinstance(t, torch.Tensor):
        raise KeyError(f"{name} has no {which}")
    if t.is_sparse:
        t = t.to_dense()
    return float(t.detach()[tuple(index)])
