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


def validate_hparams(name: str, hparams: dict, ndim: int = 2) -> None:
    """Raise ValueError with torch's own sentence if torch would refuse ``hparams``.

    Builds the optimizer on a throwaway tensor: torch's __init__ checks ranges
    (``Invalid learning rate: -1``) and we add the names it does not know.
    """
    desc = info(name)
    known = {h.name for h in desc.hparams}
    unknown = [k for k in hparams if k not in known]
    if unknown:
        raise ValueError(f"{name} has no hyperparameter {unknown[0]!r}; it has {', '.join(sorted(known))}")
    for k, v in hparams.items():
        h = desc.hparam(k)
        if v is None and not h.optional:
            raise ValueError(f"{k} cannot be None")
        if h.kind == TUPLE and (not isinstance(v, tuple) or (h.length and len(v) != h.length)):
            raise ValueError(f"{k} must be a tuple of {h.length} numbers, not {v!r}")
        if h.kind == CHOICE and v not in h.choices:
            raise ValueError(f"{k} must be one of {', '.join(map(repr, h.choices))}, not {v!r}")
        if h.kind in (FLOAT, INT) and v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"{k} must be a number, not {v!r}")
        if h.kind == BOOL and not isinstance(v, bool):
            raise ValueError(f"{k} must be True or False, not {v!r}")
    shape = (2, 2) if name in NEEDS_2D else (2,) * max(1, ndim)
    dummy = torch.zeros(shape, requires_grad=True)
    try:
        optimizer_classes()[name]([dummy], **hparams)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ValueError(str(e)) from None


def group_keys(name: str) -> frozenset[str]:
    """The hyperparameter names a param_group of this optimizer carries in its state_dict."""
    dummy = torch.zeros((2, 2), requires_grad=True)
    opt = optimizer_classes()[name]([dummy])
    return frozenset(k for k in opt.param_groups[0] if k != "params")


def identify(keys) -> list[str]:
    """Optimizers whose param_groups carry exactly these hyperparameter names."""
    keys = frozenset(keys) - {"params", "param_names", "initial_lr"}
    return [n for n in optimizer_classes() if group_keys(n) == keys]


def devices() -> list[str]:
    """Devices torch reports on this machine, CPU first."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out
