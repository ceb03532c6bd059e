"""The session spec and journal: plain dataclasses that read and write JSON.

No torch here, so widgets can edit specs. `core.session` turns a spec into live
tensors and an optimizer, and applies journal actions to it.
"""
from __future__ import annotations

import json
import math
import operator
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Annotated

from msgspec import Meta

from . import optimizer_names, schema
from .schema import (MAX_JOURNAL, MAX_NUMEL, MAX_STEPS, MAX_TENSORS, MAX_VALUES, Count, HParams, HValue, Index, Names,
                     OptimizerText, PathText, Shape, SpecError, Text, Values, Word, in_file, parse_json)
from .task_spec import TaskSpec, task_from_dict

DTYPES = ("float32", "float64", "bfloat16", "float16")  # parameter dtypes (core.devices shows them)
INITS = ("zeros", "ones", "constant", "normal", "uniform", "xavier_uniform", "xavier_normal",
         "kaiming_uniform", "kaiming_normal", "values", "task")  # "task": made by a training task's model
GRAD_FILLS = ("constant", "zeros", "normal", "values")
OBJECTIVES = ("quadratic", "rosenbrock", "rastrigin", "beale", "himmelblau")
SPEC_FORMAT = "optimlab-spec"
SPEC_VERSION = 1


def _shape(shape) -> tuple[int, ...]:
    """Sizes as a tuple of ints; no parsing (a shape "22" or [2.7, 2] is refused, not read as [2, 2])."""
    try:
        if isinstance(shape, (str, bytes)) or any(isinstance(s, bool) for s in shape):
            raise TypeError
        out = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise SpecError(f"Invalid shape: {shape!r} (a list of whole numbers)") from None
    if any(s <= 0 for s in out) or len(out) > 4:
        raise SpecError(f"Invalid shape: {list(out)} (up to 4 positive sizes; [] is a scalar)")
    return out


def _finite(what: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"Invalid {what}: {value!r} (a finite number)")


