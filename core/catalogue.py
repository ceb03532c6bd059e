"""The optimizer catalogue: every optimizer class in the installed torch.optim.

Found at run time and described from torch itself (signature and docstring), so
forms are generated with nothing written per optimizer. The few rules torch only
enforces deep inside ``step`` are checked here first and said in one sentence.
"""
from __future__ import annotations

import inspect
import re
from functools import lru_cache

import torch

from .hparams import (ADVANCED, BOOL, CHOICE, FLOAT, INT, OPT_BOOL, TEXT, TUPLE, HyperParam,
                      OptimizerInfo)

# Rules torch checks late (inside step) or not at all; each is one sentence for the user.
NEEDS_2D = {"Muon"}
NEEDS_SPARSE = {"SparseAdam"}
NEEDS_CLOSURE = {"LBFGS"}
ONE_GROUP = {"LBFGS"}

_ARG = re.compile(r"^\s{4,}(\w+) \(([^)]*)\)\s*:\s*(.*)$")


def optimizer_classes() -> dict[str, type]:
    """Name -> class for every Optimizer subclass that torch.optim exports."""
    out = {}
    for name in dir(torch.optim):
        obj = getattr(torch.optim, name)
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
            out[name] = obj
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def _arg_docs(doc: str) -> dict[str, str]:
    """Parse the ``Args:`` section of a torch.optim docstring into name -> text."""
    docs: dict[str, str] = {}
    if "Args:" not in doc:
        return docs
    section = doc.split("Args:", 1)[1]
    current = None
    base_indent = None
    for line in section.splitlines():
        if not line.strip():
            if current:
                current = None
            continue
        m = _ARG.match(line)
        indent = len(line) - len(line.lstrip())
        if m and (base_indent is None or indent == base_indent):
            base_indent = indent
            current = m.group(1)
            docs[current] = m.group(3).strip()
        elif current and base_indent is not None and indent > base_indent:
            docs[current] += " " + line.strip()
        elif base_indent is not None and indent <= base_indent and not m:
            break
    return {k: re.sub(r"\s+", " ", v) for k, v in docs.items()}


def _choices(doc: str) -> tuple[str, ...]:
    """String options a docstring names in quotes ("strong_wolfe", "original", ...)."""
    found = re.findall(r"[\"'`]([A-Za-z_][A-Za-z0-9_]*)[\"'`]", doc)
    return tuple(dict.fromkeys(f for f in found if f not in ("None", "True", "False")))


def _describe(param: inspect.Parameter, doc: str) -> HyperParam:
    ann = str(param.annotation)
    default = param.default
    optional = default is None or "None" in ann
    advanced = param.name in ADVANCED
    if isinstance(default, bool) or (default is None and "bool" in ann):
        kind = BOOL if isinstance(default, bool) else OPT_BOOL
        return HyperParam(param.name, kind, default, doc, optional=kind == OPT_BOOL, advanced=advanced)
    if isinstance(default, tuple) or "tuple" in ann:
        return HyperParam(param.name, TUPLE, default, doc, length=len(default or ()), optional=False,
                          advanced=advanced)
    if "str" in ann:
        choices = _choices(doc)
        if choices:
            opts = ((None,) if optional else ()) + choices
            return HyperParam(param.name, CHOICE, default, doc, choices=opts, optional=optional,
                              advanced=advanced)
        return HyperParam(param.name, TEXT, default, doc, optional=optional, advanced=advanced)
    if "float" in ann or isinstance(default, float):
        # keep torch's own default (SGD's dampening is the int 0): only user edits are passed on
        return HyperParam(param.name, FLOAT, default, doc, optional=optional, advanced=advanced)
    if "int" in ann or isinstance(default, int):
        return HyperParam(param.name, INT, default, doc, optional=optional, advanced=advanced)
    return HyperParam(param.name, TEXT, default, doc, optional=optional, advanced=advanced)


def _constraints(name: str) -> tuple[str, ...]:
    out = []
    if name in NEEDS_2D:
        out.append(f"{name} optimizes only 2-D tensors (matrices).")
    if name in NEEDS_SPARSE:
        out.append(f"{name} needs sparse gradients: use a manual gradient with 'sparse' on.")
    if name in NEEDS_CLOSURE:
        out.append(f"{name} re-evaluates the loss several times per step; optimlab supplies the closure.")
    if name in ONE_GROUP:
        out.append(f"{name} does not support parameter groups: one group only.")
    return tuple(out)


