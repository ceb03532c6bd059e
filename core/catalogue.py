"""The optimizer catalogue: every optimizer class in the installed torch.optim, and those
of the optional collections and a user's own file (``core.extra_optimizers``).

Found at run time and described from the class itself (signature and docstring, in any
of the usual styles), so forms are generated with nothing written per optimizer. The
few rules torch only enforces deep inside ``step`` are checked here first and said in
one sentence, as are the special needs of other classes (a closure, second-order
gradients, schedule-free's train()/eval() switch).
"""
from __future__ import annotations

import inspect
import re
import typing
from functools import lru_cache

import torch

from . import extra_optimizers as extras
from .docstrings import arg_docs, arg_texts
from . import optimizer_names
from .hparams import (ADVANCED, BOOL, CHOICE, FLOAT, INT, OPT_BOOL, TEXT, TUPLE, HyperParam,
                      OptimizerInfo)

# Rules torch checks late (inside step) or not at all; each is one sentence for the user.
NEEDS_2D = {"Muon"}
NEEDS_SPARSE = {"SparseAdam"}
NEEDS_CLOSURE = {"LBFGS"}
ONE_GROUP = {"LBFGS"}
# one lr for every group (or 0 to freeze a group): prodigyopt's step raises on any other, after the gradient
SAME_LR = {"prodigyopt.Prodigy"}
# what needs() answers (the extras' own flags, and torch's rules above as flags)
CLOSURE, SECOND_ORDER, TRAIN_EVAL, TWO_D = extras.CLOSURE, extras.SECOND_ORDER, extras.TRAIN_EVAL, extras.NEEDS_2D
SPARSE, ONE_GROUP_ONLY = "sparse", "one_group"

_arg_docs = arg_texts  # core.schedulers reads its tooltips with the same parser


def optimizer_classes() -> dict[str, type]:
    """Name -> class for every Optimizer subclass that torch.optim exports."""
    out = {}
    for name in dir(torch.optim):
        obj = getattr(torch.optim, name)
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
            out[name] = obj
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def is_torch(name: str) -> bool:
    """A class of torch.optim (a plain name), not a collection's or a file's."""
    return optimizer_names.is_torch(name)


def optimizer_class(name: str) -> type:
    """The class ``name`` stands for (``core.optimizer_names``): ValueError in one sentence for
    an unknown or skipped class, UntrustedScript (nothing run) for a file not agreed to."""
    n = optimizer_names.parse(name)
    if n.kind == "torch":
        classes = optimizer_classes()
        if name not in classes:
            raise ValueError(f"Unknown optimizer {name!r}: torch.optim has {', '.join(classes)}")
        return classes[name]
    cls = extras.resolve(name)
    reason = extras.skip_reason(name, cls)
    if reason:
        raise ValueError(f"{name} cannot be used here: it {reason}")
    return cls


def needs(name: str) -> frozenset[str]:
    """What stepping ``name`` takes beyond zero_grad, backward and step(): CLOSURE, SECOND_ORDER
    (backward with create_graph=True), TRAIN_EVAL (schedule-free's switch), TWO_D, SPARSE,
    ONE_GROUP_ONLY."""
    if is_torch(name):
        rules = ((NEEDS_2D, TWO_D), (NEEDS_SPARSE, SPARSE), (NEEDS_CLOSURE, CLOSURE), (ONE_GROUP, ONE_GROUP_ONLY))
        return frozenset(flag for names, flag in rules if name in names)
    return extras.needs(name, optimizer_class(name))


def check_same_lr(name: str, lrs) -> None:
    """ValueError in one sentence when ``name`` allows one lr for all groups (0 freezing one) and
    ``lrs`` (every group's, in order) has another; checked when groups are built, added or edited
    instead of at the next step."""
    if name not in SAME_LR:
        return
    lrs = [float(v) for v in lrs if isinstance(v, (int, float)) and not isinstance(v, bool)]
    top = max(lrs, default=0.0)
    bad = next((i for i, v in enumerate(lrs) if v not in (top, 0.0)), None)
    if bad is not None:
        short = optimizer_names.parse(name).cls
        raise ValueError(f"{short} needs the same lr in every parameter group: "
                         f"group {bad} has {lrs[bad]:g}, another {top:g}")


