"""Count the host syncs a block of code makes, so CUDA paths can be checked on the CPU.

On a GPU every read of a tensor's values into Python or host memory (``.item()``,
``float(t)``, ``if t:``, ``.cpu()``, ``.tolist()``, ``.numpy()``, a move to the CPU, an op
whose result size depends on the values) waits for the device to finish. On the CPU the
same reads cost nothing, so a loop that makes one every step looks fine here and crawls
there. ``SyncCounter`` is a ``TorchFunctionMode`` that sees those calls whatever the device::

    with SyncCounter() as syncs:
        session.step_once()
    assert syncs.count == 0, syncs.report()

Reads made inside torch itself are left out unless ``include_torch``: torch decides where
its own bookkeeping lives (``torch.optim`` keeps a non-capturable optimizer's ``step``
counter on the CPU and reads it with ``.item()``, which is no device sync). What is
counted is the code under test's own reads, once per copy to the host (``t.cpu().numpy()``
is one sync: the ``numpy()`` of a tensor the block copied to the host is free). The mode is
per thread, as torch's modes are.
"""
from __future__ import annotations

import collections
import os
import sys
import weakref
from dataclasses import dataclass

import torch
import torch._jit_internal
import torch._tensor
import torch.functional
import torch.overrides
from torch.overrides import TorchFunctionMode

_T = torch.Tensor
# a read of values into Python or host memory, whatever the arguments
_READS = {
    _T.item: "item()", _T.__float__: "float()", _T.__int__: "int()", _T.__bool__: "bool()",
    _T.__index__: "index()", _T.__complex__: "complex()", _T.tolist: "tolist()", _T.numpy: "numpy()",
    _T.cpu: "cpu()", _T.__array__: "numpy array", _T.__format__: "format()", _T.__repr__: "repr()",
    _T.__contains__: "in", torch.equal: "equal()", _T.equal: "equal()", torch.allclose: "allclose()",
    _T.allclose: "allclose()", torch.is_nonzero: "is_nonzero()", _T.is_nonzero: "is_nonzero()",
    # the result's size depends on the values: the host must learn it
    torch.nonzero: "nonzero()", _T.nonzero: "nonzero()", torch.masked_select: "masked_select()",
    _T.masked_select: "masked_select()", torch.unique: "unique()", _T.unique: "unique()",
}
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
# frames between the caller and this mode when the function is written in Python: the
# dispatch itself and the thin wrappers around Python-level tensor functions (torch.unique)
_DISPATCH = {os.path.abspath(m.__file__) for m in (torch.overrides, torch._tensor, torch.functional,
                                                   torch._jit_internal)} | {os.path.abspath(__file__)}
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class Sync:
    op: str  # what read the values, e.g. "float()"
    where: str  # "core/session.py:312 in step_once": the line that asked


def _moves_to_cpu(args, kwargs) -> bool:
    """``Tensor.to(...)`` with a CPU target (a device, its name, or a tensor on the CPU)."""
    target = kwargs.get("device")
    for a in args[1:]:
        if isinstance(a, (str, torch.device)):
            target = a
            break
        if isinstance(a, torch.Tensor):
            target = a.device
            break
    return target is not None and torch.device(target).type == "cpu"


def _mask_index(args) -> bool:
    """``t[mask]`` with a boolean tensor: the result's size is the mask's count."""
    idx = args[1] if len(args) > 1 else None
    parts = idx if isinstance(idx, tuple) else (idx,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


def sync_op(func, args, kwargs) -> str | None:
    """The name of the host read ``func(*args, **kwargs)`` makes, or None."""
    op = _READS.get(func)
    if op is not None:
        return op
    if func is _T.to and _moves_to_cpu(args, kwargs):
        return "to(cpu)" + (" non_blocking" if kwargs.get("non_blocking") else "")
    if func is _T.__getitem__ and _mask_index(args):
        return "[bool mask]"
    return None


def _caller() -> tuple[str, bool]:
    """(``file:line in function`` of the line that made the call, whether it is torch's own)."""
    f = sys._getframe(2)
    while f is not None and os.path.abspath(f.f_code.co_filename) in _DISPATCH:
        f = f.f_back
    if f is None:
        return "?", False
    path = os.path.abspath(f.f_code.co_filename)
    internal = path.startswith(_TORCH_DIR)
    # torch's own files first: the venv may sit inside the repository (as .ci/run makes it)
    shown = "torch/" + path[len(_TORCH_DIR):] if internal else \
        os.path.relpath(path, _ROOT) if path.startswith(_ROOT + os.sep) else os.path.basename(path)
    return f"{shown}:{f.f_lineno} in {f.f_code.co_name}", internal


class SyncCounter(TorchFunctionMode):
    """Records every host read made on this thread while active (see the module docstring)."""

    def __init__(self, include_torch: bool = False):
        super().__init__()
        self.include_torch = include_torch
        self.syncs: list[Sync] = []
        self._host = weakref.WeakValueDictionary()  # id -> tensors this block copied to the host

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        op = sync_op(func, args, kwargs)
        on_host = bool(args) and self._host.get(id(args[0])) is args[0]
        if op is not None and not on_host:
            where, internal = _caller()
            if self.include_torch or not internal:
                self.syncs.append(Sync(op, where))
        out = func(*args, **kwargs)
        # what the block copied to the host, and what it computes from that, is read for free
        if isinstance(out, torch.Tensor) and (on_host or op in ("cpu()", "to(cpu)", "to(cpu) non_blocking")):
            self._host[id(out)] = out
        return out

    @property
    def count(self) -> int:
        return len(self.syncs)

    def clear(self) -> None:
        self.syncs.clear()

    def by_place(self) -> collections.Counter:
        """How many of each (op, where)."""
        return collections.Counter((s.op, s.where) for s in self.syncs)

    def report(self) -> str:
        rows = sorted(self.by_place().items(), key=lambda kv: -kv[1])
        return "\n".join(f"{n:6d}  {op:14s} {where}" for (op, where), n in rows) or "no host syncs"