def _seed(what: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 63:
        raise SpecError(f"Invalid {what}: {value!r} (a whole number from 0 to 2**63 - 1)")


def _nested_shape(values, level: int = 0) -> tuple[int, ...]:
    if isinstance(values, (list, tuple)):
        if not values:
            return (0,)
        if level == schema.MAX_DIMS:
            raise SpecError(f"Explicit values nest deeper than {schema.MAX_DIMS} levels (a tensor has at most {schema.MAX_DIMS} dimensions)")
        inner = {_nested_shape(v, level + 1) for v in values}
        if len(inner) != 1:
            raise SpecError("Explicit values are ragged: every row needs the same length")
        return (len(values),) + inner.pop()
    if isinstance(values, bool) or not isinstance(values, (int, float)):
        raise SpecError(f"Explicit values must be numbers, not {values!r}")
    return ()


def _check_values(values, shape: tuple[int, ...], what: str) -> None:
    """Explicit values must be nested lists of numbers of exactly ``shape``."""
    if math.prod(shape) > MAX_VALUES:
        raise SpecError(f"{what} can be written out for at most {MAX_VALUES:,} numbers, not {math.prod(shape):,}: "
                        "use another init")
    if values is None or _nested_shape(values) != shape:
        raise SpecError(f"{what} must have shape {list(shape)}")


@dataclass(frozen=True)
class ManualGrad:
    """A gradient the user sets by hand (the seed's ``weight.grad = torch.ones(...)``)."""

    fill: Word = "constant"
    value: float = 1.0
    std: float = 1.0
    values: Values | None = None
    sparse: bool = False

    def check(self, shape: tuple[int, ...], name: str) -> None:
        if self.fill not in GRAD_FILLS:
            raise SpecError(f"Unknown gradient fill {self.fill!r} for {name}: use one of {', '.join(GRAD_FILLS)}")
        if self.fill == "values":
            _check_values(self.values, shape, f"Gradient values for {name}")
        if self.fill == "normal" and not self.std >= 0:
            raise SpecError(f"Invalid gradient std for {name}: {self.std}")
        _finite(f"gradient std for {name}", self.std)
        _finite(f"gradient value for {name}", self.value)


@dataclass(frozen=True)
class TensorSpec:
    """A named parameter tensor and how it starts."""

    name: Word
    shape: Shape
    dtype: Word = "float32"
    init: Word = "normal"
    value: float = 0.0  # constant
    mean: float = 0.0  # normal
    std: float = 1.0  # normal
    low: float = -1.0  # uniform
    high: float = 1.0  # uniform
    gain: float = 1.0  # xavier
    values: Values | None = None  # explicit values, nested lists
    seed: int | None = None  # None: derived from the session seed and the tensor's position
    grad: ManualGrad | None = None  # manual gradient, used when the gradient source is manual

    def __post_init__(self):
        object.__setattr__(self, "shape", _shape(self.shape))

    def check(self) -> None:
        if not self.name or not self.name.replace("_", "a").replace(".", "a").isalnum():
            raise SpecError(f"Invalid tensor name {self.name!r}: use letters, digits, '_' and '.'")
        if self.dtype not in DTYPES:
            raise SpecError(f"Invalid dtype {self.dtype!r} for {self.name}: use {', '.join(DTYPES)}")
        if self.init not in INITS:
            raise SpecError(f"Unknown init {self.init!r} for {self.name}: use one of {', '.join(INITS)}")
        if self.numel > MAX_NUMEL:
            raise SpecError(f"{self.name} would hold {self.numel:,} numbers; a tensor holds at most {MAX_NUMEL:,}")
        if self.init == "values":
            _check_values(self.values, self.shape, f"Values for {self.name}")
        for what in ("value", "mean", "std", "low", "high", "gain"):
            _finite(f"{what} for {self.name}", getattr(self, what))
        if self.init == "uniform" and not self.low < self.high:
            raise SpecError(f"Invalid uniform range for {self.name}: low {self.low} must be below high {self.high}")
        if self.init == "normal" and not self.std >= 0:
            raise SpecError(f"Invalid std for {self.name}: {self.std}")
        if self.init.startswith(("xavier", "kaiming")) and len(self.shape) < 2:
            raise SpecError(f"{self.init} init needs a tensor with at least 2 dimensions; {self.name} has shape {list(self.shape)}")
        if self.seed is not None:
            _seed(f"seed for {self.name}", self.seed)
        if self.grad is not None:
            self.grad.check(self.shape, self.name)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


Tensors = Annotated[tuple[TensorSpec, ...], Meta(max_length=MAX_TENSORS)]


@dataclass(frozen=True)
class GroupSpec:
    """A param_group: tensor names plus hyperparameters that override the defaults."""

    tensors: Names
    hparams: HParams = field(default_factory=dict)

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

    kind: Word = "manual"
    when: Word = "once"
    objective: Word = "rosenbrock"
    condition: float = 100.0  # quadratic: ratio of largest to smallest curvature
    tensors: Names = ()  # objective: which tensors; () means all
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
        if self.kind == "objective" and self.objective == "quadratic" and \
                not (self.condition >= 1 and math.isfinite(self.condition)):
            raise SpecError(f"Invalid condition number: {self.condition} (a finite number of at least 1)")


@dataclass(frozen=True)
class SchedulerSpec:
    """An lr scheduler of torch.optim.lr_scheduler, stepped every step or every epoch."""

    name: Word
    params: HParams = field(default_factory=dict)
    every: Word = "epoch"  # "step" or "epoch" (without a task, an epoch is one step)

    def __post_init__(self):
        object.__setattr__(self, "params", {k: _tuples(v) for k, v in dict(self.params).items()})

    def check(self) -> None:
        if self.every not in ("step", "epoch"):
            raise SpecError(f"Invalid scheduler interval {self.every!r}: use step or epoch")


Groups = Annotated[tuple[GroupSpec, ...], Meta(max_length=MAX_TENSORS)]


@dataclass(frozen=True)
class ResumeSpec:
    """A session that starts at ``step`` of a checkpoint (``core.resume``): its model weights,
    optimizer state, scheduler state and random generator are the timeline's stored ``blob``,
    so a saved session reopens without the checkpoint file. ``path`` and ``sha256`` say which
    file it was read from (shown, never read again)."""

    step: Annotated[int, Meta(ge=0, le=MAX_STEPS)]
    blob: Word
    path: PathText = ""
    sha256: Word = ""
    # False: the checkpoint's weights, data position and generator, with a fresh optimizer and
    # scheduler (another optimizer tried from the checkpoint's step)
    optimizer_state: bool = True


@dataclass(frozen=True)
class SessionSpec:
    """What a session starts from. The journal says what happened since."""

    optimizer: OptimizerText = "SGD"  # core.optimizer_names: "Adam", "pytorch_optimizer.Lion", "file:P.py:C"
    hparams: HParams = field(default_factory=dict)  # optimizer defaults given to the constructor
    tensors: Tensors = ()
    groups: Groups = ()  # empty: one group with every tensor
    gradient: GradientSpec = field(default_factory=GradientSpec)
    device: Word = "cpu"
    seed: int = 0
    set_to_none: bool = True  # zero_grad(set_to_none=...)
    zero_grad_each_step: bool = False  # call zero_grad before every step's gradient
    scheduler: SchedulerSpec | None = None
    # steps run under torch.use_deterministic_algorithms(True) (CUBLAS_WORKSPACE_CONFIG set):
    # for kernels that are otherwise nondeterministic on CUDA (index_add, scatter, some convolutions)
    deterministic: bool = False
    name: Text = ""
    description: Text = ""
    resume: ResumeSpec | None = None  # starts at a checkpoint's step (a task's model only)

    def __post_init__(self):
        object.__setattr__(self, "tensors", tuple(self.tensors))
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "hparams", {k: _tuples(v) for k, v in dict(self.hparams).items()})

    @property
    def start_step(self) -> int:
        """The step the session starts at: 0, or a resumed checkpoint's step."""
        return 0 if self.resume is None else self.resume.step

    def effective_groups(self) -> tuple[GroupSpec, ...]:
        if self.groups:
            return self.groups
        return (GroupSpec(tuple(t.name for t in self.tensors)),)

    def check(self) -> None:
        """Structural checks that need no torch (names, membership, shapes)."""
        try:
            optimizer_names.parse(self.optimizer)
        except ValueError as e:
            raise SpecError(str(e)) from None
        _seed("seed", self.seed)
        if self.resume is not None and self.gradient.kind != "task":
            raise SpecError("Only a task session can resume from a checkpoint: the checkpoint's weights "
                            "belong to the task's model")
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
        total = sum(t.numel for t in self.tensors)
        if total > MAX_NUMEL:
            raise SpecError(f"The tensors would hold {total:,} numbers; a session holds at most {MAX_NUMEL:,}")
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SpecError(f"Tensor names must be unique; repeated: {', '.join(sorted(dup))}")
        check_groups(self.effective_groups(), names)
        self.gradient.check()
        for n in self.gradient.tensors:
            if n not in names:
                raise SpecError(f"The objective names an unknown tensor {n!r}")

    def tensor(self, name: str) -> TensorSpec:
        for t in self.tensors:
            if t.name == name:
                return t
        raise SpecError(f"No tensor named {name!r}")