def _choices(doc: str) -> tuple[str, ...]:
    """String options a docstring names in quotes ("strong_wolfe", "original", ...)."""
    found = re.findall(r"[\"'`]([A-Za-z_][A-Za-z0-9_]*)[\"'`]", doc)
    return tuple(dict.fromkeys(f for f in found if f not in ("None", "True", "False")))


def _literal(annotation) -> tuple | None:
    """The options of a ``Literal[...]`` annotation (an object or its text), else None."""
    for arg in (typing.get_args(annotation) if not isinstance(annotation, str) else ()):
        found = _literal(arg)
        if found:
            return found
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if isinstance(annotation, str):
        m = re.search(r"Literal\[([^\]]*)\]", annotation)
        if m:
            return tuple(re.findall(r"[\"']([^\"']*)[\"']", m.group(1))) or None
    return None


def _plain(v) -> bool:
    """A value a form and a JSON spec can hold: None, bool, number, text, a tuple of numbers."""
    if isinstance(v, tuple):
        return all(x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in v)
    return v is None or isinstance(v, (bool, int, float, str))


def _describe(param: inspect.Parameter, doc) -> HyperParam | None:
    """The form field of one constructor argument (None: one a form cannot edit, such as a
    callable or a tensor default; the class keeps its own default)."""
    default = param.default
    if not _plain(default):
        return None
    doc_text, doc_type = (doc.text, doc.type) if hasattr(doc, "text") else (doc, "")
    annotation = param.annotation if param.annotation is not param.empty else doc_type
    ann = annotation if isinstance(annotation, str) else str(annotation)
    optional = default is None or "None" in ann or "optional" in ann.lower()
    advanced = param.name in ADVANCED
    if isinstance(default, bool) or (default is None and "bool" in ann):
        kind = BOOL if isinstance(default, bool) else OPT_BOOL
        return HyperParam(param.name, kind, default, doc_text, optional=kind == OPT_BOOL, advanced=advanced)
    if isinstance(default, tuple) or (default is None and "tuple" in ann.lower()):
        return HyperParam(param.name, TUPLE, default, doc_text, length=len(default or ()), optional=default is None,
                          advanced=advanced)
    literal = _literal(annotation)
    if literal and all(isinstance(c, str) for c in literal):
        opts = ((None,) if optional else ()) + tuple(literal)
        return HyperParam(param.name, CHOICE, default, doc_text, choices=opts, optional=optional, advanced=advanced)
    if "str" in ann or isinstance(default, str):
        choices = _choices(doc_text)
        if choices and (default is None or default in choices):
            opts = ((None,) if optional else ()) + choices
            return HyperParam(param.name, CHOICE, default, doc_text, choices=opts, optional=optional,
                              advanced=advanced)
        return HyperParam(param.name, TEXT, default, doc_text, optional=optional, advanced=advanced)
    if "float" in ann or isinstance(default, float):
        # keep the class's own default (SGD's dampening is the int 0): only user edits are passed on
        return HyperParam(param.name, FLOAT, default, doc_text, optional=optional, advanced=advanced)
    if "int" in ann or isinstance(default, int):
        return HyperParam(param.name, INT, default, doc_text, optional=optional, advanced=advanced)
    return HyperParam(param.name, TEXT, default, doc_text, optional=optional, advanced=advanced)


def _constraints(name: str, need: frozenset[str]) -> tuple[str, ...]:
    short = optimizer_names.parse(name).cls
    sentences = {
        TWO_D: f"{short} optimizes only 2-D tensors (matrices).",
        SPARSE: f"{short} needs sparse gradients: use a manual gradient with 'sparse' on.",
        CLOSURE: (f"{short} re-evaluates the loss several times per step; optimlab supplies the closure."
                  if is_torch(name) else
                  f"{short} steps with a closure (step(closure)); optimlab supplies one doing zero_grad, "
                  "the loss and backward."),
        SECOND_ORDER: f"{short} uses second-order information: every backward is "
                      "loss.backward(create_graph=True), so it needs an objective or a task, not manual gradients.",
        TRAIN_EVAL: f"{short} has a train()/eval() switch: optimlab calls optimizer.train() before every step "
                    "and optimizer.eval() just around each evaluation.",
        ONE_GROUP_ONLY: f"{short} does not support parameter groups: one group only.",
    }
    return tuple(text for flag, text in sentences.items() if flag in need)


def info(name: str) -> OptimizerInfo:
    """The description of one optimizer, read from its class."""
    return _info(name, optimizer_class(name))


