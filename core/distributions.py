"""Distributions over time: fixed-bin histograms of every parameter, gradient and optimizer
state tensor, kept for every step or bucket of steps.

The bins are the same for every tensor and every step, so histograms of neighbouring
steps add up (a time bucket is the sum of its steps' counts): values are binned by
sign and decade, ``BINS_PER_DECADE`` bins a decade from 1e-12 to 1e6 on each side,
plus one bin for zero (and anything smaller than 1e-12) and one at each end for larger
magnitudes and infinities. NaN is counted apart.

Counting happens on the tensor's device (``bin_index``, then ``bin_counts``) inside the
observer's measured steps; the counts travel back with the step's other measurements in
one transfer. A tensor of more than ``MAX_ELEMENTS`` elements is counted on an even
stride through it (like the previews), and the counts are scaled to its size.
"""
from __future__ import annotations

import math

import numpy as np
import torch

BINS_PER_DECADE = 4
LOW, HIGH = -12, 6  # decades
MAX_ELEMENTS = 1 << 20
CAPACITY = 512  # time buckets per tensor
_MAG = np.logspace(LOW, HIGH, (HIGH - LOW) * BINS_PER_DECADE + 1)
# bucket edges: -inf .. -1e6 .. -1e-12 | 0 | 1e-12 .. 1e6 .. inf
EDGES = np.concatenate([-_MAG[::-1], _MAG])
N_BINS = len(EDGES) + 1  # bucketize gives 0..len(EDGES)
NAN_BIN = N_BINS  # one more column counts NaNs


_tables_cache: dict = {}
N_MAG = len(_MAG)


