"""Frames and control messages as plain bytes: msgpack of dicts, lists, numbers, text and raw
array bytes (msgspec), never pickle.

A frame crosses a socket from a user's script to the app or a listener. Whatever arrives is
only data: the decoder rebuilds the frame's own dataclasses from an allowlist (by name),
and an array from its dtype (numbers and booleans only), shape and bytes, after checking that
they agree. Anything else is refused with :class:`WireError`; nothing is ever executed.
"""
from __future__ import annotations

import dataclasses
import functools
import typing

import msgspec
import numpy as np

from . import snapshot as snap_types

MAX_FRAME_BYTES = 1 << 30  # a frame carries previews, not whole big tensors: 1 GB is far above any
_DTYPES = frozenset({"bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                     "float16", "float32", "float64", "complex64", "complex128"})
_TYPES = {c.__name__: c for c in (snap_types.ArrayView, snap_types.TensorSnapshot, snap_types.GroupSnapshot,
                                  snap_types.History, snap_types.Snapshot, snap_types.RunError,
                                  snap_types.Decision, snap_types.BranchSummary)}
_ND, _DC = "__nd__", "__dc__"


class WireError(ValueError):
    """Bytes that are not a frame or a message of ours (nothing in them was run)."""


_last_history: tuple = (None, None)  # (History, its plain form): a running watch's frames repeat their curves


def _plain(obj):
    global _last_history
    if isinstance(obj, snap_types.History):
        h, d = _last_history
        if h is obj:  # the same curves as the last frame's (frames are immutable): not read again
            return d
        d = _plain_dataclass(obj)
        _last_history = (obj, d)
        return d
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain_dataclass(obj)
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        return {_ND: [a.dtype.name, list(a.shape), a.tobytes()]}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _plain_dataclass(obj) -> dict:
    name = type(obj).__name__
    if name not in _TYPES:
        raise TypeError(f"{name} cannot travel as a frame")
    d = {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    d[_DC] = name
    return d


def encode(obj) -> bytes:
    """A frame (or any of its parts, or a plain message) as msgpack bytes."""
    return msgspec.msgpack.encode(_plain(obj))


def decode(data: bytes):
    """The object ``encode`` wrote: plain values, numpy arrays, and the frame's dataclasses."""
    if len(data) > MAX_FRAME_BYTES:
        raise WireError(f"a message of {len(data):,} bytes is over the {MAX_FRAME_BYTES:,}-byte limit")
    try:
        raw = msgspec.msgpack.decode(data)
    except msgspec.DecodeError as e:
        raise WireError(f"not a message of ours ({e})") from None
    return _build(raw, 0)


def _build(v, depth: int):
    if depth > 32:
        raise WireError("a message nested more than 32 deep")
    if isinstance(v, dict):
        if _ND in v:
            return _array(v[_ND])
        name = v.get(_DC)
        if name is not None:
            return _dataclass(name, v, depth)
        return {k: _build(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list):
        return [_build(x, depth + 1) for x in v]
    return v


def _array(spec) -> np.ndarray:
    if not (isinstance(spec, list) and len(spec) == 3):
        raise WireError("an array without dtype, shape and bytes")
    dtype, shape, buf = spec
    if dtype not in _DTYPES:
        raise WireError(f"an array of dtype {dtype!r}, which is not a plain number type")
    if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)) or len(shape) > 8:
        raise WireError("an array with a malformed shape")
    if not isinstance(buf, bytes) or len(buf) != int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize:
        raise WireError("an array whose bytes do not match its shape")
    a = np.frombuffer(buf, dtype=dtype).reshape(shape)
    a.flags.writeable = False
    return a


@functools.cache
def _fields(cls) -> dict[str, bool]:
    """Field name -> whether it holds a tuple (read once a class: evaluating the annotations,
    strings here, took most of decoding a frame of ~50 arrays)."""
    hints = typing.get_type_hints(cls, vars(snap_types))
    return {f.name: _is_tuple(hints.get(f.name)) for f in dataclasses.fields(cls)}


def _dataclass(name, v: dict, depth: int):
    cls = _TYPES.get(name)
    if cls is None:
        raise WireError(f"a {name!r}, which is not a frame type")
    fields = _fields(cls)
    kwargs = {}
    for k, x in v.items():
        if k == _DC or k not in fields:
            continue  # a newer sender's extra field: ignored, as the version says what to expect
        val = _build(x, depth + 1)
        kwargs[k] = _tupled(val) if fields[k] else val
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise WireError(f"a {name} that does not fit ({e})") from None


def _is_tuple(hint) -> bool:
    return typing.get_origin(hint) is tuple or any(typing.get_origin(a) is tuple for a in typing.get_args(hint))


def _tupled(v):
    return tuple(_tupled(x) for x in v) if isinstance(v, list) else v