def check_groups(groups, known, taken: set[str] = frozenset()) -> None:
    """Refuse empty groups, unknown tensors, tensors in two groups, and tensors in none.

    A tensor in no group would never be optimized, and torch's state_dict (which
    numbers the groups' params) would have no place for it: such a spec is refused.
    """
    known = sorted(known) if isinstance(known, (set, frozenset)) else list(known)
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
    left = [n for n in known if n not in seen]
    if left:
        which = f"Tensor {left[0]!r} is" if len(left) == 1 else f"Tensors {', '.join(map(repr, left))} are"
        raise SpecError(f"{which} in no group: every tensor must be in one param_group to be optimized")


def _tuples(v):
    """JSON has no tuples; torch's hyperparameters (betas, etas) are tuples."""
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    return v


# ----- journal -----

@dataclass(frozen=True)
class Step:
    n: Count = 1


@dataclass(frozen=True)
class ZeroGrad:
    set_to_none: bool | None = None  # None: the session's setting


@dataclass(frozen=True)
class SetGrad:
    tensor: Word
    grad: ManualGrad | None  # None clears the gradient (p.grad = None)


@dataclass(frozen=True)
class AddGroup:
    """``optimizer.add_param_group``: new tensors join in a new group."""

    tensors: Tensors
    hparams: HParams = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "tensors", tuple(self.tensors))
        object.__setattr__(self, "hparams", {k: _tuples(v) for k, v in dict(self.hparams).items()})


