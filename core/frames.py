"""Frames of someone else's optimizer: copies taken inside its step hook, built into a Snapshot later.

Inside the hook (the training thread) only device work is enqueued: each tensor (whole when
small, a strided preview of at most PREVIEW_SIDE per axis when big) is copied to the host,
``non_blocking`` into pinned memory on a GPU, with one CUDA event recorded after the copies;
whole-tensor statistics of a big tensor are reduced on the device and copied the same way,
only when asked (the script is paused). Nothing here reads a value back, so the hook never
waits for the device. The publisher thread waits for the event, then turns the copies into
the same plain ArrayViews the app's own runner publishes (``build_frame``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .series import FRAME_AGE
from .snapshot import PREVIEW_SIDE, WHOLE_LIMIT, ArrayView, GroupSnapshot, Snapshot, TensorSnapshot, frozen

_NUMPY_LESS = {torch.bfloat16, torch.uint16, torch.uint32, torch.uint64}  # shown through float32 / int64


@dataclass
class Grab:
    """One tensor's host copy (whole or preview), filled asynchronously."""

    shape: tuple[int, ...]
    dtype: str
    host: torch.Tensor
    stride: tuple[int, ...]
    whole: bool
    stats: torch.Tensor | None = None  # (min, max, mean, norm) of the whole tensor, float64


@dataclass
class Capture:
    """What one step's hook copied: tensors and group settings (losses travel apart, in order)."""

    step: int
    run: str
    optimizer: str
    device: str
    paused: bool
    tensors: list = field(default_factory=list)  # (name, index, group, Grab, Grab|None, sparse, {key: Grab|value})
    groups: list = field(default_factory=list)  # (index, {hparam: value|Grab}, (param indices), (names))
    defaults: dict = field(default_factory=dict)
    events: list = field(default_factory=list)  # CUDA events recorded after the copies
    norms: torch.Tensor | None = None  # float64 host copy: the step's norms (``norm_keys``)
    norm_keys: tuple = ()  # their series names: grad_norm, update_norm, update_ratio0...

    def wait(self) -> None:
        for e in self.events:
            e.synchronize()


@dataclass
class LossBatch:
    """Reported losses (and scalars) of several steps, stacked on the device and copied at once."""

    steps: list
    host: torch.Tensor | None  # float64 [n], or None when no loss was a tensor
    values: list  # plain floats where the script reported numbers; None where host holds it
    extra: list  # per step: {name: float} of other reported scalars (plain numbers only)
    events: list = field(default_factory=list)

    def resolve(self):
        for e in self.events:
            e.synchronize()
        got = iter(self.host.tolist()) if self.host is not None else iter(())
        values = [next(got) if v is None else v for v in self.values]
        return self.steps, values, self.extra


def host_copy(src: torch.Tensor, events: list) -> torch.Tensor:
    """A host copy of ``src`` that the device fills without the caller waiting."""
    if src.device.type == "cpu":
        return src.clone(memory_format=torch.contiguous_format)
    dst = torch.empty(src.shape, dtype=src.dtype, pin_memory=True)
    dst.copy_(src, non_blocking=True)
    _mark(src.device, events)
    return dst


def _mark(device: torch.device, events: list) -> None:
    if device.type == "cuda" and not any(getattr(e, "_optimlab_dev", None) == device for e in events[-1:]):
        e = torch.cuda.Event()
        e.record(torch.cuda.current_stream(device))
        e._optimlab_dev = device
        events.append(e)


