"""Nested state (dicts, lists and tuples of tensors and plain values), rebuilt tensor by tensor."""
from __future__ import annotations

import torch


def map_tensors(obj, fn, leaf=lambda x: x):
    """``obj`` rebuilt with ``fn(t)`` for each tensor and ``leaf(x)`` for each other value; dicts
    (as plain dicts), lists and tuples are walked."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn, leaf) for k, v in obj.items()}
    if isinstance(obj, list):
        return [map_tensors(v, fn, leaf) for v in obj]
    if isinstance(obj, tuple):
        return tuple(map_tensors(v, fn, leaf) for v in obj)
    return leaf(obj)