@dataclass(frozen=True)
class SetHparam:
    group: Index
    name: Word
    value: HValue

    def __post_init__(self):
        object.__setattr__(self, "value", _tuples(self.value))


@dataclass(frozen=True)
class LoadOptimizer:
    """Load an optimizer state_dict: from ``path``, or from the session file's ``blob``."""

    path: PathText = ""
    blob: Word = ""


@dataclass(frozen=True)
class LoadParams:
    path: PathText = ""
    blob: Word = ""


@dataclass(frozen=True)
class EditTensor:
    """Set one element (``index``) or every element (``index`` None) of a parameter (``which``
    "value"), its gradient ("grad") or one of its optimizer state entries ("exp_avg", ...)."""

    tensor: Word
    which: Word = "value"
    index: Annotated[tuple[Annotated[int, Meta(ge=0, le=MAX_NUMEL)], ...], Meta(max_length=4)] | None = None
    value: float = 0.0

    def __post_init__(self):
        if self.index is not None:
            object.__setattr__(self, "index", tuple(self.index))
        if not math.isfinite(self.value):
            raise SpecError(f"An edited value must be a finite number, not {self.value}")


@dataclass(frozen=True)
class SetDevice:
    device: Word


@dataclass(frozen=True)
class Reset:
    pass


ACTIONS = {"step": Step, "zero_grad": ZeroGrad, "set_grad": SetGrad, "add_group": AddGroup,
           "set_hparam": SetHparam, "load_optimizer": LoadOptimizer, "load_params": LoadParams,
           "edit_tensor": EditTensor, "set_device": SetDevice, "reset": Reset}
_OPS = {cls: op for op, cls in ACTIONS.items()}
Action = Step | ZeroGrad | SetGrad | AddGroup | SetHparam | LoadOptimizer | LoadParams | EditTensor | SetDevice | Reset


# ----- the document: spec + journal (+ a saved session's layout) -----

@dataclass(frozen=True)
class Layout:
    """Where a saved session stood (a .optimlab's session.json): device, steps, groups, added tensors."""

    device: Word | None = None  # None: the spec's
    step: Annotated[int, Meta(ge=0, le=MAX_STEPS)] = 0
    groups: Groups = ()
    added_tensors: Tensors = ()


MAX_BRANCHES = 10_000
Steps = Annotated[int, Meta(ge=0, le=MAX_STEPS)]
Entries = Annotated[tuple[dict[Word, object], ...], Meta(max_length=MAX_JOURNAL)]


@dataclass(frozen=True)
class Position:
    """Where a .json session stood when saved (it reopens there)."""

    step: Steps
    index: Annotated[int, Meta(ge=0, le=MAX_JOURNAL)] | None = None  # between the step's actions (an undo)


@dataclass(frozen=True)
class BranchDoc:
    """One branch of a saved timeline; its journal entries carry "at", the step count before them."""

    id: Annotated[int, Meta(ge=0, le=MAX_BRANCHES)]
    spec: SessionSpec
    parent: Annotated[int, Meta(ge=0, le=MAX_BRANCHES)] | None = None
    fork_step: Steps = 0
    inherits: bool = False
    reason: Text = ""
    last_loss: float | None = None
    threads: Annotated[int, Meta(ge=0, le=65536)] = 0
    journal: Entries = ()


