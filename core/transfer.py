"""Bring many tensors to the host at once: one copy per device, whatever their number.

Every read of a GPU tensor's values waits for the GPU to finish its queue, so a snapshot
that copied each tensor (and each statistic) on its own would wait dozens of times a
frame. ``HostBatch`` gathers the tensors of one device into one buffer on that device
(their bytes, each piece padded to 8 bytes so every array stays aligned), copies it in
one transfer, and hands back numpy arrays that are views of that one host buffer:

- CUDA: a non-blocking copy into pinned (page-locked) host memory kept per device,
  waited for once, then one memcpy out of it (the pinned buffer is reused);
- CPU: the gathered buffer is already on the host (one copy, no wait);
- other devices (MPS): one ``.cpu()`` of the gathered buffer.

Nothing here changes a tensor; the caller decides what to copy (already converted to a
dtype numpy holds).
"""
from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np
import torch

_ALIGN = 8
NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16,
                torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16, torch.int8: np.int8,
                torch.uint8: np.uint8, torch.bool: np.bool_, torch.complex64: np.complex64,
                torch.complex128: np.complex128}
_pinned: dict[str, torch.Tensor] = {}  # device -> reusable pinned host buffer
_copied = {"device": 0, "host": 0}  # bytes fetched in this process, from devices / on the CPU
_pads: dict = {}  # device -> eight zero bytes there
_pinned_lock = threading.Lock()  # two runners (threads) in one process share the buffers


class HostBatch:
    """Tensors to read together; ``fetch()`` returns them as numpy arrays (C order, same
    shapes and dtypes), copying once per device.

    The tensors of one device and dtype are gathered by one ``torch.cat`` into a run; the
    runs (padded to 8 bytes) into one buffer, copied once. ``runs`` (after ``fetch``) gives
    each run as one flat host array with its members' (index, start, length), for work that
    is cheaper over all of them at once (statistics with numpy's ``reduceat``)."""

    def __init__(self):
        self._by_device: dict[torch.device, dict[torch.dtype, list]] = defaultdict(dict)
        self._count = 0
        self.nbytes = 0  # bytes the last fetch brought over from devices other than the CPU
        self.runs: list[tuple[torch.device, np.ndarray, list[tuple[int, int, int]]]] = []

    def add(self, t: torch.Tensor) -> int:
        """Queue ``t`` (dense, a dtype numpy has); returns its index in ``fetch()``'s list."""
        if t.dtype not in NUMPY_DTYPES:
            raise TypeError(f"numpy has no {str(t.dtype).removeprefix('torch.')}: convert a copy first")
        i = self._count
        self._count += 1
        self._by_device[t.device].setdefault(t.dtype, []).append((i, t.detach()))
        return i

    def fetch(self) -> list[np.ndarray]:
        out: list = [None] * self._count
        self.nbytes = 0
        self.runs = []
        for device, by_dtype in self._by_device.items():
            parts, runs = [], []
            offset = 0
            for dtype, members in by_dtype.items():
                flats = [t.reshape(-1) for _, t in members]
                cat = torch.cat(flats)  # a copy, even of one tensor
                nbytes = cat.numel() * cat.element_size()
                if nbytes:
                    parts.append(cat.view(torch.uint8))
                pad = -nbytes % _ALIGN
                if pad:
                    parts.append(_zeros(device)[:pad])
                runs.append((dtype, offset, nbytes, members, [f.numel() for f in flats]))
                offset += nbytes + pad
            flat = parts[0] if len(parts) == 1 else torch.cat(parts) if parts else \
                torch.zeros(0, dtype=torch.uint8, device=device)
            host = _to_host(flat)
            if device.type != "cpu":
                self.nbytes += host.nbytes
            _copied["device" if device.type != "cpu" else "host"] += host.nbytes
            for dtype, off, nbytes, members, sizes in runs:
                arr = host[off:off + nbytes].view(NUMPY_DTYPES[dtype])
                spans, start = [], 0
                for (i, t), k in zip(members, sizes):
                    out[i] = arr[start:start + k].reshape(tuple(t.shape))
                    spans.append((i, start, k))
                    start += k
                self.runs.append((device, arr, spans))
        self._by_device.clear()
        self._count = 0
        return out


def _zeros(device) -> torch.Tensor:
    """Eight zero bytes on ``device``, made once (padding costs no kernel per snapshot)."""
    z = _pads.get(device)
    if z is None:
        z = _pads[device] = torch.zeros(_ALIGN, dtype=torch.uint8, device=device)
    return z


def copied_bytes() -> dict[str, int]:
    """Bytes fetched in this process so far: ``device`` (over to the host) and ``host`` (CPU
    tensors gathered), for the benchmarks' bytes per second."""
    return dict(_copied)


def _to_host(flat: torch.Tensor) -> np.ndarray:
    """The bytes of ``flat`` (uint8, on its device) in host memory: one transfer."""
    if flat.device.type == "cpu":
        return flat.numpy()
    if flat.device.type == "cuda":
        return _via_pinned(flat)
    return flat.cpu().numpy()


def _via_pinned(flat: torch.Tensor) -> np.ndarray:
    """CUDA: a non-blocking copy into this device's pinned buffer, one wait, one memcpy out."""
    key = str(flat.device)
    n = flat.numel()
    with _pinned_lock:
        buf = _pinned.get(key)
        if buf is None or buf.numel() < n:  # grows by powers of two, from 1 MB
            buf = _pinned[key] = torch.empty(1 << max(20, (n - 1).bit_length()), dtype=torch.uint8,
                                             pin_memory=True)
        buf[:n].copy_(flat, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(flat.device))
        done.synchronize()
        return buf[:n].numpy().copy()  # the buffer is reused by the next snapshot
