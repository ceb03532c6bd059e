"""The scheduler catalogue: every LR scheduler class in the installed torch.optim.lr_scheduler.

Found and described at run time from torch itself (signature and docstring),
as ``core.catalogue`` does for optimizers, with the same ``OptimizerInfo`` and
``HyperParam`` types, so the same forms edit them. Not described:
  * ``optimizer``, ``last_epoch`` and ``verbose`` (the session supplies the first,
    and a resumed scheduler is restored from its state_dict, not from last_epoch);
  * arguments that take Python callables or other schedulers (``lr_lambda``,
    ``scale_fn``, ``schedulers``): an optional one is left out, and a class that
    requires one (LambdaLR, MultiplicativeLR, SequentialLR, ChainedScheduler) is
    listed by ``skipped()`` with the reason.

Stepping. Build the scheduler right after the optimizer, as a plain script does
(its constructor already sets the group lrs, e.g. LinearLR's start_factor).
Then, after ``optimizer.step()``:
  * every step (per batch): OneCycleLR and CyclicLR are meant for this, and their
    total_steps / step_size_up count batches;
  * or once per epoch (when ``Task.at_epoch_end``): the others by default;
  * ReduceLROnPlateau steps with a metric, ``scheduler.step(val_loss)``: after each
    evaluation (every K steps) or each epoch, with the latest validation loss.
``step_scheduler`` does exactly that one call, so lrs match a plain loop bit for bit.
"""
from __future__ import annotations

import ast
import copy
import functools
import inspect
import math
import weakref
from functools import lru_cache

import torch
from torch.optim import lr_scheduler

from .catalogue import _arg_docs
from .hparams import BOOL, CHOICE, FLOAT, INT, TUPLE, HyperParam, OptimizerInfo

NOT_DESCRIBED = ("optimizer", "last_epoch", "verbose")
PER_STEP = frozenset({"OneCycleLR", "CyclicLR"})
# torch has no default for these; a form starts from these values
SUGGESTED = {"step_size": 10, "milestones": (30, 80), "gamma": 0.95, "T_max": 100, "T_0": 10,
             "base_lr": 0.001, "max_lr": 0.01}
_UNDESCRIBABLE = ("Callable", "LRScheduler")


def scheduler_classes() -> dict[str, type]:
    """Name -> class for every LRScheduler subclass torch.optim.lr_scheduler exports (and ReduceLROnPlateau)."""
    return dict(_classes())


@lru_cache(maxsize=None)
def _classes() -> dict[str, type]:
    """scheduler_classes(), looked up once (a run asks for its scheduler's class at every step)."""
    out = {}
    base = lr_scheduler.LRScheduler
    for name in dir(lr_scheduler):
        obj = getattr(lr_scheduler, name)
        if name.startswith("_") or not inspect.isclass(obj) or obj is base:
            continue
        if issubclass(obj, base) or obj is lr_scheduler.ReduceLROnPlateau:
            out[name] = obj
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def _params(cls) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _undescribable(p: inspect.Parameter) -> str | None:
    ann = str(p.annotation)
    if "LRScheduler" in ann:
        return f"{p.name} takes other schedulers ({ann})"
    if "Callable" in ann:
        return f"{p.name} takes Python functions ({ann})"
    return None


@lru_cache(maxsize=None)
def skipped() -> dict[str, str]:
    """Classes left out of the catalogue, each with the reason (one sentence)."""
    out = {}
    for name, cls in scheduler_classes().items():
        for p in _params(cls):
            why = _undescribable(p)
            if why and p.default is inspect.Parameter.empty:
                out[name] = f"{name} is not described: {why}, which a form cannot edit."
                break
    return out


def skipped_params(name: str) -> dict[str, str]:
    """Optional arguments of a described class that are left at torch's default, with the reason."""
    return {p.name: why for p in _params(_class(name)) if (why := _undescribable(p))}


def names() -> list[str]:
    """The schedulers the catalogue describes."""
    return [n for n in scheduler_classes() if n not in skipped()]


def _class(name: str) -> type:
    classes = _classes()
    if name not in classes:
        raise ValueError(f"Unknown scheduler {name!r}: torch.optim.lr_scheduler has {', '.join(names())}")
    return classes[name]