@lru_cache(maxsize=None)
def info(name: str) -> OptimizerInfo:
    """The description of one optimizer, read from torch."""
    classes = optimizer_classes()
    if name not in classes:
        raise ValueError(f"Unknown optimizer {name!r}: torch.optim has {', '.join(classes)}")
    cls = classes[name]
    doc = inspect.getdoc(cls) or ""
    summary = doc.strip().splitlines()[0].strip() if doc.strip() else name
    docs = _arg_docs(cls.__doc__ or "")
    params = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in ("self", "params") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        params.append(_describe(p, docs.get(p.name, "")))
    return OptimizerInfo(name, summary, tuple(params), _constraints(name))


def catalogue() -> list[OptimizerInfo]:
    return [info(n) for n in optimizer_classes()]


def validate_hparams(name: str, hparams: dict, ndim: int = 2, device: str | None = None,
                     dtypes=("float32",)) -> None:
    """Raise ValueError with torch's own sentence if torch would refuse ``hparams``.

    Builds the optimizer on a throwaway tensor: torch's __init__ checks ranges
    (``Invalid learning rate: -1``) and we add the names and types it does not
    check. The advanced flags (capturable, fused, ...) are tried with one step on
    ``device`` (None: any device here) for each parameter dtype in ``dtypes``, since
    torch refuses some only inside step (capturable on the CPU, fused for a dtype
    its kernels lack).
    """
    desc = info(name)
    known = {h.name for h in desc.hparams}
    unknown = [k for k in hparams if k not in known]
    if unknown:
        raise ValueError(f"{name} has no hyperparameter {unknown[0]!r}; it has {', '.join(sorted(known))}")
    for k, v in hparams.items():
        _check_type(desc.hparam(k), v)
    shape = (2, 2) if name in NEEDS_2D else (2,) * max(1, ndim)
    dummy = torch.zeros(shape, requires_grad=True)
    try:
        optimizer_classes()[name]([dummy], **hparams)
    except (ValueError, TypeError, RuntimeError, OverflowError) as e:
        raise ValueError(str(e)) from None
    flags = [k for k in ADVANCED if hparams.get(k)]
    if flags:
        for dtype in dict.fromkeys(dtypes):
            _check_runs(name, hparams, shape, flags, device, dtype)


def _check_type(h: HyperParam, v) -> None:
    """The value's type fits the argument (torch itself checks ranges, not types)."""
    k = h.name
    if v is None:
        if not h.optional:
            raise ValueError(f"{k} cannot be None")
        return
    if h.kind == TUPLE:
        if not isinstance(v, tuple) or (h.length and len(v) != h.length):
            raise ValueError(f"{k} must be a tuple of {h.length} numbers, not {v!r}")
        default = h.default if isinstance(h.default, tuple) else ()
        for i, item in enumerate(v):
            may_be_none = i < len(default) and default[i] is None
            if not (_is_number(item) or (item is None and may_be_none)):
                raise ValueError(f"{k} must hold numbers, not {item!r}")
    elif h.kind == CHOICE and v not in h.choices:
        raise ValueError(f"{k} must be one of {', '.join(map(repr, h.choices))}, not {v!r}")
    elif h.kind in (FLOAT, INT) and not _is_number(v):
        raise ValueError(f"{k} must be a number, not {v!r}")
    elif h.kind == INT and not isinstance(v, int):
        raise ValueError(f"{k} must be a whole number, not {v!r}")
    elif h.kind in (BOOL, OPT_BOOL) and not isinstance(v, bool):
        raise ValueError(f"{k} must be True or False, not {v!r}")
    elif h.kind == TEXT and not isinstance(v, str):
        raise ValueError(f"{k} must be text, not {v!r}")