def _tables(device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The magnitude edges in ``dtype`` around a count c of them: (MAG[c - 1], MAG[c]) for c in
    0..N_MAG, NaN where there is none (a NaN compares false either way)."""
    key = (str(device), dtype)
    t = _tables_cache.get(key)
    if t is None:
        mag = torch.as_tensor(_MAG, dtype=dtype, device=device)
        nan = torch.full((1,), math.nan, dtype=dtype, device=device)
        t = _tables_cache[key] = (torch.cat([nan, mag]), torch.cat([mag, nan]))
    return t


def bin_index(x: torch.Tensor) -> torch.Tensor:
    """``torch.bucketize(x, EDGES)`` (the same int64 indices; NaN: NAN_BIN), by arithmetic:
    each magnitude's decade and quarter from its log10, corrected against the edges themselves
    (as ``x``'s dtype holds them), so the rounding of the log can never move a value into the
    next bin (the log is off by an ulp at most: the estimate by one count at most). On the CPU
    ``bucketize``'s binary search took 600 µs for the 19,000 values of a small MLP's parameters,
    gradients and Adam state, most of a measured step; this about 265 (float arithmetic in
    place and ``index_select``: an int64 ``where`` alone took 80 µs, fancy indexing 35)."""
    below, at = _tables(x.device, x.dtype)
    a = x.abs()
    k = torch.log10(a).sub_(LOW).mul_(BINS_PER_DECADE).nan_to_num_(nan=0.0).clamp_(-1.0, float(N_MAG))
    c = k.floor_().add_(1).clamp_(0, N_MAG)  # about how many edges are < a
    c.add_(below.index_select(0, c.int()) >= a, alpha=-1)  # one step back or forth, at most
    c.add_(at.index_select(0, c.int()) < a)
    le = c + (at.index_select(0, c.int()) == a)  # how many edges are <= a
    # edges below x: for x > 0 every negative edge and the magnitudes below it; for x < 0 the
    # negative edges below it, i.e. the magnitudes above |x|; for 0 the negative edges
    idx = c.mul_(x > 0).sub_(le.mul_(x < 0)).add_(N_MAG)
    return idx.add_(torch.isnan(x), alpha=NAN_BIN - N_MAG).long()


def counts(t: torch.Tensor) -> torch.Tensor:
    """The histogram of ``t`` over the fixed bins, as a float32 tensor of N_BINS + 1 counts
    (the last: NaNs), on ``t``'s device. No host sync."""
    t = t.detach()
    if t.is_sparse:
        t = t.coalesce().values()
    flat, scale = _sampled(t.reshape(-1))
    x = flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat
    out = bin_counts(bin_index(x)).to(torch.float32)
    return out * scale if scale != 1.0 else out


def counts_many(ts: list[torch.Tensor]) -> torch.Tensor:
    """``counts`` of each of ``ts``, stacked ([len(ts), N_BINS + 1], float32, on their device),
    the tensors of one device and dtype binned together: one ``bin_index`` over all of them,
    then one count (each tensor's own row) or, past JOINT_MAX values, a count of each one's
    share (on small problems the per-op overhead of binning each alone was most of a measured
    step). The same counts as ``counts`` one by one."""
    groups: dict = {}
    for j, t in enumerate(ts):
        t = t.detach()
        if t.is_sparse:
            t = t.coalesce().values()
        flat, scale = _sampled(t.reshape(-1))
        x = flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat
        groups.setdefault((x.device, x.dtype), []).append((j, x, scale))
    rows: list = [None] * len(ts)
    for (device, dtype), members in groups.items():
        xs = [x for _, x, _ in members]
        x = torch.cat(xs) if len(xs) > 1 else xs[0]
        idx = bin_index(x)
        sizes = tuple(len(v) for v in xs)
        if len(xs) > 1 and x.numel() <= JOINT_MAX:
            # one count for all: each tensor's indices shifted to its own row of bins (a
            # bincount and a conversion per tensor were most of the histograms' time)
            c = bin_counts(idx + _offsets(device, sizes), len(xs)).to(torch.float32)
            for row, (j, _, scale) in zip(c, members):
                rows[j] = row * scale if scale != 1.0 else row
            continue
        parts = idx.split(sizes) if len(xs) > 1 else (idx,)
        for part, (j, _, scale) in zip(parts, members):
            c = bin_counts(part).to(torch.float32)
            rows[j] = c * scale if scale != 1.0 else c
    return torch.stack(rows)


JOINT_MAX = 1 << 20  # counted in one go up to this many values (the offsets are kept: 8 bytes each)
_offsets_cache: dict = {}


def _offsets(device, sizes: tuple[int, ...]) -> torch.Tensor:
    """Each value's row of bins (its tensor's place x (N_BINS + 1)), for tensors of ``sizes``
    one after another: the same every measured step of a run, so made once (not with
    ``repeat_interleave``: on the CPU it always opens an OpenMP region, which deadlocks a
    forked child of a process that opened one before)."""
    key = (str(device), sizes)
    t = _offsets_cache.get(key)
    if t is None:
        if len(_offsets_cache) >= 8:  # one a run's set of tensors: at most 8 MB each
            _offsets_cache.clear()
        t = _offsets_cache[key] = torch.cat([torch.full((n,), j * (N_BINS + 1), dtype=torch.int64, device=device)
                                             for j, n in enumerate(sizes)])
    return t


def _sampled(flat: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``flat`` itself, or an even stride through it of at most MAX_ELEMENTS, and the scale back."""
    if flat.numel() <= MAX_ELEMENTS:
        return flat, 1.0
    stride = math.ceil(flat.numel() / MAX_ELEMENTS)
    return flat[::stride].contiguous(), flat.numel() / math.ceil(flat.numel() / stride)


def bin_counts(idx: torch.Tensor, rows: int = 0) -> torch.Tensor:
    """How many of ``idx`` (int64, each in 0..N_BINS) fall in each of the N_BINS + 1 columns;
    with ``rows``, indices shifted by row x (N_BINS + 1) counted as [rows, N_BINS + 1].
    ``bincount`` on the CPU; elsewhere a scatter-add, because CUDA's ``bincount`` reads the
    largest index to the host first (a sync each call), and scatter_add_ over one dimension
    stays deterministic under ``torch.use_deterministic_algorithms`` (integer counts: exact)."""
    size = (N_BINS + 1) * max(1, rows)
    if idx.device.type == "cpu":
        c = torch.bincount(idx, minlength=size)
    else:
        c = scatter_counts(idx, size)
    return c.view(rows, N_BINS + 1) if rows else c


def scatter_counts(idx: torch.Tensor, size: int = N_BINS + 1) -> torch.Tensor:
    """``bin_counts`` off the CPU (any device: tested against ``bincount`` on the CPU)."""
    return torch.zeros(size, dtype=torch.int64, device=idx.device).scatter_add_(0, idx, torch.ones_like(idx))


class Distributions:
    """Histograms over time for many (tensor, what) pairs on one grid of time buckets."""

    def __init__(self, capacity: int = CAPACITY, origin: int = 0):
        self.capacity = capacity
        self.origin = origin  # the step before the first bucket's (a resumed checkpoint's step)
        self.width = 1  # steps per time bucket
        self.n = 0
        self.data: dict[tuple[str, str], np.ndarray] = {}  # (tensor, "value"/"grad"/state key) -> [capacity, bins]
        self.samples: dict[tuple[str, str], np.ndarray] = {}  # how many steps each bucket summed

    def add(self, step: int, hists: dict) -> None:
        """``hists``: (tensor, what) -> counts (numpy, N_BINS + 1) measured at ``step``."""
        i = (step - self.origin - 1) // self.width
        while i >= self.capacity:
            self._merge()
            i = (step - self.origin - 1) // self.width
        self.n = max(self.n, i + 1)
        for key, c in hists.items():
            a = self.data.get(key)
            if a is None:
                a = self.data[key] = np.zeros((self.capacity, N_BINS + 1), np.float32)
                self.samples[key] = np.zeros(self.capacity, np.int32)
            a[i] += c
            self.samples[key][i] += 1

    def _merge(self) -> None:
        half = (self.n + 1) // 2
        for key, a in self.data.items():
            merged = a[0:2 * half:2].copy()
            merged[:len(a[1:2 * half:2])] += a[1:2 * half:2]
            a[:half], a[half:] = merged, 0
            s = self.samples[key]
            ms = s[0:2 * half:2].copy()
            ms[:len(s[1:2 * half:2])] += s[1:2 * half:2]
            s[:half], s[half:] = ms, 0
        self.width *= 2
        self.n = half

    def truncated(self, step: int) -> "Distributions":
        out = Distributions(self.capacity, self.origin)
        out.width = self.width
        keep = min(self.n, max(0, (step - self.origin - 1) // self.width + 1)) if step > self.origin else 0
        out.n = keep
        for key, a in self.data.items():
            out.data[key] = a.copy()
            out.data[key][keep:] = 0
            out.samples[key] = self.samples[key].copy()
            out.samples[key][keep:] = 0
        return out

    def view(self, key) -> tuple[np.ndarray, np.ndarray] | None:
        """(last step of each bucket, mean histogram per step in it [buckets, bins+1]) or None."""
        a = self.data.get(key)
        if a is None:
            return None
        n = self.n
        s = np.maximum(self.samples[key][:n], 1)[:, None]
        steps = self.origin + (np.arange(n, dtype=np.float64) + 1) * self.width
        return steps, a[:n] / s

    def keys(self) -> list:
        return sorted(self.data)

    # ----- saving: plain data (torch.load(weights_only=True) reads it) -----

    def to_saved(self) -> dict:
        keys = self.keys()
        n = self.n
        return {"grid": [self.width, n, self.capacity, self.origin], "keys": [[int(i), str(w)] for i, w in keys],
                "counts": torch.from_numpy(np.stack([self.data[k][:n] for k in keys])) if keys else torch.zeros(0),
                "samples": torch.from_numpy(np.stack([self.samples[k][:n] for k in keys])) if keys else torch.zeros(0)}

    @classmethod
    def from_saved(cls, d: dict) -> "Distributions":
        grid = [int(v) for v in d["grid"]]
        if len(grid) not in (3, 4):
            raise ValueError("the saved distributions are damaged")
        width, n, capacity, origin = grid + [0] * (4 - len(grid))  # files before resuming: origin 0
        if not (1 <= capacity <= 1 << 16 and width >= 1 and 0 <= n <= capacity and origin >= 0):
            raise ValueError("the saved distributions are damaged")
        out = cls(capacity, origin)
        out.width, out.n = width, n
        counts, samples = d["counts"], d["samples"]
        keys = [tuple(k) for k in d["keys"]]
        if keys and (tuple(counts.shape) != (len(keys), n, N_BINS + 1) or tuple(samples.shape) != (len(keys), n)):
            raise ValueError("the saved distributions are damaged")
        for j, key in enumerate(keys):
            a = np.zeros((capacity, N_BINS + 1), np.float32)
            a[:n] = counts[j].numpy()
            s = np.zeros(capacity, np.int32)
            s[:n] = samples[j].numpy()
            out.data[(int(key[0]), str(key[1]))], out.samples[(int(key[0]), str(key[1]))] = a, s
        return out
