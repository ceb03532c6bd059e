"""Open real checkpoints and show their optimizer state per parameter name.

Formats: a plain ``torch.save`` file (nested dicts under any key names, several optimizers),
a PyTorch Lightning ``.ckpt`` (``state_dict``, ``optimizer_states``, ``lr_schedulers``), a
Hugging Face Trainer checkpoint folder (``optimizer.pt``, ``scheduler.pt``,
``trainer_state.json``, weights in safetensors), and a torch.distributed.checkpoint folder.
Everything is read lazily (``core.safe_load``, ``core.dcp_read``): opening lists names,
shapes and dtypes; a tensor's values are read when asked for (``TensorRef.tensor()``).

Optimizer state is keyed by position in a torch state_dict; names come, in this order of
preference, from the groups' ``param_names``, from string keys (DCP's ``get_state_dict``),
or from a weights dict in the same checkpoint whose parameters, in state_dict order (or
Hugging Face's weight-decay grouping), have exactly the shapes of the state tensors.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .paths import LoadError
from .safe_load import (NotLoaded, SortedWeights, is_dcp, load_json, load_safetensors, load_torch, module_order,
                        not_loaded)

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar")


@dataclass
class TensorRef:
    """A tensor in a checkpoint: shape and dtype now, values when ``tensor()`` is called."""

    shape: tuple[int, ...]
    dtype: str
    _load: Callable[[], torch.Tensor] = field(repr=False)

    @staticmethod
    def of(t: torch.Tensor) -> "TensorRef":
        return TensorRef(tuple(t.shape), str(t.dtype).replace("torch.", ""), lambda: t)

    def tensor(self) -> torch.Tensor:
        return self._load()

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def norm(self) -> float:
        t = self.tensor()
        if t.is_sparse:
            t = t.coalesce().values()
        if t.is_complex() or t.is_floating_point():
            return float(torch.linalg.vector_norm(t, dtype=torch.complex128 if t.is_complex() else torch.float64))
        return float(torch.linalg.vector_norm(t.to(torch.float64)))


@dataclass
class ParamState:
    """One parameter's optimizer state: name, group, and each state entry."""

    name: str
    key: object  # its key in the state_dict's "state" (an index, or a name)
    group: int
    state: dict  # entry -> TensorRef | plain value | NotLoaded
    weight: TensorRef | None = None  # the parameter itself, when the checkpoint holds it


@dataclass
class OptimizerInfo:
    where: str  # the key path inside the checkpoint, e.g. optimizer_states[1]
    kind: str  # the optimizer the state looks like (a guess from its keys)
    groups: list  # hyperparameters per group (params omitted)
    params: list  # ParamState, in state_dict order
    names_from: str  # how the names were found


@dataclass
class CheckpointInfo:
    path: str
    format: str
    weights: dict  # where -> {name: TensorRef}
    optimizers: list
    schedulers: list  # (where, plain dict)
    info: dict  # plain scalars worth showing (epoch, global_step, ...)
    not_loaded: list  # (where, NotLoaded)


def open_checkpoint(path) -> CheckpointInfo:
    """Read ``path`` (a file or a folder) lazily; LoadError in one sentence if it cannot be."""
    obj, fmt = load_raw(path)
    return describe(obj, str(path), fmt)


def load_raw(path) -> tuple[object, str]:
    """(the checkpoint as nested containers with tensors or lazy TensorRefs, its format name)."""
    p = Path(path)
    if p.is_dir():
        if is_dcp(p):
            from .dcp_read import load_dcp
            return load_dcp(p), "torch.distributed.checkpoint"
        return _folder(p)
    if p.suffix == ".safetensors":
        return {"model": load_safetensors(p)}, "safetensors"
    obj = load_torch(p)
    fmt = "PyTorch Lightning" if isinstance(obj, dict) and ("pytorch-lightning_version" in obj
                                                            or "optimizer_states" in obj) else "torch.save"
    return obj, fmt


def _folder(p: Path):
    """A trainer's checkpoint folder as one dict keyed by file stem."""
    out: dict = {}
    found = False
    for f in sorted(p.iterdir()):
        if not f.is_file():
            continue
        if f.suffix == ".safetensors":
            weights = out.setdefault("model", SortedWeights())
            weights.update(load_safetensors(f))
            out["model"] = SortedWeights({k: weights[k] for k in module_order(weights)})
        elif f.suffix in TORCH_SUFFIXES:
            try:
                out[f.stem] = load_torch(f)
            except LoadError as e:
                out[f.stem] = not_loaded("", reason=str(e))
        elif f.name == "trainer_state.json":
            out["trainer_state"] = load_json(f)
        else:
            continue
        found = True
    if not found:
        raise LoadError(f"{p} is a folder with no checkpoint files (.pt, .bin, .ckpt, .safetensors, or DCP .metadata)")
    fmt = "Hugging Face Trainer" if "trainer_state" in out else "checkpoint folder"
    return out, fmt