def _describe(p: inspect.Parameter, doc: str) -> HyperParam:
    ann = str(p.annotation)
    required = p.default is inspect.Parameter.empty
    default = SUGGESTED.get(p.name, 10 if "int" in ann else 0.1) if required else p.default
    optional = "None" in ann
    if ann.startswith("Literal["):
        choices = tuple(ast.literal_eval(ann[len("Literal"):]))
        return HyperParam(p.name, CHOICE, default, doc, choices=choices)
    if ann == "bool" or isinstance(default, bool):
        return HyperParam(p.name, BOOL, default, doc)
    if ann.startswith(("Iterable[", "list[int]", "Sequence[")):
        return HyperParam(p.name, TUPLE, tuple(default), doc, length=0)
    if "float" in ann:
        if "list[float]" in ann:
            doc = (doc + " (one number for every group, or a list with one per group)").strip()
        return HyperParam(p.name, FLOAT, default, doc, optional=optional)
    if "int" in ann:
        return HyperParam(p.name, INT, default, doc, optional=optional)
    return HyperParam(p.name, FLOAT if isinstance(default, float) else INT, default, doc, optional=optional)


def required(name: str) -> tuple[str, ...]:
    """Arguments torch requires (no default): they must be passed even if not edited."""
    return tuple(p.name for p in _params(_class(name)) if p.default is inspect.Parameter.empty
                 and p.name not in NOT_DESCRIBED)


def with_required(name: str, params: dict) -> dict:
    """``params`` plus the form's starting value of every required argument not given (store this)."""
    desc = info(name)
    return {**{r: desc.hparam(r).default for r in required(name)}, **params}


def _constraints(name: str) -> tuple[str, ...]:
    out = []
    req = required(name)
    if req:
        out.append(f"{name} needs {', '.join(req)} (torch has no default).")
    if name == "OneCycleLR":
        out.append("OneCycleLR needs total_steps, or epochs and steps_per_epoch; "
                   "it refuses to step past the total.")
    if needs_metric(name):
        out.append(f"{name} steps with a metric: the validation loss, after each evaluation or epoch.")
    elif name in PER_STEP:
        out.append(f"{name} is meant to step every batch.")
    skipped_here = skipped_params(name)
    if skipped_here:
        out.append(f"Left at torch's default: {'; '.join(skipped_here.values())}.")
    return tuple(out)


@lru_cache(maxsize=None)
def info(name: str) -> OptimizerInfo:
    """The description of one scheduler, read from torch."""
    if name in skipped():
        raise ValueError(skipped()[name])
    cls = _class(name)
    doc = inspect.getdoc(cls) or ""
    summary = doc.strip().splitlines()[0].strip() if doc.strip() else name
    docs = _arg_docs(cls.__doc__ or "")
    params = tuple(_describe(p, docs.get(p.name, "")) for p in _params(cls)
                   if p.name not in NOT_DESCRIBED and not _undescribable(p))
    return OptimizerInfo(name, summary, params, _constraints(name))


def catalogue() -> list[OptimizerInfo]:
    return [info(n) for n in names()]


def needs_metric(name: str) -> bool:
    return issubclass(_class(name), lr_scheduler.ReduceLROnPlateau)


def default_every(name: str) -> str:
    """"step" (every batch) or "epoch": how a scheduler is usually stepped."""
    return "step" if name in PER_STEP else "epoch"


# ----- checking and building -----

def _coerce(name: str, params: dict) -> dict:
    """Form values to what torch expects: integral floats in int lists (milestones) become ints."""
    desc = info(name)
    out = dict(params)
    for k, v in params.items():
        h = desc.hparam(k)
        if h is not None and h.kind == TUPLE and isinstance(v, (tuple, list)):
            if all(isinstance(x, (int, float)) and not isinstance(x, bool) and float(x).is_integer() for x in v):
                out[k] = [int(x) for x in v]
    return out


def _per_group(name: str) -> set[str]:
    """Arguments that also take a list with one number per group (``float | list[float]``)."""
    return {p.name for p in _params(_class(name)) if "list[float]" in str(p.annotation)}


def _check_types(name: str, params: dict, n_groups: int) -> None:
    desc = info(name)
    known = {h.name for h in desc.hparams}
    for k, v in params.items():
        h = desc.hparam(k)
        if h is None:
            raise ValueError(f"{name} has no parameter {k!r}; it has {', '.join(sorted(known))}")
        if v is None:
            if not h.optional:
                raise ValueError(f"{k} cannot be None")
            continue
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if h.kind == INT and not (isinstance(v, int) and not isinstance(v, bool)):
            raise ValueError(f"{k} must be a whole number, not {v!r}")
        if h.kind == FLOAT and not number:
            per_group = k in _per_group(name) and isinstance(v, (list, tuple)) and len(v) == n_groups \
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            if not per_group:
                raise ValueError(f"{k} must be a number, not {v!r}")
        if h.kind == BOOL and not isinstance(v, bool):
            raise ValueError(f"{k} must be True or False, not {v!r}")
        if h.kind == CHOICE and v not in h.choices:
            raise ValueError(f"{k} must be one of {', '.join(map(repr, h.choices))}, not {v!r}")
        if h.kind == TUPLE and not (isinstance(v, (list, tuple))
                                    and all(isinstance(x, int) and not isinstance(x, bool) for x in v)):
            raise ValueError(f"{k} must be a list of whole numbers, not {v!r}")