def _is_number(v) -> bool:
    """A plain int or float that torch can hold (bools are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return not isinstance(v, int) or -(2 ** 63) <= v < 2 ** 63


def _check_runs(name: str, hparams: dict, shape, flags: list[str], device: str | None,
                dtype: str = "float32") -> None:
    """One step on a throwaway tensor with zero gradient: capturable on the CPU, say, is
    accepted by the constructor and fails only in step (an AssertionError traceback)."""
    candidates = [device] if device is not None else devices()
    first = None
    for dev in candidates:
        try:
            _trial_step(name, hparams, shape, dev, dtype)
            return
        except Exception as e:  # noqa: BLE001 - torch fails here with AssertionError, RuntimeError...
            first = first or (dev, e)
    dev, e = first
    said = (str(e).strip().splitlines() or [type(e).__name__])[0]
    setting = ", ".join(f"{k}={hparams[k]!r}" for k in sorted(flags))
    if "differentiable" in flags and "leaf Variable" in said:
        raise ValueError(f"{name} cannot step with {setting}: that mode is for parameters computed "
                         f"inside autograd, and a session's tensors are leaves (torch: {said})")
    dt = "" if dtype == "float32" else f" for {dtype} tensors"
    raise ValueError(f"{name} cannot run with {setting} on {dev}{dt}: {said}")


def _trial_step(name: str, hparams: dict, shape, device: str, dtype: str = "float32") -> None:
    p = torch.zeros(shape, device=device, dtype=getattr(torch, dtype), requires_grad=True)
    g = torch.zeros_like(p)
    p.grad = g.to_sparse() if name in NEEDS_SPARSE else g
    opt = optimizer_classes()[name]([p], **hparams)
    if name in NEEDS_CLOSURE:
        opt.step(lambda: torch.zeros((), device=device))
    else:
        opt.step()


def group_keys(name: str) -> frozenset[str]:
    """The hyperparameter names a param_group of this optimizer carries in its state_dict."""
    return frozenset(_fresh_group(name)) - {"params"}


@lru_cache(maxsize=None)
def _fresh_group(name: str) -> dict:
    dummy = torch.zeros((2, 2), requires_grad=True)
    opt = optimizer_classes()[name]([dummy])
    return {k: v for k, v in opt.param_groups[0].items() if k != "params"}


@lru_cache(maxsize=None)
def fixed_group_values(name: str) -> dict:
    """Group entries the class sets itself, not from an argument: what tells it apart.

    AdamW is Adam with ``decoupled_weight_decay=True`` fixed, so both carry the same
    keys; only this value says which of the two wrote a state_dict.
    """
    args = {h.name for h in info(name).hparams}
    return {k: v for k, v in _fresh_group(name).items() if k not in args}


@lru_cache(maxsize=None)
def filled_keys(name: str) -> frozenset[str]:
    """Group keys torch fills in when a loaded state_dict lacks them (files from older
    torch versions, written before the key existed)."""
    out = set()
    for key in group_keys(name):
        dummy = torch.zeros((2, 2), requires_grad=True)
        opt = optimizer_classes()[name]([dummy])
        group = {k: v for k, v in _fresh_group(name).items() if k != key}
        try:
            opt.load_state_dict({"state": {}, "param_groups": [{**group, "params": [0]}]})
        except Exception:  # noqa: BLE001 - a key torch cannot do without
            continue
        if key in opt.param_groups[0]:
            out.add(key)
    return frozenset(out)


def identify(keys, values: dict | None = None) -> list[str]:
    """Optimizers that could have written a param_group with these keys (those torch fills
    in on load may be missing) and, given the group's ``values``, whose fixed entries agree."""
    keys = frozenset(keys) - {"params", "param_names", "initial_lr"}
    out = []
    for n in optimizer_classes():
        want = group_keys(n)
        if not (keys <= want and want - keys <= filled_keys(n)):
            continue
        fixed = fixed_group_values(n)
        if values is None or all(k not in values or same_value(values[k], v) for k, v in fixed.items()):
            out.append(n)
    return out


def same_value(a, b) -> bool:
    """Equal plain values of the same type (never compares a tensor or a list by truth)."""
    plain = (bool, int, float, str, type(None))
    return isinstance(a, plain) and type(a) is type(b) and a == b


def devices() -> list[str]:
    """Devices torch reports on this machine, CPU first (see ``core.devices``)."""
    from .devices import available
    return available()