# ----- finding what is where -----

def parts(obj) -> tuple[dict, list, list, dict, list]:
    """What a checkpoint holds, as found: weights (where -> {name: TensorRef}), optimizer
    state_dicts and scheduler state_dicts as saved ((where, dict) each), plain scalars
    (where -> value) and the entries not loaded ((where, NotLoaded))."""
    weights: dict = {}
    opts: list = []
    scheds: list = []
    info: dict = {}
    missing: list = []
    _walk(obj, "", weights, opts, scheds, info, missing, 0)
    if isinstance(obj, dict) and isinstance(obj.get("trainer_state"), dict):
        ts = obj["trainer_state"]
        info.update({f"trainer_state.{k}": ts[k] for k in ("global_step", "epoch", "max_steps") if k in ts})
    return weights, opts, scheds, info, missing


def describe(obj, path: str, fmt: str) -> CheckpointInfo:
    weights, opts, raw_scheds, info, missing = parts(obj)
    scheds = [(where, {k: _plain(v) for k, v in sd.items()}) for where, sd in raw_scheds]
    optimizers = [_optimizer(where, sd, weights, claimed=set()) for where, sd in opts]
    _claim(optimizers, opts, weights)
    return CheckpointInfo(path, fmt, weights, optimizers, scheds, info, missing)


def _claim(optimizers, opts, weights) -> None:
    """Redo naming so that several optimizers over one model take different parameters."""
    claimed: set = set()
    for i, (where, sd) in enumerate(opts):
        optimizers[i] = _optimizer(where, sd, weights, claimed)
        claimed |= {p.name for p in optimizers[i].params}


def _join(where: str, k) -> str:
    return f"{where}[{k}]" if isinstance(k, int) else (f"{where}.{k}" if where else str(k))


def _is_optimizer(d) -> bool:
    return isinstance(d, dict) and isinstance(d.get("state"), dict) and isinstance(d.get("param_groups"), list)


def _is_scheduler(d) -> bool:
    return isinstance(d, dict) and "last_epoch" in d and ("base_lrs" in d or "_last_lr" in d)


def _walk(obj, where, weights, opts, scheds, info, missing, depth) -> None:
    if depth > 12:
        return
    if isinstance(obj, NotLoaded):
        missing.append((where or "(the whole file)", obj))
        return
    if _is_optimizer(obj):
        opts.append((where, obj))
        return
    if _is_scheduler(obj):
        scheds.append((where, obj))
        return
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, (torch.Tensor, TensorRef))}
        if tensors and len(tensors) >= len(obj) / 2:
            w = {k: v if isinstance(v, TensorRef) else TensorRef.of(v) for k, v in tensors.items()}
            weights[where or "(top level)"] = SortedWeights(w) if isinstance(obj, SortedWeights) else w
        for k, v in obj.items():
            if k in tensors:
                continue
            sub = _join(where, k)
            if isinstance(v, (dict, list, tuple, NotLoaded)) and sub != "trainer_state":
                _walk(v, sub, weights, opts, scheds, info, missing, depth + 1)
            elif depth <= 1 and isinstance(v, (int, float, str, bool)) and not isinstance(k, int):
                info[sub] = v
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            if isinstance(v, (dict, list, tuple, NotLoaded)):
                _walk(v, _join(where, i), weights, opts, scheds, info, missing, depth + 1)


def _plain(v):
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else f"tensor{list(v.shape)}"
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, NotLoaded):
        return str(v)
    return v


# ----- naming an optimizer's parameters -----

def _optimizer(where: str, sd: dict, weights: dict, claimed: set) -> OptimizerInfo:
    groups, order = [], []
    for gi, g in enumerate(sd["param_groups"]):
        if not isinstance(g, dict):
            continue
        groups.append({k: _plain(v) for k, v in g.items() if k not in ("params", "param_names")})
        params = g.get("params") if isinstance(g.get("params"), list) else []
        names = g.get("param_names") if isinstance(g.get("param_names"), list) else [None] * len(params)
        order.extend((key, gi, n) for key, n in zip(params, names))
    state = sd["state"]
    keyed = {k: _state_of(state.get(k, {})) for k, _, _ in order}
    for k in state:  # state for a key no group lists (damaged or partial files): still shown
        if k not in keyed:
            keyed[k] = _state_of(state[k])
            order.append((k, -1, None))
    names, how, source = _names(order, keyed, weights, claimed)
    params = [ParamState(names[i], key, gi, keyed[key]) for i, (key, gi, _) in enumerate(order)]
    for p in params:  # the weight itself: from the dict the names came from, else one of the right shape
        shape = _shape(p.state)
        found = [w[p.name] for w in ([source] if source is not None else weights.values()) if p.name in w]
        p.weight = next((t for t in found if shape is None or tuple(t.shape) == tuple(shape)), None)
    return OptimizerInfo(where or "(top level)", _kind(keyed, groups), groups, params, how)