def grab(t: torch.Tensor, exact: bool, events: list) -> Grab | None:
    """Copy ``t`` (whole if small, strided preview if big); its statistics too when ``exact``."""
    t = t.detach()
    if t.is_sparse:
        if t.numel() > WHOLE_LIMIT:
            return None
        t = t.to_dense()
    shape = tuple(t.shape)
    dtype = str(t.dtype).replace("torch.", "")
    if t.numel() <= WHOLE_LIMIT:
        src, stride, whole = t, (1,) * t.dim(), True
    else:
        stride = tuple(max(1, math.ceil(s / PREVIEW_SIDE)) for s in shape)
        src, whole = t[tuple(slice(None, None, st) for st in stride)], False
    if src.dtype in _NUMPY_LESS or str(src.dtype).startswith("torch.float8"):
        src = src.float() if src.is_floating_point() else src.to(torch.int64)
    stats = None
    if not whole and exact and t.is_floating_point():
        with torch.no_grad():
            acc = torch.float64 if t.dtype == torch.float64 else torch.float32  # bf16/fp16 sums lose digits
            lo, hi = torch.aminmax(t)
            stats = host_copy(torch.stack([lo.to(acc), hi.to(acc), t.mean(dtype=acc),
                                           torch.linalg.vector_norm(t, dtype=acc)]).double(), events)
    return Grab(shape, dtype, host_copy(src, events), stride, whole, stats)


def plain_value(v, events: list):
    """A hyperparameter or state entry as plain data, or a Grab for a tensor (read later)."""
    if isinstance(v, torch.Tensor):
        return grab(v, False, events)
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(x, (bool, int, float, str)) or x is None for x in v):
        return tuple(v)
    return repr(v)[:80]


# ----- on the publisher thread -----

def _np_stats(a: np.ndarray) -> tuple[float, float, float, float]:
    """min, max, mean, norm of a host copy, in float64 (NaN for an empty tensor)."""
    if not a.size:
        nan = float("nan")
        return nan, nan, nan, nan
    af = a.astype(np.float64, copy=False)
    return float(af.min()), float(af.max()), float(af.mean()), float(np.sqrt((af * af).sum()))


def view(g: Grab) -> ArrayView:
    a = g.host.numpy()
    if g.whole:
        a = a.copy()
        lo, hi, mean, norm = _np_stats(a)
        return ArrayView(g.shape, g.dtype, frozen(a), True, g.stride, lo, hi, mean, norm)
    a = np.ascontiguousarray(a)
    exact = g.stats is not None
    stats = g.stats.tolist() if exact else list(_np_stats(a))
    # no histogram of the preview: nothing draws one (the app's own snapshots make them only when
    # asked), and it was three quarters of building a frame of a 4096x4096 Adam
    return ArrayView(g.shape, g.dtype, frozen(a), False, g.stride, *stats, stats_exact=exact)


def _resolve(v):
    if isinstance(v, Grab):
        return view(v) if (v.whole and len(v.shape)) or not v.whole else _scalar(v)
    return v


def _scalar(g: Grab):
    """A 0-d tensor (Adam's step, a tensor lr) as the number it holds."""
    x = g.host.item()
    return x


def build_frame(cap: Capture, seq: int, series, steps_per_second: float) -> Snapshot:
    """The Snapshot the app draws, from a capture whose copies are complete."""
    cap.wait()
    tensors = []
    for name, index, group, value, grad, sparse, state in cap.tensors:
        tensors.append(TensorSnapshot(name=name, index=index, group=group, value=view(value),
                                      grad=None if grad is None else view(grad), grad_sparse=sparse,
                                      state={k: (view(v) if isinstance(v, Grab) else v) for k, v in state.items()}))
    groups, lrs = [], {}
    for gi, hp, idx, names in cap.groups:
        hp = {k: _resolve(v) for k, v in hp.items()}
        if isinstance(hp.get("lr"), (int, float)):
            lrs[f"lr{gi}"] = float(hp["lr"])
        groups.append(GroupSnapshot(gi, hp, idx, names))
    if cap.norms is not None:
        lrs.update(zip(cap.norm_keys, cap.norms.tolist()))
    if lrs:
        series.add(cap.step, lrs)
    history = series.view(0.0 if cap.paused else FRAME_AGE)  # a running frame's curves may lag 0.2 s
    loss = series.last_mean("loss")
    return Snapshot(seq=seq, step=cap.step, loss=loss, optimizer=cap.optimizer, device=cap.device,
                    defaults={k: _resolve(v) for k, v in cap.defaults.items()}, groups=tuple(groups),
                    tensors=tuple(tensors), history=history, running=not cap.paused,
                    paused_reason=f"Paused at step {cap.step:,} (from the listener)" if cap.paused else None,
                    steps_per_second=steps_per_second, run_id=cap.run, head_step=cap.step)
