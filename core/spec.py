"""The session spec and journal: plain dataclasses that read and write JSON.

No torch here, so widgets can edit specs. `core.session` turns a spec into live
tensors and an optimizer, and applies journal actions to it.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace

from .task_spec import TaskSpec, task_from_dict

DTYPES = ("float32", "float64")
INITS = ("zeros", "ones", "constant", "normal", "uniform", "xavier_uniform", "xavier_normal",
         "kaiming_uniform", "kaiming_normal", "values", "task")  # "task": made by a training task's model
GRAD_FILLS = ("constant", "zeros", "normal", "values")
OBJECTIVES = ("quadratic", "rosenbrock", "rastrigin", "beale", "himmelblau")
SPEC_FORMAT = "optimlab-spec"
SPEC_VERSION = 1


class SpecError(ValueError):
    """A spec or action that cannot be built; the message is for the user."""


def _shape(shape) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise SpecError(f"Invalid shape: {shape!r}") from None
    if any(s <= 0 for s in out) or len(out) > 4:
        raise SpecError(f"Invalid shape: {list(out)} (up to 4 positive sizes; [] is a scalar)")
    return out


def _nested_shape(values) -> tuple[int, ...]:
    if isinstance(values, (list, tuple)):
        if not values:
            return (0,)
        inner = {_nested_shape(v) for v in values}
        if len(inner) != 1:
            raise SpecError("Explicit values are ragged: every row needs the same length")
        return (len(values),) + inner.pop()
    if isinstance(values, bool) or not isinstance(values, (int, float)):
        raise SpecError(f"Explicit values must be numbers, not {values!r}")
    return ()


@dataclass(frozen=True)
class ManualGrad:
    """A gradient the user sets by hand (the seed's ``weight.grad = torch.ones(...)``)."""

    fill: str = "constant"
    value: float = 1.0
    std: float = 1.0
    values: list | None = None
    sparse: bool = False

    def check(self, shape: tuple[int, ...], name: str) -> None:
        if self.fill not in GRAD_FILLS:
            raise SpecError(f"Unknown gradient fill {self.fill!r} for {name}: use one of {', '.join(GRAD_FILLS)}")
        if self.fill == "values":
            if self.values is None or _nested_shape(self.values) != shape:
                raise SpecError(f"Gradient values for {name} must have shape {list(shape)}")
        if self.fill == "normal" and not self.std >= 0:
            raise SpecError(f"Invalid gradient std for {name}: {self.std}")
        if not math.isfinite(self.value):
            raise SpecError(f"Invalid gradient value for {name}: {self.value}")


@dataclass(frozen=True)
class TensorSpec:
    """A named parameter tensor and how it starts."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    init: str = "normal"
    value: float = 0.0  # constant
    mean: float = 0.0  # normal
    std: float = 1.0  # normal
    low: float = -1.0  # uniform
    high: float = 1.0  # uniform
    gain: float = 1.0  # xavier
    values: list | None = None  # explicit values, nested lists
    seed: int | None = None  # None: derived from the session seed and the tensor's position
    grad: ManualGrad | None = None  # manual gradient, used when the gradient source is manual

    def __post_init__(self):
        object.__setattr__(self, "shape", _shape(self.shape))

    def check(self) -> None:
        if not self.name or not self.name.replace("_", "a").replace(".", "a").isalnum():
            raise SpecError(f"Invalid tensor name {self.name!r}: use letters, digits, '_' and '.'")
        if self.dtype not in DTYPES:
            raise SpecError(f"Invalid dtype {self.dtype!r} for {self.name}: use float32 or float64")
        if self.init not in INITS:
            raise SpecError(f"Unknown init {self.init!r} for {self.name}: use one of {', '.join(INITS)}")
        if self.init == "values":
            if self.values is None or _nested_shape(self.values) != self.shape:
                raise SpecError(f"Values for {self.name} must have shape {list(self.shape)}")
        if self.init == "uniform" and not self.low < self.high:
            raise SpecError(f"Invalid uniform range for {self.name}: low {self.low} must be below high {self.high}")
        if self.init == "normal" and not self.std >= 0:
            raise SpecError(f"Invalid std for {self.name}: {self.std}")
        if self.init.startswith(("xavier", "kaiming")) and len(self.shape) < 2:
            raise SpecError(f"{self.init} init needs a tensor with at least 2 dimensions; {self.name} has shape {list(self.shape)}")
        if self.grad is not None:
            self.grad.check(self.shape, self.name)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class GroupSpec:
    """A param_group: tensor names plus hyperparameters that override the defaults."""

    tensors: tuple[str, ...]
    hparams: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "tensors", tuple(self.tensors))
        object.__setattr__(self, "hparams", {k: _tuples(v) for k, v in dict(self.hparams).items()})


@dataclass(frozen=True)
class GradientSpec:
    """Where gradients come from.

    ``manual``: each tensor's ``grad`` (``TensorSpec.grad``) is set once at the start
    (``when="once"``, as the seed does) or assigned afresh before every step
    (``when="every_step"``). ``objective``: an analytic loss of the session's tensors,
    back-propagated before every step (accumulating into ``.grad`` exactly as
    ``loss.backward()`` does).
    """

    kind: str = "manual"
    when: str = "once"
    objective: str = "rosenbrock"
    condition: float = 100.0  # quadratic: ratio of largest to smallest curvature
    tensors: tuple[str, ...] = ()  # objective: which tensors; () means all
    task: TaskSpec | None = None  # kind "task": a model trained on data (its parameters are the tensors)

    def __post_init__(self):
        object.__setattr__(self, "tensors", tuple(self.tensors))
        if isinstance(self.task, dict):
            try:
                object.__setattr__(self, "task", task_from_dict(self.task))
            except ValueError as e:
                raise SpecError(str(e)) from None

    def check(self) -> None:
        if self.kind not in ("manual", "objective", "task"):
            raise SpecError(f"Unknown gradient source {self.kind!r}: use manual, objective or task")
        if self.kind == "task":
            if self.task is None:
                raise SpecError("A task gradient source needs a task")
            try:
                self.task.check()
            except ValueError as e:
                raise SpecError(str(e)) from None
        if self.kind == "manual" and self.when not in ("once", "every_step"):
            raise SpecError(f"Invalid manual gradient timing {self.when!r}: use once or every_step")
        if self.kind == "objective" and self.objective not in OBJECTIVES:
            raise SpecError(f"Unknown objective {self.objective!r}: use one of {', '.join(OBJECTIVES)}")
        if self.kind == "objective" and self.objective == "quadratic" and not self.condition >= 1:
            raise SpecError(f"Invalid condition number: {self.condition} (must be at least 1)")


@dataclass(frozen=True)
class SchedulerSpec:
    """An lr scheduler of torch.optim.lr_scheduler, stepped every step or every epoch."""

    name: str
    params: dict = field(default_factory=dict)
    every: str = "epoch"  # "step" or "epoch" (without a task, an epoch is one step)

    def __post_init__(self):
        object.__setattr__(self, "params", {k: _tuples(v) for k, v in dict(self.params).items()})

    def check(self) -> None:
        if self.every not in ("step", "epoch"):
            raise SpecError(f"Invalid scheduler interval {self.every!r}: use step or epoch")


@dataclass(frozen=True)
class SessionSpec:
    """What a session starts from. The journal says what happened since."""

    optimizer: str = "SGD"
    hparams: dict = field(default_factory=dict)  # optimizer defaults given to the constructor
    tensors: tuple[TensorSpec, ...] = ()
    groups: tuple[GroupSpec, ...] = ()  # empty: one group with every tensor
    gradient: GradientSpec = field(default_factory=GradientSpec)
    device: str = "cpu"
    seed: int = 0
    set_to_none: bool = True  # zero_grad(set_to_none=...)
    zero_grad_each_step: bool = False  # call zero_grad before every step's gradient
    scheduler: SchedulerSpec | None = None
    name: str = ""
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "tensors", tuple(self.tensors))
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "hparams", {k: _tuples(v) for k, v in dict(self.hparams).items()})

    def effective_groups(self) -> tuple[GroupSpec, ...]:
        if self.groups:
            return self.groups
        return (GroupSpec(tuple(t.name for t in self.tensors)),)

    def check(self) -> None:
        """Structural checks that need no torch (names, membership, shapes)."""
        if self.gradient.kind == "task":
            self.gradient.check()
            if self.tensors:
                raise SpecError("A task session's tensors are its model's parameters: leave 'tensors' empty")
            if self.scheduler is not None:
                self.scheduler.check()
            return
        if not self.tensors:
            raise SpecError("The session has no tensors: add at least one")
        if self.scheduler is not None:
            self.scheduler.check()
        names = [t.name for t in self.tensors]
        for t in self.tensors:
            t.check()
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SpecError(f"Tensor names must be unique; repeated: {', '.join(sorted(dup))}")
        check_groups(self.effective_groups(), set(names))
        self.gradient.check()
        for n in self.gradient.tensors:
            if n not in names:
                raise SpecError(f"The objective names an unknown tensor {n!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise SpecError(f"Invalid seed: {self.seed!r} (a whole number >= 0)")

    def tensor(self, name: str) -> TensorSpec:
        for t in self.tensors:
            if t.name == name:
                return t
        raise SpecError(f"No tensor named {name!r}")


def check_groups(groups, known: set[str], taken: set[str] = frozenset()) -> None:
    """Refuse empty groups, unknown tensors and tensors in two groups."""
    seen = set(taken)
    for i, g in enumerate(groups):
        if not g.tensors:
            raise SpecError(f"Group {i} is empty: a param_group needs at least one tensor")
        for n in g.tensors:
            if n not in known:
                raise SpecError(f"Group {i} names an unknown tensor {n!r}")
            if n in seen:
                raise SpecError(f"Tensor {n!r} is in more than one group: some parameters appear in more than one parameter group")
            seen.add(n)


def _tuples(v):
    """JSON has no tuples; torch's hyperparameters (betas, etas) are tuples."""
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    return v


# ----- journal -----

@dataclass(frozen=True)
class Step:
    n: int = 1


@dataclass(frozen=True)
class ZeroGrad:
    set_to_none: bool | None = None  # None: the session's setting


@dataclass(frozen=True)
class SetGrad:
    tensor: str
    grad: ManualGrad | None  # None clears the gradient (p.grad = None)


@dataclass(frozen=True)
class AddGroup:
    """``optimizer.add_param_group``: new tensors join in a new group."""

    tensors: tuple[TensorSpec, ...]
    hparams: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "tensors", tuple(self.tensors))
        object.__setattr__(self, "hparams", {k: _tuples(v) for k, v in dict(self.hparams).items()})


