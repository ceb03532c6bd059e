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
from .series import FRAME_AGE
from .snapshot import (HIST_BINS, PREVIEW_SIDE, WHOLE_LIMIT, ArrayView, Decision, GroupSnapshot,
                       History, Snapshot, TensorSnapshot, frozen)
from .transfer import HostBatch

_NO_VALUES = frozen(np.zeros(0, np.float32))
_DTYPE_NAMES = {d: str(d).removeprefix("torch.") for d in (torch.float32, torch.float64, torch.bfloat16, torch.float16)}
_NAN4 = (math.nan,) * 4


@dataclass(frozen=True)
class View:
    """What the window shows, so that a snapshot copies only that."""

    shown: frozenset[str] | None = None  # tensors whose values travel (value, gradient, state); None: all
    histograms: bool = False  # fixed-bin histograms of big tensors' previews
    hidden_stats: bool = True  # statistics (min, max, mean, norm) of the tensors not shown too
    paused_all: bool = False  # not running, every tensor's values travel (the main window's state dict)
    small: int = 0  # a tensor of at most this many elements travels with its values whatever ``shown``


@dataclass
class _Item:
    shape: tuple[int, ...]
    dtype: str
    whole: bool
    stride: tuple[int, ...]
    values: int | None  # its index in the HostBatch, when its values travel
    stats_exact: bool


class _Plan:
    """The tensors of one snapshot: what to copy, and statistics computed where they live.

    On a GPU, each tensor's statistics are reduced there (a few segmented reductions for all
    the tensors of the snapshot) and only four numbers a tensor come over with the values
    shown. On the CPU nothing has to come over: the samples are gathered with the rest and
    reduced after, by numpy over each gathered run at once (cheaper there than torch's
    segmented reductions). A big tensor's exact statistics (when idle) are torch's own.
    """

    def __init__(self, exact_stats: bool, histograms: bool = False, hidden_stats: bool = True):
        self.exact = exact_stats
        self.histograms = histograms
        self.hidden_stats = hidden_stats
        self.batch = HostBatch()
        self.items: list[_Item] = []
        self._on_gpu = defaultdict(list)  # device -> [(item, sample)]: reduced on that device
        self._whole = defaultdict(list)  # device -> [(item, tensor)]: a big tensor's exact statistics
        self._host = {}  # batch index -> item: statistics of the copied sample, reduced on the host
        self._scalars: dict = {}  # key -> batch index
        self._stats: dict[int, tuple] = {}
        self._values: dict = {}
        self.nbytes = 0

    def add(self, t: torch.Tensor, show: bool = True) -> int:
        """Plan ``t`` (a parameter, gradient or state tensor); returns its item number."""
        t = t.detach()
        if t.is_sparse:
            t = t.to_dense()
        shape = tuple(t.shape)
        n = t.numel()
        whole = n <= WHOLE_LIMIT
        stride = (1,) * len(shape) if whole else tuple(max(1, math.ceil(s / PREVIEW_SIDE)) for s in shape)
        sample = t if whole else t[tuple(slice(None, None, st) for st in stride)]
        dtype, device = t.dtype, t.device
        exact = whole or (self.exact and dtype.is_floating_point)
        i = len(self.items)
        name = _DTYPE_NAMES.get(dtype) or str(dtype).removeprefix("torch.")
        if not show and shape and not self.hidden_stats:  # shape and dtype only (statistics NaN)
            self.items.append(_Item(shape, name, whole, stride, None, exact))
            return i
        on_cpu = device.type == "cpu"
        by_sample = n > 0 and not dtype.is_complex and (whole or not exact)
        handle = None
        if show or not shape or (on_cpu and by_sample):  # a number always travels
            handle = self.batch.add(devices.for_display(sample).contiguous())
            if on_cpu and by_sample:
                self._host[handle] = i
        if by_sample and not on_cpu:
            self._on_gpu[device].append((i, sample))
        elif n > 0 and not dtype.is_complex and not by_sample:
            self._whole[device].append((i, t))
        self.items.append(_Item(shape, name, whole, stride, handle if show or not shape else None, exact))
        return i

    def add_scalar(self, key, t: torch.Tensor) -> None:
        """A 0-d tensor read as a float with the rest (the loss: no read of its own)."""
        self._scalars[key] = self.batch.add(devices.for_display(t.detach().reshape(())))

    def fetch(self) -> None:
        """Statistics on each device, then everything copied: one transfer per device."""
        stats_at = {}
        for device in set(self._on_gpu) | set(self._whole):
            rows = self._on_gpu[device] + self._whole[device]
            stats_at[device] = (self.batch.add(_device_stats(device, self._on_gpu[device], self._whole[device])),
                                rows)
        arrays = self.batch.fetch()
        self.nbytes = self.batch.nbytes
        for h, rows in stats_at.values():
            flat = arrays[h].astype(np.float64).tolist()
            for k, (i, _) in enumerate(rows):
                self._stats[i] = tuple(flat[4 * k:4 * k + 4])
        for device, arr, spans in self.batch.runs:
            mine = [(self._host[j], start, k) for j, start, k in spans if j in self._host]
            if mine:
                for (i, _, _), row in zip(mine, _host_stats(arr, [m[1] for m in mine], [m[2] for m in mine])):
                    self._stats[i] = row
        self._values = {i: arrays[it.values] for i, it in enumerate(self.items) if it.values is not None}
        self._scalars = {key: float(arrays[h]) for key, h in self._scalars.items()}

    def scalar(self, key) -> float | None:
        return self._scalars.get(key)

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


