"""Optimizers beyond torch.optim: optional collections, and a user's own Python file.

``core.optimizer_names`` says how they are named. A collection is imported only when
one of its classes is asked for (pytorch_optimizer takes seconds to import), and only
the known collections are ever imported. A user's file runs only with the user's
agreement per (path, SHA-256) (``core.trust``), exactly like a task script: the bytes
that were hashed are the bytes executed.

What a class needs beyond ``zero_grad, backward, step()`` is found by trying it on a
throwaway tensor (``probe``), under a forked random generator so that nothing a session
depends on moves. For the collection versions pyproject pins, the outcome is written
down (``KNOWN_NEEDS``, ``KNOWN_SKIPS``; a test checks it against the probe), so listing
them steps nothing.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import types
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import torch

from . import trust
from .optimizer_names import COLLECTIONS, parse

# what a class needs from the step loop (core.engine follows them; README, "The step")
CLOSURE, SECOND_ORDER, TRAIN_EVAL, NEEDS_2D = "closure", "second_order", "train_eval", "2d"

# the versions KNOWN_NEEDS and KNOWN_SKIPS were probed on (pyproject's [extras] pins them)
PINNED = {"pytorch_optimizer": "4.1.0", "lion_pytorch": "0.2.5", "schedulefree": "1.4.1", "prodigyopt": "1.1.2"}
KNOWN_NEEDS = {
    "pytorch_optimizer.AdaHessian": {SECOND_ORDER},
    "pytorch_optimizer.SophiaH": {SECOND_ORDER},
    "pytorch_optimizer.SpectralSphere": {NEEDS_2D},
    "schedulefree.AdamWScheduleFreeClosure": {CLOSURE},
    "schedulefree.RAdamScheduleFreeClosure": {CLOSURE},
    "schedulefree.SGDScheduleFreeClosure": {CLOSURE},
}
def _unsafe(kind: str, where: str, key: str) -> str:
    return (f"keeps a Python object ({kind}, {where} entry {key!r}) in its state_dict, which a saved file cannot "
            "hold: optimlab reads files only with torch.load(weights_only=True)")


_MUON = ("expects each parameter group to carry a use_muon flag (matrices apart from the rest), "
         "which a session's groups do not have; torch.optim's Muon is in the catalogue")
KNOWN_SKIPS = {
    **{f"pytorch_optimizer.{n}": _MUON for n in ("Muon", "AdaGO", "AdaMuon", "DistributedMuon",
                                                 "MuonClip", "NorMuon")},
    "pytorch_optimizer.AliG": "needs the loss handed to step() as a number (step(lambda: float(loss))), "
                              "a calling convention the step loop does not make",
    "pytorch_optimizer.LoRARite": "expects LoRA factors in alternating order (lora_a_1, lora_b_1, ...), "
                                  "not a session's tensors",
    # found by stepping (``unsaved``): what they keep cannot be read back by a safe loader
    "pytorch_optimizer.AdaShift": _unsafe("deque", "state", "grad_queue"),
    "pytorch_optimizer.Conda": _unsafe("GaLoreProjector", "state", "projector"),
    "pytorch_optimizer.ScalableShampoo": _unsafe("PreConditioner", "state", "pre_conditioner"),
    "pytorch_optimizer.SCION": _unsafe("LMONorm", "param_groups", "norm_type"),
    "pytorch_optimizer.SCIONLight": _unsafe("LMONorm", "param_groups", "norm_type"),
}
# classes that import a package of their own only when built: skipped while it is missing
KNOWN_IMPORTS = {"pytorch_optimizer.DeMo": "einops"}

_PARAMS = ("params", "param_groups", "parameters")


@dataclass(frozen=True)
class Found:
    """One optimizer class found outside torch.optim; ``reason`` says why it is skipped."""

    name: str
    collection: str
    reason: str | None = None


# ----- finding classes -----

def installed() -> list[str]:
    """The known collections this Python can import (nothing is imported to tell)."""
    return [m for m in COLLECTIONS if importlib.util.find_spec(m) is not None]


@lru_cache(maxsize=None)
def collection_classes(module: str) -> dict[str, type]:
    """Qualified name -> class for every Optimizer subclass ``module`` exports at its top
    level, torch's own re-exports left out (they keep their plain names)."""
    if module not in COLLECTIONS:
        raise ValueError(f"{module} is not one of the optimizer collections ({', '.join(COLLECTIONS)})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation chatter of optional dependencies
            mod = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"The optimizer collection {module} is not installed ({e}): "
                         f"pip install {COLLECTIONS[module]}") from None
    return _classes_in(mod, module, lambda cls: not cls.__module__.startswith("torch."))