# Values torch accepts at build time that later divide by zero (StepLR step_size 0: modulo
# by zero at the first step) or raise 0.0 to a negative power (PolynomialLR power < 0 at
# total_iters); OneCycleLR's phases are checked by _check_one_cycle.
_RULES = {
    ("StepLR", "step_size"): (lambda v: v >= 1, "at least 1 (epochs between decays)"),
    ("CosineAnnealingLR", "T_max"): (lambda v: v >= 1, "at least 1 (steps of half a cosine period)"),
    ("CyclicLR", "step_size_up"): (lambda v: v >= 1, "at least 1"),
    ("CyclicLR", "step_size_down"): (lambda v: v >= 0, "0 or more"),
    ("ConstantLR", "factor"): (lambda v: v > 0, "above 0 (the lr is divided by it at the end)"),
    ("PolynomialLR", "power"): (lambda v: v >= 0, "0 or more"),
    ("OneCycleLR", "div_factor"): (lambda v: v > 0, "above 0"),
    ("OneCycleLR", "final_div_factor"): (lambda v: v > 0, "above 0"),
}
MAX_INT = 2 ** 53


def _check_values(name: str, params: dict) -> None:
    """Refuse non-finite numbers, absurd whole numbers and the values in ``_RULES`` (one sentence)."""
    desc = info(name)
    for k, v in params.items():
        h = desc.hparam(k)
        items = v if isinstance(v, (list, tuple)) else [v]
        for x in items:
            if h.kind == FLOAT and isinstance(x, float) and not math.isfinite(x):
                raise ValueError(f"{k} must be a finite number, not {x!r}")
            if h.kind in (INT, TUPLE) and isinstance(x, int) and not -MAX_INT <= x <= MAX_INT:
                raise ValueError(f"{k} must be a whole number from -2**53 to 2**53, not {x!r}")
        rule = _RULES.get((name, k))
        if rule is not None and v is not None and not rule[0](v):
            raise ValueError(f"{k} must be {rule[1]}, not {v!r}")
    if name == "OneCycleLR":
        _check_one_cycle(params)
    gamma = params.get("gamma", 1.0)
    if name == "CyclicLR" and params.get("mode") == "exp_range" and isinstance(gamma, (int, float)) \
            and not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be from 0 to 1 in exp_range mode (gamma**steps), not {gamma!r}")


def _check_one_cycle(params: dict) -> None:
    """OneCycleLR divides by the length of each phase of its cycle: a phase of zero steps
    (pct_start 1; or pct_start x total_steps = 1; or, with three_phase, a last phase of
    none) fails when reached, at the first step or the last. Its ends, as torch computes them."""
    total = params.get("total_steps")
    if total is None and isinstance(params.get("epochs"), int) and isinstance(params.get("steps_per_epoch"), int):
        total = params["epochs"] * params["steps_per_epoch"]
    pct = params.get("pct_start", 0.3)
    if not isinstance(total, int) or not isinstance(pct, (int, float)):
        return  # torch says what is missing
    ends = [pct * total - 1, total - 1]
    if params.get("three_phase"):
        ends = [pct * total - 1, 2 * pct * total - 2, total - 1]
    for i, (start, end) in enumerate(zip([0.0] + ends, ends)):
        if float(end) == float(start):
            raise ValueError(f"pct_start {pct} with total_steps {total} leaves phase {i + 1} of the cycle "
                             "without steps (torch would divide by zero there): change pct_start or total_steps")