def _device_stats(device, sampled, whole) -> torch.Tensor:
    """[min, max, mean, norm] per tensor, as one vector on ``device`` (float64; float32 where
    the device has no float64): the samples by a few segmented reductions over all of them
    (where torch has them), a big tensor's exact ones by torch's own reductions."""
    acc = torch.float32 if device.type == "mps" else torch.float64
    parts = []
    if sampled:
        sizes = tuple(t.numel() for _, t in sampled)
        if device.type == "cuda":
            data = torch.cat([t.reshape(-1) for _, t in sampled], out=torch.empty(sum(sizes), dtype=acc, device=device))
            key = (device, sizes)
            lengths = _lengths.get(key)
            if lengths is None:
                if len(_lengths) > 64:
                    _lengths.clear()
                lengths = _lengths[key] = torch.tensor(sizes, device=device)
            seg = [torch.segment_reduce(data, r, lengths=lengths, unsafe=True) for r in ("min", "max", "mean")]
            seg.append(torch.segment_reduce(data * data, "sum", lengths=lengths, unsafe=True).sqrt())
            parts.append(torch.stack(seg, 1).reshape(-1))
        else:  # no segmented reductions there: a few kernels a tensor
            parts += [_stats_of(t.to(acc), acc) for _, t in sampled]
    parts += [_stats_of(t, acc) for _, t in whole]
    return torch.cat(parts).to(acc)


def _host_stats(a: np.ndarray, starts: list[int], sizes: list[int]) -> list[tuple]:
    """(min, max, mean, norm) of the disjoint, non-empty runs ``a[start:start + size]`` (in
    start order), in float64: a few numpy passes for all of them. reduceat reduces from each
    index to the next, so the ends of runs followed by a gap are indices too (rows dropped)."""
    end = starts[-1] + sizes[-1]
    bounds = sorted(set(starts) | {s + k for s, k in zip(starts, sizes) if s + k < end})
    a, idx = a[:end], np.asarray(bounds, dtype=np.int64)
    pick = np.searchsorted(idx, starts)
    n = np.asarray(sizes, dtype=np.float64)
    cols = (np.minimum.reduceat(a, idx)[pick].astype(np.float64), np.maximum.reduceat(a, idx)[pick].astype(np.float64),
            np.add.reduceat(a, idx, dtype=np.float64)[pick] / n,
            np.sqrt(np.add.reduceat(np.square(a, dtype=np.float64), idx)[pick]))
    return list(zip(*(c.tolist() for c in cols)))


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


def state_items(st: dict):
    """(key, value) of one parameter's state, a list or tuple of tensors spread out as
    ``key[0]``, ``key[1]``, ...: SOAP's and Kron's preconditioner matrices are shown,
    inspected and histogrammed like any state tensor, not as "list of 2 Tensor"."""
    for k, v in st.items():
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, torch.Tensor) for x in v):
            for i, x in enumerate(v):
                yield f"{k}[{i}]", x
        else:
            yield k, v


def state_entry(st: dict, key: str):
    """The value ``state_items`` lists under ``key`` (None if there is none)."""
    if key in st:
        return st[key]
    base, _, rest = key.rpartition("[")
    if base and rest.endswith("]") and rest[:-1].isdigit():
        v = st.get(base)
        i = int(rest[:-1])
        if isinstance(v, (list, tuple)) and i < len(v):
            return v[i]
    return None


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
    plan = _Plan(exact_stats=not running, histograms=view.histograms, hidden_stats=view.hidden_stats)
    every = view.shown is None or (view.paused_all and not running)
    opt = session.optimizer
    index = session.index_of()
    group_of = session.group_of()
    planned = []
    for name, p in session.params.items():
        show = every or name in view.shown or p.numel() <= view.small
        st = opt.state.get(p, {})
        state = {k: (plan.add(v, show), None) if isinstance(v, torch.Tensor) else (None, _plain_state(v))
                 for k, v in state_items(st)}  # (item, plain value)
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
    branches = tuple(session.branches())
    return Snapshot(seq=seq, step=session.step_count, loss=plan.scalar("loss"), optimizer=session.spec.optimizer,
                    device=session.device, defaults={k: plain(v) for k, v in opt.defaults.items()},
                    groups=tuple(groups), tensors=tuple(tensors),
                    history=history if history is not None else series.view(FRAME_AGE if running else 0.0),
                    running=running, paused_reason=paused_reason, error=error,
                    steps_per_second=steps_per_second, objective=obj,
                    path=series.path_array(FRAME_AGE if running else 0.0),
                    decision=decision, epoch=None if task is None else task.epoch,
                    metrics=dict(session.last_eval), run_id=session.run_id, branch=tl.current,
                    branches=branches, at_head=session.at_head, head_step=tl.branch.end_step,
                    start_step=tl.branch.start_step,
                    breakpoints=tuple((b.text, b.enabled) for b in session.breakpoints),
                    checkpoint_bytes=tl.checkpoints.used, checkpoint_budget=tl.checkpoints.budget,
                    notice=session.notice, added=tuple(t.name for t in session.engine.added_tensors()), can_undo=bool(session._undo), can_redo=bool(session._redo),
                    journal_len=len(tl.branch.journal.entries))


def exact_value(session, name: str, which: str, index: tuple[int, ...]) -> float:
    """The exact value of one element of a parameter, its gradient or a state tensor."""
    p = session.params[name]
    if which == "value":
        t = p
    elif which == "grad":
        t = p.grad
    else:
        t = state_entry(session.optimizer.state.get(p, {}), which)
    if not isinstance(t, torch.Tensor):
        raise KeyError(f"{name} has no {which}")
    if t.is_sparse:
        t = t.to_dense()
    return float(t.detach()[tuple(index)])