def _classes_in(mod, prefix: str, keep) -> dict[str, type]:
    out, seen = {}, set()
    for attr in sorted(dir(mod), key=lambda a: (a != getattr(getattr(mod, a), "__name__", a), a.lower())):
        obj = getattr(mod, attr)
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer \
                and keep(obj) and obj not in seen and not attr.startswith("_"):
            seen.add(obj)  # an alias lists the class once, under its own name where exported so
            out[f"{prefix}.{attr}"] = obj
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def file_classes(path: str) -> dict[str, type]:
    """Name -> class for every Optimizer subclass defined in the user's Python file ``path``.

    Raises UntrustedScript (nothing run) unless the user agreed to this file as it is now."""
    path = os.path.abspath(path)
    source = trust.checked_source(path, what="optimizer file")
    mod = _run_file(path, source)
    found = _classes_in(mod, "x", lambda cls: cls.__module__ == mod.__name__)
    return {f"file:{path}:{k[2:]}": v for k, v in found.items()}


@lru_cache(maxsize=32)
def _run_file(path: str, source: bytes) -> types.ModuleType:
    """Execute the agreed bytes once per (path, contents) as a module of its own."""
    import hashlib
    name = f"optimlab_optimizer_{hashlib.sha256(path.encode() + source).hexdigest()[:16]}"
    mod = types.ModuleType(name)
    mod.__file__ = path
    sys.modules[name] = mod  # dataclasses, typing and pickle look classes up there
    try:
        exec(compile(source, path, "exec"), mod.__dict__)  # the very bytes that were hashed
    except Exception as e:  # noqa: BLE001 - the user's code: any failure is one sentence
        del sys.modules[name]
        raise ValueError(f"The optimizer file {path} failed: {type(e).__name__}: {e}") from None
    return mod


def resolve(name: str) -> type:
    """The class a collection's or a file's name stands for (ValueError: one sentence)."""
    n = parse(name)
    if n.kind == "collection":
        classes = collection_classes(n.module)
    elif n.kind == "file":
        classes = file_classes(n.path)
        name = f"file:{os.path.abspath(n.path)}:{n.cls}"
    else:
        raise ValueError(f"{name} is torch.optim's, not an extra optimizer")
    if name not in classes:
        where = n.module if n.kind == "collection" else n.path
        raise ValueError(f"{where} has no optimizer class {n.cls}; it has "
                         f"{', '.join(k.rpartition('.' if n.kind == 'collection' else ':')[2] for k in classes) or 'none'}")
    return classes[name]


def listing() -> list[Found]:
    """Every class of every installed collection, with the reason where one is skipped
    (a collection that fails to import is one entry with its reason)."""
    out = []
    for module in installed():
        try:
            classes = collection_classes(module)
        except Exception as e:  # noqa: BLE001 - a broken install is listed, not fatal
            out.append(Found(module, module, f"cannot be imported: {type(e).__name__}: {e}"))
            continue
        for name, cls in classes.items():
            out.append(Found(name, module, skip_reason(name, cls, probe_unknown=False)))
    return out


# ----- what a class needs, or why it is skipped -----

def _pinned(name: str) -> bool:
    module = parse(name).module
    try:
        return module in PINNED and importlib.metadata.version(COLLECTIONS[module]) == PINNED[module]
    except importlib.metadata.PackageNotFoundError:
        return False


