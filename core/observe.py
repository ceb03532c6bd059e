"""Turn a live session into a Snapshot of numpy copies (runs on the runner thread).

What travels is what the window shows (``View``, set by ``core.edits.set_view``): the
shown tensors' values, whole if small (at most WHOLE_LIMIT elements), else a strided
preview of at most PREVIEW_SIDE per axis; of every other tensor only its shape and four
numbers (min, max, mean, norm) for the state tree. Previews and statistics are computed
on the tensor's device (statistics of the whole tensor when it is small or the run is
idle, of the preview while a big one runs), and everything read from one device, the
loss included, comes over in one transfer (``core.transfer``). Histograms are computed
only when a view asks for them: nothing draws them, and they were most of a big
snapshot's time. bfloat16 and float16 tensors travel as float32 copies (exact; the
dtype shown is the tensor's own). Nothing here changes a tensor, its dtype or its
device, or draws random numbers.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from . import devices
from .snapshot import (HIST_BINS, PREVIEW_SIDE, WHOLE_LIMIT, ArrayView, BranchSummary, Decision, GroupSnapshot,
                       History, Snapshot, TensorSnapshot, frozen)
from .transfer import HostBatch

_NO_VALUES = frozen(np.zeros(0, np.float32))
_NAN4 = (math.nan,) * 4


@dataclass(frozen=True)
class View:
    """What the window shows, so that a snapshot copies only that."""

    shown: frozenset[str] | None = None  # tensors whose values travel (value, gradient, state); None: all
    histograms: bool = False  # fixed-bin histograms of big tensors' previews


@dataclass
class _Item:
    shape: tuple[int, ...]
    dtype: str
    whole: bool
    stride: tuple[int, ...]
    values: int | None  # its index in the HostBatch, when its values travel
    stats_exact: bool


class _Plan:
    """The tensors of one snapshot: what to copy, and statistics computed on each device."""

    def __init__(self, exact_stats: bool, histograms: bool = False):
        self.exact = exact_stats
        self.histograms = histograms
        self.batch = HostBatch()
        self.items: list[_Item] = []
        self._sampled = defaultdict(list)  # device -> [(item, sample)]: statistics of the sample
        self._whole = defaultdict(list)  # device -> [(item, tensor)]: a big tensor's exact statistics
        self._scalars = defaultdict(list)  # device -> [(key, 0-d tensor)], e.g. the loss
        self._stats: dict[int, tuple] = {}
        self._values: dict = {}

    def add(self, t: torch.Tensor, show: bool = True) -> int:
        """Plan ``t`` (a parameter, gradient or state tensor); returns its item number."""
        t = t.detach()
        if t.is_sparse:
            t = t.to_dense()
        shape = tuple(t.shape)
        whole = t.numel() <= WHOLE_LIMIT
        stride = (1,) * len(shape) if whole else tuple(max(1, math.ceil(s / PREVIEW_SIDE)) for s in shape)
        sample = t if whole else t[tuple(slice(None, None, st) for st in stride)]
        i = len(self.items)
        show = show or not shape  # a number always travels
        handle = self.batch.add(devices.for_display(sample).contiguous()) if show else None
        exact = whole or (self.exact and t.is_floating_point())
        if t.numel() and not t.is_complex():
            (self._sampled if whole or not exact else self._whole)[t.device].append((i, t if exact else sample))
        self.items.append(_Item(shape, str(t.dtype).removeprefix("torch."), whole, stride, handle, exact))
        return i

    def add_scalar(self, key, t: torch.Tensor) -> None:
        """A 0-d tensor read as a float with the rest (the loss: no read of its own)."""
        self._scalars[t.device].append((key, t.detach()))

    def fetch(self) -> None:
        """Compute the statistics on each device, then copy everything: one transfer per device."""
        stats_at = {}
        for device in set(self._sampled) | set(self._whole) | set(self._scalars):
            stats_at[device] = self.batch.add(_device_stats(device, self._sampled[device], self._whole[device],
                                                            self._scalars[device]))
        arrays = self.batch.fetch()
        self.nbytes = self.batch.nbytes
        for device, h in stats_at.items():
            flat = arrays[h].astype(np.float64).tolist()
            k = 0
            for i, _ in self._sampled[device] + self._whole[device]:
                self._stats[i] = tuple(flat[k:k + 4])
                k += 4
            for key, _ in self._scalars[device]:
                self._stats[key] = flat[k]
                k += 1
        self._values = {i: arrays[it.values] for i, it in enumerate(self.items) if it.values is not None}

    def scalar(self, key) -> float | None:
        return self._stats.get(key)

    def view(self, i: int) -> ArrayView:
        it = self.items[i]
        lo, hi, mean, norm = self._stats.get(i, _NAN4)
        a = self._values.get(i)
        if a is None:
            return ArrayView(it.shape, it.dtype, _NO_VALUES, False, it.stride, lo, hi, mean, norm,
                             stats_exact=it.stats_exact, shown=False)
        a = frozen(a)
        counts = edges = None
        if self.histograms and not it.whole:
            counts, edges = _hist(a)
        return ArrayView(it.shape, it.dtype, a, it.whole, it.stride, lo, hi, mean, norm, counts, edges,
                         stats_exact=it.stats_exact)


_lengths: dict = {}  # (device, lengths) -> the lengths tensor on that device (made once per layout)


def _device_stats(device, sampled, whole, scalars) -> torch.Tensor:
    """[min, max, mean, norm] per tensor, then the scalars, as one vector on ``device``
    (float64; float32 where the device has no float64): a few kernels for any number of
    tensors (one segmented reduction each over all of them)."""
    acc = torch.float32 if device.type == "mps" else torch.float64
    parts = []
    if sampled:
        sizes = tuple(t.numel() for _, t in sampled)
        if device.type in ("cpu", "cuda"):
            data = torch.empty(sum(sizes), dtype=acc, device=device)
            torch.cat([t.reshape(-1) for _, t in sampled], out=data)
            key = (device, sizes)
            lengths = _lengths.get(key)
            if lengths is None:
                if len(_lengths) > 64:
                    _lengths.clear()
                lengths = _lengths[key] = torch.tensor(sizes, device=device)
            seg = [torch.segment_reduce(data, r, lengths=lengths, unsafe=True) for r in ("min", "max", "mean")]
            seg.append(torch.segment_reduce(data * data, "sum", lengths=lengths, unsafe=True).sqrt())
            parts.append(torch.stack(seg, 1).reshape(-1))
        else:  # no segmented reductions there: a few kernels per tensor
            parts += [_stats_of(t.to(acc), acc) for _, t in sampled]
    parts += [_stats_of(t, acc) for _, t in whole]
    if scalars:
        parts.append(torch.stack([t.reshape(()).to(acc) for _, t in scalars]))
    return torch.cat(parts).to(acc) if parts else torch.zeros(0, dtype=acc, device=device)


def _stats_of(t: torch.Tensor, acc) -> torch.Tensor:
    """min, max, mean, norm of a whole tensor (float32 accumulation for float32 and lower, as
    torch's own mean and norm do)."""
    red = torch.float64 if t.dtype == torch.float64 and acc == torch.float64 else torch.float32
    lo, hi = torch.aminmax(t)
    return torch.stack([lo.to(acc), hi.to(acc), t.mean(dtype=red).to(acc),
                        torch.linalg.vector_norm(t, dtype=red).to(acc)])


def array_view(t: torch.Tensor, exact_stats: bool = True) -> ArrayView:
    """An ArrayView of ``t``: whole if small, else a strided preview plus statistics (of the
    whole tensor when ``exact_stats``, else of the preview: ``stats_exact`` False)."""
    plan = _Plan(exact_stats)
    i = plan.add(t)
    plan.fetch()
    return plan.view(i)


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
    return _plain_state(v)


def _plain_state(v):
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
                  paused_reason: str | None = None, error=None, steps_per_second: float = 0.0,
                  view: View | None = None) -> Snapshot:
    """Copy what the GUI shows out of ``session``. Call only on the thread that owns it.

    ``view`` (default: the session's ``view``, else everything) says which tensors' values
    travel. While running, big tensors carry preview statistics (cheap); when idle, exact ones.
    """
    view = view or getattr(session, "view", None) or View()
    plan = _Plan(exact_stats=not running, histograms=view.histograms)
    opt = session.optimizer
    index = session.index_of()
    group_of = session.group_of()
    planned = []
    for name, p in session.params.items():
        show = view.shown is None or name in view.shown
        st = opt.state.get(p, {})
        state = {k: (plan.add(v, show), None) if isinstance(v, torch.Tensor) else (None, _plain_state(v))
                 for k, v in st.items()}  # (item, plain value)
        planned.append((name, p, plan.add(p, show), None if p.grad is None else plan.add(p.grad, show), state))
    if session.loss is not None:
        plan.add_scalar("loss", session.loss)
    plan.fetch()  # one transfer per device
    tensors = [TensorSnapshot(name=name, index=index[name], group=group_of[name], value=plan.view(v),
                              grad=None if g is None else plan.view(g),
                              grad_sparse=p.grad is not None and p.grad.is_sparse,
                              state={k: x if i is None else plan.view(i) for k, (i, x) in state.items()})
               for name, p, v, g, state in planned]
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
    return Snapshot(seq=seq, step=session.step_count, loss=plan.scalar("loss"), optimizer=session.spec.optimizer,
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
                    notice=session.notice, can_undo=bool(session._undo), can_redo=bool(session._redo))


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