@dataclass(frozen=True)
class TimelineDoc:
    """A .optimlab's timeline: its branches, where the session stood, its breakpoints."""

    current: Annotated[int, Meta(ge=0, le=MAX_BRANCHES)]
    branches: Annotated[tuple[BranchDoc, ...], Meta(min_length=1, max_length=MAX_BRANCHES)]
    at_head: bool = True
    step: Steps = 0
    index: Annotated[int, Meta(ge=0, le=MAX_JOURNAL)] | None = None
    budget: Annotated[int, Meta(ge=0, le=2 ** 50)] = 512 * 2 ** 20
    breakpoints: Annotated[tuple[tuple[Text, bool], ...], Meta(max_length=1000)] = ()


@dataclass(frozen=True)
class Document:
    """A session document as JSON holds it; journal actions are read one by one (by their "op")."""

    format: Word
    version: Annotated[int, Meta(ge=1)] = SPEC_VERSION
    spec: SessionSpec = field(default_factory=SessionSpec)
    journal: Entries = ()
    layout: Layout | None = None
    timeline: TimelineDoc | None = None  # a .optimlab (version 2)
    blobs: Annotated[dict[Word, str], Meta(max_length=MAX_JOURNAL)] | None = None  # a .json's loads (base64)
    position: Position | None = None  # a .json saved while rewound


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
        default = f.default if f.default_factory is MISSING else f.default_factory()
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


def tensor_from_dict(d: dict, where: str = "tensor") -> TensorSpec:
    return schema.convert(d, TensorSpec, where)


def spec_to_dict(spec: SessionSpec) -> dict:
    return _drop_defaults(spec)


def spec_from_dict(d: dict, where: str = "spec") -> SessionSpec:
    """A checked SessionSpec from JSON data; SpecError names the field (``spec.tensors[0].shape``)."""
    spec = schema.convert(d, SessionSpec, where)
    spec.check()
    return spec


def action_to_dict(a) -> dict:
    return {"op": _OPS[type(a)], **_drop_defaults(a)}


def action_from_dict(d: dict, where: str = "action"):
    """A journal action from JSON data (its "op" picks the kind)."""
    if not isinstance(d, dict):
        raise SpecError(f"{where} must be an object with an \"op\", not {schema._show(d)}")
    op = d.get("op")
    if not isinstance(op, str) or op not in ACTIONS:
        raise SpecError(f"{where}.op must be one of {', '.join(ACTIONS)}, not {schema._show(op)}")
    return schema.convert({k: v for k, v in d.items() if k != "op"}, ACTIONS[op], where)


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


def read_document(doc, source: str = "") -> tuple[Document, list]:
    """The checked document and its journal actions; SpecError names the field and ``source`` (the file)."""
    with schema.in_file(source):
        if not isinstance(doc, dict) or doc.get("format") != SPEC_FORMAT:
            raise SpecError("This is not an optimlab session (no \"format\": \"optimlab-spec\")")
        version = doc.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > SPEC_VERSION:
            raise SpecError(f"This session was written by a newer optimlab (version {version})")
        d = schema.convert(doc, Document, "")
        d.spec.check()
        journal = [action_from_dict(a, f"journal[{i}]") for i, a in enumerate(d.journal)]
    return d, journal


def from_document(doc: dict, source: str = "") -> tuple[SessionSpec, list]:
    d, journal = read_document(doc, source)
    return d.spec, journal


def loads(text: str, source: str = "") -> tuple[SessionSpec, list]:
    """Spec and journal from a session document's text (``source``: the file's name, for messages)."""
    return from_document(schema.parse_json(text, source), source)


__all__ = [n for n in dir() if not n.startswith("_")] + ["replace", "asdict"]