@lru_cache(maxsize=None)
def _info(name: str, cls: type) -> OptimizerInfo:
    # the class's own docstring: inspect.getdoc would inherit Optimizer's "Base class for all optimizers."
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    summary = doc.strip().splitlines()[0].strip() if doc.strip() else optimizer_names.parse(name).cls
    docs = arg_docs(cls.__doc__ or "") or arg_docs(cls.__init__.__doc__ or "")
    params = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in ("self", "params") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        h = _describe(p, docs.get(p.name) or "")
        if h is not None:
            params.append(h)
    return OptimizerInfo(name, summary, tuple(params), _constraints(name, needs(name)))


def catalogue() -> list[OptimizerInfo]:
    """torch.optim's optimizers (``extras.listing()`` has the others)."""
    return [info(n) for n in optimizer_classes()]


def validate_hparams(name: str, hparams: dict, ndim: int = 2, device: str | None = None,
                     dtypes=("float32",)) -> None:
    """Raise ValueError with the class's own sentence if it would refuse ``hparams``.

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
    shape = (2, 2) if TWO_D in needs(name) else (2,) * max(1, ndim)
    dummy = torch.zeros(shape, requires_grad=True)
    try:
        with extras.quiet():  # a class's constructor may draw random numbers: not from the session's
            optimizer_class(name)([dummy], **hparams)
    except (ValueError, TypeError, RuntimeError, OverflowError, AssertionError) as e:
        raise ValueError(str(e) or type(e).__name__) from None
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
    need = needs(name)
    opt = optimizer_class(name)([p], **hparams)
    if not is_torch(name):
        with extras.quiet():
            extras.take_step(opt, [p], need)
        return
    g = torch.zeros_like(p)
    p.grad = g.to_sparse() if SPARSE in need else g
    if CLOSURE in need:
        opt.step(lambda: torch.zeros((), device=device))
    else:
        opt.step()


def group_keys(name: str) -> frozenset[str]:
    """The hyperparameter names a param_group of this optimizer carries in its state_dict."""
    return frozenset(_fresh_group(optimizer_class(name))) - {"params"}


@lru_cache(maxsize=None)
def _fresh_group(cls: type) -> dict:
    dummy = torch.zeros((2, 2), requires_grad=True)
    with extras.quiet():
        opt = cls([dummy])
    return {k: v for k, v in opt.param_groups[0].items() if k != "params"}


def fixed_group_values(name: str) -> dict:
    """Group entries the class sets itself, not from an argument: what tells it apart.

    AdamW is Adam with ``decoupled_weight_decay=True`` fixed, so both carry the same
    keys; only this value says which of the two wrote a state_dict. Only torch's classes
    are read so: others keep running values there (schedule-free's train_mode and
    weight_sum, Prodigy's d), which a saved file rightly differs in.
    """
    if not is_torch(name):
        return {}
    return _fixed_group_values(name)


@lru_cache(maxsize=None)
def _fixed_group_values(name: str) -> dict:
    args = {h.name for h in info(name).hparams}
    return {k: v for k, v in _fresh_group(optimizer_class(name)).items() if k not in args}


def filled_keys(name: str) -> frozenset[str]:
    """Group keys torch fills in when a loaded state_dict lacks them (files from older
    torch versions, written before the key existed)."""
    return _filled_keys(optimizer_class(name))


@lru_cache(maxsize=None)
def _filled_keys(cls: type) -> frozenset[str]:
    out = set()
    fresh = _fresh_group(cls)
    for key in fresh:
        dummy = torch.zeros((2, 2), requires_grad=True)
        with extras.quiet():
            opt = cls([dummy])
        group = {k: v for k, v in fresh.items() if k != key}
        try:
            opt.load_state_dict({"state": {}, "param_groups": [{**group, "params": [0]}]})
        except Exception:  # noqa: BLE001 - a key the class cannot do without
            continue
        if key in opt.param_groups[0]:
            out.add(key)
    return frozenset(out)


def identify(keys, values: dict | None = None, among: tuple[str, ...] = ()) -> list[str]:
    """Optimizers (torch's, and ``among``) that could have written a param_group with these
    keys (those torch fills in on load may be missing) and, given the group's ``values``,
    whose fixed entries agree."""
    keys = frozenset(keys) - {"params", "param_names", "initial_lr"}
    out = []
    for n in dict.fromkeys([*optimizer_classes(), *among]):
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