def signature_reason(cls: type) -> str | None:
    """Why the constructor cannot be called as ``cls(params, **hparams)``, from its signature alone."""
    try:
        ps = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    except (TypeError, ValueError):
        return "has a constructor whose signature cannot be read"
    if not ps or ps[0].name not in _PARAMS:
        first = ps[0].name if ps else "nothing"
        if first in ("optimizer", "base_optimizer"):
            return "wraps another optimizer (it takes an optimizer, not parameters)"
        if first == "model":
            return "takes the model itself, not a list of tensors"
        return f"takes {first} first, not the parameters"
    required = [p.name for p in ps[1:] if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(r in ("optimizer", "base_optimizer") for r in required):
        return "wraps another optimizer (it needs base_optimizer)"
    if required:
        return f"needs {', '.join(required)}, which {'has' if len(required) == 1 else 'have'} no default"
    return None


@lru_cache(maxsize=None)
def skip_reason(name: str, cls: type, probe_unknown: bool = True) -> str | None:
    """Why ``cls`` cannot run in a session, in one clause; None when it can."""
    reason = signature_reason(cls)
    missing = KNOWN_IMPORTS.get(name)
    if reason is None and missing and importlib.util.find_spec(missing) is None:
        reason = f"needs the {missing} package, which is not installed (pip install {missing})"
    if reason is None and parse(name).kind == "collection" and _pinned(name):
        reason = KNOWN_SKIPS.get(name)
    elif reason is None and probe_unknown:
        reason = probe(cls)[1]
    return reason


@lru_cache(maxsize=None)
def needs(name: str, cls: type) -> frozenset[str]:
    """What the step loop must do for ``cls``: a closure, backward(create_graph=True),
    the train()/eval() switch, only 2-D tensors."""
    out = {TRAIN_EVAL} if has_switch(cls) else set()
    if parse(name).kind == "collection" and _pinned(name):
        return frozenset(out | KNOWN_NEEDS.get(name, set()))
    return frozenset(out | probe(cls)[0])


def has_switch(obj) -> bool:
    """Schedule-free's train()/eval(): torch's Optimizer has neither."""
    return callable(getattr(obj, "train", None)) and callable(getattr(obj, "eval", None))


# ----- trying a class on a throwaway tensor -----

def _loss(ps: list[torch.Tensor]) -> torch.Tensor:
    return sum(((p - 0.5) ** 4).sum() for p in ps)


def take_step(opt, ps: list[torch.Tensor], need: frozenset[str] | set[str], loss_fn=_loss) -> None:
    """One step of ``opt`` on ``ps`` the way the engine takes it for these needs."""
    if TRAIN_EVAL in need:
        opt.train()
    if CLOSURE in need:
        def closure():
            opt.zero_grad()
            loss = loss_fn(ps)
            loss.backward(create_graph=SECOND_ORDER in need)
            return loss
        opt.step(closure)
        return
    opt.zero_grad()
    loss_fn(ps).backward(create_graph=SECOND_ORDER in need)
    opt.step()


def _try(cls, shape, need):
    g = torch.Generator().manual_seed(0)
    ps = [torch.randn(shape, generator=g).requires_grad_(True)]
    opt = cls(ps)
    for _ in range(2):
        take_step(opt, ps, need)
    if not all(torch.isfinite(p).all() for p in ps):
        raise RuntimeError("its first steps on a smooth function gave non-finite values")
    return opt


_PLAIN = (bool, int, float, str, type(None))  # exactly these: an enum of str or int is a Python object too


def unsaved(sd: dict) -> str | None:
    """Why a state_dict cannot go to a file read back with weights_only=True (a Python object
    in it: a deque, a projector, an enum), else None. A safe loader refuses such objects, and
    a session whose state cannot be saved would lose what the user did."""
    def odd(v):
        if isinstance(v, (list, tuple)) and type(v) in (list, tuple):
            return next((o for o in map(odd, v) if o is not None), None)
        if type(v) is dict:
            return next((o for o in map(odd, v.values()) if o is not None), None)
        return None if type(v) in _PLAIN or isinstance(v, torch.Tensor) else type(v).__name__
    for where, entries in (("state", list(sd["state"].values())), ("param_groups", sd["param_groups"])):
        for entry in entries:
            for key, v in entry.items():
                kind = odd(v)
                if kind is not None:
                    return _unsafe(kind, where, key)
    return None


@lru_cache(maxsize=None)
def probe(cls: type) -> tuple[frozenset[str], str | None]:
    """(needs, reason): two steps on a 3x2 tensor with a plain gradient, else with a closure,
    else with a second-order gradient; its state_dict then must be one a file can hold
    (``unsaved``); then on a vector, to tell a 2-D-only class."""
    reason = signature_reason(cls)
    if reason is not None:
        return frozenset(), reason
    base = {TRAIN_EVAL} if has_switch(cls) else set()
    first = None
    for extra in (set(), {CLOSURE}, {SECOND_ORDER}):
        need = frozenset(base | extra)
        try:
            with quiet():
                opt = _try(cls, (3, 2), need)
        except Exception as e:  # noqa: BLE001 - whatever the class raises is its answer
            first = first or e
            continue
        reason = unsaved(opt.state_dict())
        if reason is not None:
            return frozenset(), reason
        try:
            with quiet():
                _try(cls, (3,), need)
        except Exception:  # noqa: BLE001
            need = need | {NEEDS_2D}
        return need, None
    said = (str(first).strip().splitlines() or [type(first).__name__])[0][:160]
    return frozenset(), f"cannot take a step on a plain tensor with its defaults ({type(first).__name__}: {said})"


@contextmanager
def quiet():
    """Torch's random generators forked (a probe draws nothing a session sees) and the
    class's warnings silenced."""
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
