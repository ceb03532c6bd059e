"""Fingerprints of a run's result, computed the same way at export and by the exported script.

The exported script carries these functions' source (``inspect.getsource``): they use
only ``hashlib`` and ``torch``. A fingerprint is the SHA-256 of a tensor's dtype, shape
and bytes (a sparse tensor: its coalesced indices and values), or of a number's repr;
lists and dicts are fingerprinted element by element, in order.
"""
from __future__ import annotations

import hashlib

import torch


def digest(value) -> str:
    """SHA-256 (hex) of a tensor's dtype, shape and bytes, or of a plain value's repr (lists and
    dicts element by element)."""
    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            if v.is_sparse:
                v = v.coalesce()
                h.update(b"sparse")
                feed(v.indices())
                feed(v.values())
                return
            h.update(f"{v.dtype} {tuple(v.shape)}:".encode())
            h.update(v.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(v, (list, tuple)):
            h.update(b"[")
            for x in v:
                feed(x)
            h.update(b"]")
        elif isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v, key=str):
                h.update(f"{k!r}:".encode())
                feed(v[k])
            h.update(b"}")
        else:
            h.update(repr(v).encode())
    feed(value)
    return h.hexdigest()


def fingerprints(params: dict, optimizer) -> dict:
    """``{what: digest}`` for every parameter, gradient and optimizer state entry, and each param_group."""
    out = {}
    for name, p in params.items():
        out[f"param {name}"] = digest(p)
        out[f"grad {name}"] = digest(p.grad)
    sd = optimizer.state_dict()
    for i, state in sd["state"].items():
        for key, value in state.items():
            out[f"state {i} {key}"] = digest(value)
    for gi, group in enumerate(sd["param_groups"]):
        out[f"param_groups[{gi}]"] = digest(group)
    return out
