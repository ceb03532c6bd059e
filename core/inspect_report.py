"""``optimlab inspect PATH [--json]``: a checkpoint's optimizer state per parameter name, as text or JSON."""
from __future__ import annotations

import json
import math

from .checkpoints import CheckpointInfo, TensorRef, open_checkpoint
from .safe_load import NotLoaded


def _tensor(t: TensorRef, norms: bool) -> dict:
    d = {"shape": list(t.shape), "dtype": t.dtype}
    if norms:
        n = t.norm()
        d["norm"] = n if math.isfinite(n) else str(n)
    return d


def _entry(v, norms: bool):
    if isinstance(v, TensorRef):
        return _tensor(v, norms) if v.shape else {"shape": [], "dtype": v.dtype, "value": v.tensor().item()}
    if isinstance(v, NotLoaded):
        return str(v)
    return v


def summary(info: CheckpointInfo, norms: bool = True) -> dict:
    """Plain data (what --json prints)."""
    return {
        "path": info.path, "format": info.format, "info": info.info,
        "weights": {w: {n: _tensor(t, norms) for n, t in ts.items()} for w, ts in info.weights.items()},
        "optimizers": [{"where": o.where, "kind": o.kind, "names_from": o.names_from, "groups": o.groups,
                        "params": [{"name": p.name, "key": p.key, "group": p.group,
                                    "shape": None if p.weight is None else list(p.weight.shape),
                                    "state": {k: _entry(v, norms) for k, v in p.state.items()}}
                                   for p in o.params]} for o in info.optimizers],
        "schedulers": [{"where": w, "state": s} for w, s in info.schedulers],
        "not_loaded": [{"where": w, "why": str(n)} for w, n in info.not_loaded],
    }


def _fmt(d) -> str:
    if isinstance(d, dict) and "shape" in d:
        if "value" in d:
            return f"{d['value']:g}" if isinstance(d["value"], float) else str(d["value"])
        norm = d.get("norm")
        norm = "" if norm is None else (f"  norm {norm:.6g}" if isinstance(norm, float) else f"  norm {norm}")
        return f"{list(d['shape'])} {d['dtype']}{norm}"
    return str(d)


def text(s: dict) -> str:
    out = [f"{s['path']}: {s['format']} checkpoint"]
    if s["info"]:
        out.append("  " + ", ".join(f"{k} {v}" for k, v in s["info"].items()))
    for where, ts in s["weights"].items():
        numel = sum(math.prod(t["shape"]) for t in ts.values())
        out.append(f"  weights at {where}: {len(ts)} tensors, {numel:,} numbers")
    if not s["optimizers"]:
        out.append("  no optimizer state found")
    for o in s["optimizers"]:
        out.append(f"  optimizer at {o['where']}: {o['kind']}, {len(o['groups'])} group(s), "
                   f"{len(o['params'])} parameters; names from {o['names_from']}")
        for gi, g in enumerate(o["groups"]):
            out.append(f"    group {gi}: " + ", ".join(f"{k} {v}" for k, v in g.items()))
        width = max((len(p["name"]) for p in o["params"]), default=0)
        for p in o["params"]:
            shape = "" if p["shape"] is None else f" {p['shape']}"
            out.append(f"    {p['name']:<{width}}  (group {p['group']}, key {p['key']}){shape}")
            for k, v in p["state"].items():
                out.append(f"      {k}: {_fmt(v)}")
    for sch in s["schedulers"]:
        out.append(f"  scheduler at {sch['where']}: " + ", ".join(f"{k} {v}" for k, v in sch["state"].items()))
    for n in s["not_loaded"]:
        out.append(f"  {n['where']}: {n['why']}")
    return "\n".join(out)


def inspect(path, as_json: bool = False, norms: bool = True, out=None) -> int:
    import sys
    out = out if out is not None else sys.stdout
    s = summary(open_checkpoint(path), norms)
    print(json.dumps(s, default=str) if as_json else text(s), file=out)
    return 0