def _state_of(st) -> dict:
    if not isinstance(st, dict):
        return {"(state)": str(st)}
    return {str(k): v if isinstance(v, (TensorRef, NotLoaded)) else
            (TensorRef.of(v) if isinstance(v, torch.Tensor) else _plain(v)) for k, v in st.items()}


def _names(order, keyed, weights, claimed):
    if order and all(n is not None for _, _, n in order):
        return [n for _, _, n in order], "the optimizer's param_names", None
    if order and all(isinstance(k, str) for k, _, _ in order):
        return [k for k, _, _ in order], "the checkpoint's state keys", None
    shapes = [_shape(keyed[k]) for k, _, _ in order]
    for where, w in weights.items():
        params = [n for n, t in w.items() if not n.endswith(_BUFFERS) and _floating(t)]
        hf = [n for n in params if not _no_decay(n)] + [n for n in params if _no_decay(n)]
        order_note = " (the file keeps names sorted: modules in natural order, weight before bias assumed)" \
            if isinstance(w, SortedWeights) else ""
        for label, cands in ((f"{where} in state_dict order{order_note}", params),
                             (f"{where}, grouped as Hugging Face's Trainer groups weight decay{order_note}", hf)):
            got = _match(cands, shapes, w, claimed)
            if got is not None:
                return got, f"{label} (shapes match)", w
    for where, w in weights.items():  # no run of the order fits: each slot takes the next name of its shape
        params = [n for n, t in w.items() if not n.endswith(_BUFFERS) and _floating(t) and n not in claimed]
        got = _first_fit(params, shapes, w)
        if got is not None:
            return got, f"{where}, each parameter the next unused name of its shape (equal shapes keep that order)", w
    return ([f"param {k}" for k, _, _ in order],
            "positions only (no weights in the checkpoint match the state's shapes)", None)


def _no_decay(name: str) -> bool:
    low = name.lower()
    return low.endswith("bias") or "norm" in low


def _floating(t: TensorRef) -> bool:
    return t.dtype.startswith(("float", "bfloat", "complex"))


def _shape(st: dict):
    """The parameter's shape as its state tells it (the first tensor entry with dimensions)."""
    for v in st.values():
        if isinstance(v, TensorRef) and v.shape:
            return v.shape
    return None


def _match(cands, shapes, w, claimed):
    n = len(shapes)
    if n == 0 or n > len(cands) or all(s is None for s in shapes):
        return None
    fallback = None
    for start in range(len(cands) - n + 1):
        window = cands[start:start + n]
        if all(s is None or tuple(w[c].shape) == tuple(s) for c, s in zip(window, shapes)):
            if not claimed.intersection(window):
                return window
            fallback = fallback or window
    return fallback


def _first_fit(cands, shapes, w):
    if not shapes or any(s is None for s in shapes):
        return None
    free = list(cands)
    out = []
    for s in shapes:
        i = next((i for i, c in enumerate(free) if tuple(w[c].shape) == tuple(s)), None)
        if i is None:
            return None
        out.append(free.pop(i))
    return out


def _kind(keyed: dict, groups: list) -> str:
    keys = set().union(*(st.keys() for st in keyed.values())) if keyed else set()
    g = groups[0] if groups else {}
    if {"exp_avg", "exp_avg_sq"} <= keys:
        if "mu_product" in keys:
            return "NAdam"
        if g.get("decoupled_weight_decay"):
            return "AdamW"
        return "Adam/AdamW"
    if "momentum_buffer" in keys or ("momentum" in g and "dampening" in g):
        return "SGD"
    for k, name in (("square_avg", "RMSprop/Adadelta"), ("sum", "Adagrad"), ("exp_inf", "Adamax"),
                    ("prev", "Rprop"), ("ax", "ASGD")):
        if k in keys:
            return name
    return "unknown (no state yet)" if not keys else "unknown"


def param_snapshot(p: ParamState, index: int = 0):
    """One parameter as the app draws it (a TensorSnapshot); reads its tensors now."""
    from .observe import array_view
    from .snapshot import TensorSnapshot

    def view(v):
        if isinstance(v, TensorRef):
            t = v.tensor()
            if t.dtype in (torch.bfloat16, torch.uint16, torch.uint32, torch.uint64):  # numpy has none of these
                return dataclasses.replace(array_view(t.double()), dtype=v.dtype)
            return array_view(t)
        return str(v) if isinstance(v, NotLoaded) else v
    value = view(p.weight) if p.weight is not None else None
    return TensorSnapshot(name=p.name, index=index, group=p.group, value=value, grad=None,
                          state={k: view(v) for k, v in p.state.items()})