@dataclass(frozen=True)
class SetHparam:
    group: int
    name: str
    value: object

    def __post_init__(self):
        object.__setattr__(self, "value", _tuples(self.value))


@dataclass(frozen=True)
class LoadOptimizer:
    """Load an optimizer state_dict: from ``path``, or from the session file's ``blob``."""

    path: str = ""
    blob: str = ""


@dataclass(frozen=True)
class LoadParams:
    path: str = ""
    blob: str = ""


@dataclass(frozen=True)
class EditTensor:
    """Set one element (``index``) or every element (``index`` None) of a parameter (``which``
    "value"), its gradient ("grad") or one of its optimizer state entries ("exp_avg", ...)."""

    tensor: str
    which: str = "value"
    index: tuple[int, ...] | None = None
    value: float = 0.0

    def __post_init__(self):
        if self.index is not None:
            object.__setattr__(self, "index", tuple(self.index))


@dataclass(frozen=True)
class SetDevice:
    device: str


@dataclass(frozen=True)
class Reset:
    pass


ACTIONS = {"step": Step, "zero_grad": ZeroGrad, "set_grad": SetGrad, "add_group": AddGroup,
           "set_hparam": SetHparam, "load_optimizer": LoadOptimizer, "load_params": LoadParams,
           "edit_tensor": EditTensor, "set_device": SetDevice, "reset": Reset}