def _throwaway(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """An optimizer of the same class and group hyperparameters on tiny dummy tensors."""
    groups = [{"params": [torch.zeros((2, 2), requires_grad=True)],
               **{k: copy.deepcopy(v) for k, v in g.items() if k in optimizer.defaults or k == "initial_lr"}}
              for g in optimizer.param_groups]
    try:
        return type(optimizer)(groups)
    except (ValueError, TypeError, RuntimeError):
        # an optimizer that refuses dummies still has lrs (and maybe momentum) to schedule
        keep = ("lr", "momentum", "initial_lr")
        return torch.optim.SGD([{**{k: v for k, v in g.items() if k in keep}, "params": g["params"]}
                                for g in groups])


def validate_scheduler(name: str, params: dict, optimizer: torch.optim.Optimizer) -> str | None:
    """None if torch would build this scheduler for ``optimizer``; else torch's message (or ours).

    Builds it on a throwaway copy of the optimizer's groups, so ``optimizer`` is untouched.
    """
    try:
        params = _coerce(name, params)
        missing = [r for r in required(name) if r not in params]
        if missing:
            raise ValueError(f"{missing[0]} is missing (torch has no default)")
        _check_types(name, params, len(optimizer.param_groups))
        _check_values(name, params)
        _class(name)(_throwaway(optimizer), **params)
    except (ValueError, TypeError, RuntimeError, ArithmeticError, KeyError) as e:
        return " ".join(str(e).strip("'\"").split()) or type(e).__name__
    return None


def make_scheduler(name: str, params: dict, optimizer: torch.optim.Optimizer):
    """Build the scheduler on ``optimizer`` (which it changes at once, as in a plain script).

    Checked first on a throwaway copy: a refused scheduler raises ValueError and
    leaves ``optimizer`` unchanged.
    """
    problem = validate_scheduler(name, params, optimizer)
    if problem:
        raise ValueError(problem)
    scheduler = _class(name)(optimizer, **_coerce(name, params))
    # refuse an optimizer step after which the scheduler could not step, before it changes anything
    optimizer.register_step_pre_hook(functools.partial(_refuse_unsteppable, weakref.ref(scheduler)))
    return scheduler


# schedulers whose step fails once the optimizer has more groups than they were built for
# (add_param_group): CyclicLR and CosineAnnealingWarmRestarts zip their per-group lists
# strictly, OneCycleLR reads group keys only its constructor sets (KeyError 'initial_lr')
FIXED_GROUPS = frozenset({"CyclicLR", "CosineAnnealingWarmRestarts", "OneCycleLR"})


class SchedulerCannotStep(RuntimeError):
    """The scheduler has no lr for another step; the session reports it as a StepError."""


def cannot_step(scheduler) -> str | None:
    """Why ``scheduler`` cannot take its next step (one sentence), or None."""
    name = type(scheduler).__name__
    if isinstance(scheduler, lr_scheduler.OneCycleLR) and scheduler.last_epoch >= scheduler.total_steps:
        return (f"OneCycleLR has taken all {scheduler.total_steps} of its total_steps: "
                "raise total_steps (or epochs) to step on")
    n_now = len(scheduler.optimizer.param_groups)
    if name in FIXED_GROUPS and len(scheduler.base_lrs) != n_now:
        return (f"{name} was built for {len(scheduler.base_lrs)} param_group(s) and cannot schedule the "
                f"{n_now} the optimizer has now: reset to rebuild it with every group")
    return None


def _refuse_unsteppable(scheduler_ref, optimizer, args, kwargs) -> None:
    scheduler = scheduler_ref()
    problem = cannot_step(scheduler) if scheduler is not None else None
    if problem:
        raise SchedulerCannotStep(problem)


def step_scheduler(scheduler, metric: float | None = None) -> None:
    """One scheduler step: ``step(metric)`` for ReduceLROnPlateau, ``step()`` otherwise.

    A scheduler that fails to step stops the run with one sentence (a StepError), not a traceback.
    """
    from .session import StepError  # here: core.session imports this module
    if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
        if metric is None:
            raise ValueError("ReduceLROnPlateau steps with a metric: evaluate first (the validation loss)")
        step = functools.partial(scheduler.step, metric)
    else:
        step = scheduler.step
    try:
        step()
    except (ValueError, ArithmeticError, RuntimeError, TypeError, LookupError) as e:
        name, why = type(scheduler).__name__, " ".join(str(e).split())
        made, now = len(getattr(scheduler, "base_lrs", ())), len(scheduler.optimizer.param_groups)
        if made and made != now:  # torch's schedulers keep what they were made with; add_param_group is not seen
            raise StepError(f"{name}.step() failed: it was made for {made} parameter group{'s' if made != 1 else ''} "
                            f"and the optimizer now has {now} (torch's schedulers do not follow add_param_group; "
                            f"{why})") from e
        raise StepError(f"{name}.step() failed: {why}") from e


def should_step(every: str, at_epoch_end: bool) -> bool:
    """Whether a scheduler stepped ``every`` "step" or "epoch" steps after this optimizer step."""
    if every not in ("step", "epoch"):
        raise ValueError(f"Invalid scheduler interval {every!r}: use step or epoch")
    return every == "step" or at_epoch_end


def last_lrs(scheduler) -> list[float]:
    """The lr of every group after the scheduler's last step."""
    return [float(lr) for lr in scheduler.get_last_lr()]