_OPS = {cls: op for op, cls in ACTIONS.items()}
Action = Step | ZeroGrad | SetGrad | AddGroup | SetHparam | LoadOptimizer | LoadParams | EditTensor | SetDevice | Reset


# ----- JSON -----

def _plain(obj):
    if isinstance(obj, tuple):
        return [_plain(x) for x in obj]
    if isinstance(obj, list):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _drop_defaults(obj) -> dict:
    """A dataclass as a dict without the fields left at their default (a short spec)."""
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        default = f.default if f.default_factory is __import__("dataclasses").MISSING else f.default_factory()
        keep = f.name in ("name", "shape", "optimizer", "init", "kind", "fill", "n", "dtype") or (
            f.name == "value" and getattr(obj, "fill", getattr(obj, "init", "")) == "constant") or (
            isinstance(obj, EditTensor) and f.name in ("value", "which"))
        if keep or v != default:
            if hasattr(v, "__dataclass_fields__"):
                v = _drop_defaults(v)
            elif isinstance(v, tuple) and v and hasattr(v[0], "__dataclass_fields__"):
                v = [_drop_defaults(x) for x in v]
            out[f.name] = _plain(v)
    return out


def _build(cls, data: dict, what: str):
    if not isinstance(data, dict):
        raise SpecError(f"{what} must be an object, not {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise SpecError(f"Unknown field(s) in {what}: {', '.join(sorted(unknown))}")
    try:
        return cls(**data)
    except TypeError as e:
        raise SpecError(f"Invalid {what}: {e}") from None


def tensor_from_dict(d: dict) -> TensorSpec:
    d = dict(d)
    if d.get("grad") is not None:
        d["grad"] = _build(ManualGrad, d["grad"], "gradient")
    return _build(TensorSpec, d, f"tensor {d.get('name', '?')!r}")


def spec_to_dict(spec: SessionSpec) -> dict:
    return _drop_defaults(spec)


def spec_from_dict(d: dict) -> SessionSpec:
    if not isinstance(d, dict):
        raise SpecError("A spec must be a JSON object")
    d = dict(d)
    d["tensors"] = [tensor_from_dict(t) for t in d.get("tensors", [])]
    d["groups"] = [_build(GroupSpec, g, f"group {i}") for i, g in enumerate(d.get("groups", []))]
    if "gradient" in d:
        d["gradient"] = _build(GradientSpec, d["gradient"], "gradient source")
    if d.get("scheduler") is not None:
        d["scheduler"] = _build(SchedulerSpec, d["scheduler"], "scheduler")
    spec = _build(SessionSpec, d, "spec")
    spec.check()
    return spec


def action_to_dict(a) -> dict:
    return {"op": _OPS[type(a)], **_drop_defaults(a)}


def action_from_dict(d: dict):
    if not isinstance(d, dict) or d.get("op") not in ACTIONS:
        raise SpecError(f"Unknown journal action: {d!r}")
    d = dict(d)
    cls = ACTIONS[d.pop("op")]
    if cls is SetGrad and d.get("grad") is not None:
        d["grad"] = _build(ManualGrad, d["grad"], "gradient")
    if cls is AddGroup:
        d["tensors"] = [tensor_from_dict(t) for t in d.get("tensors", [])]
    return _build(cls, d, f"action {_OPS[cls]}")


def document(spec: SessionSpec, journal=()) -> dict:
    """The JSON document of a session: spec plus journal."""
    return {"format": SPEC_FORMAT, "version": SPEC_VERSION, "spec": spec_to_dict(spec),
            "journal": [action_to_dict(a) for a in journal]}


def pretty_json(obj, indent: int = 0) -> str:
    """JSON with objects one key a line and arrays of numbers kept on one line."""
    pad = "  " * (indent + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{pad}{json.dumps(k)}: {pretty_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(obj, list) and any(isinstance(x, dict) for x in obj):
        items = [pad + pretty_json(x, indent + 1) for x in obj]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(obj)


def dumps(spec: SessionSpec, journal=()) -> str:
    return pretty_json(document(spec, journal)) + "\n"


def from_document(doc: dict) -> tuple[SessionSpec, list]:
    if not isinstance(doc, dict) or doc.get("format") != SPEC_FORMAT:
        raise SpecError("This is not an optimlab session (no \"format\": \"optimlab-spec\")")
    if doc.get("version", 0) > SPEC_VERSION:
        raise SpecError(f"This session was written by a newer optimlab (version {doc['version']})")
    spec = spec_from_dict(doc.get("spec", {}))
    journal = [action_from_dict(a) for a in doc.get("journal", [])]
    return spec, journal


def loads(text: str) -> tuple[SessionSpec, list]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"The session file is not valid JSON: {e}") from None
    return from_document(doc)


__all__ = [n for n in dir() if not n.startswith("_")] + ["replace", "asdict"]
