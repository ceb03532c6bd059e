"""Resume a task session from a real checkpoint: it starts at the checkpoint's step.

``resume_spec(spec, path)`` reads a checkpoint (any format ``core.checkpoints`` opens: a
plain ``torch.save`` nest, a Lightning ``.ckpt``, a Hugging Face Trainer folder, a DCP
folder; always ``weights_only``) against the task ``spec`` names, and returns the spec with a
``resume`` entry and the data it needs (the timeline's stored blob). The engine applies it
when it builds (``Engine._resume``): the model's weights by name, the optimizer's state
(validated as every load is), the scheduler's state when the spec has a scheduler, the
task's data cursor at the step (``Task.seek``), torch's CPU generator when the checkpoint
carries one, and the step count.

The session then goes on bit for bit as the run that wrote the checkpoint did, provided that
run followed the task's documented rules (``core.tasks``: data, init, data order, loss,
step) and made its optimizer over ``model.parameters()`` in the model's order (one group,
or groups in that order), or as the spec's groups say, or saved ``param_names``, or keyed its
state by name (torch.distributed.checkpoint's ``get_state_dict``); Hugging Face's weight-decay
grouping is recognised by the state's shapes.

Which step: the ``step`` given, else the checkpoint's own (``global_step``, ``step``,
``iteration``, Hugging Face's ``trainer_state.json``), else the optimizer state's ``step``
when every parameter agrees. Anything that does not fit is refused in one sentence
(a LoadError naming the file and the tensor), and nothing is built.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import catalogue, checkpoints, files, trust
from .checkpoints import TensorRef
from .paths import LoadError
from .safe_load import NotLoaded
from .spec import GroupSpec, ResumeSpec, SessionSpec, SpecError
from .tasks import Task

STEP_KEYS = ("global_step", "step", "iteration", "iter", "trainer_state.global_step")
RNG_KEYS = ("rng_state", "torch_rng_state", "cpu_rng_state")


@dataclass(frozen=True)
class Resumed:
    """A spec that starts at a checkpoint's step, the stored data it names, and what to tell the user."""

    spec: SessionSpec
    blobs: dict
    step: int
    step_from: str  # where the step came from ("global_step", "--step", ...)
    notes: tuple[str, ...]


def resume_spec(spec: SessionSpec, path, step: int | None = None, optimizer: int | None = None) -> Resumed:
    """``spec`` (a task session) starting from the checkpoint at ``path``; LoadError/SpecError
    in one sentence if the checkpoint does not fit the task's model."""
    if spec.gradient.kind != "task":
        raise SpecError("Only a task session can resume from a checkpoint: give a task (a built-in task's "
                        "spec or a task script) whose model the checkpoint holds")
    with files.about(str(path)):
        obj, fmt = checkpoints.load_raw(path)
        weights, opts, scheds, info, _ = checkpoints.parts(obj)
        task = Task(spec.gradient.task)  # the model's names and shapes, on the CPU
        params, buffers, where = _model_weights(weights, task)
        sd, groups, opt_where = _optimizer(opts, task, optimizer, spec.groups)
        n, step_from = _step(step, info, sd)
        notes = [f"{fmt} checkpoint: model weights at {where}, optimizer state at {opt_where}, "
                 f"step {n:,} from {step_from}"]
        sched = None
        if scheds:
            if spec.scheduler is None:
                notes.append(f"the scheduler state at {scheds[0][0]} is not used: the spec names no scheduler")
            else:
                sched = _materialise(scheds[0][1], scheds[0][0])
        rng = _rng(obj)
        if rng is None:
            notes.append("no random generator state in the checkpoint: torch's is left as it is "
                         "(a model that draws random numbers, as dropout does, would differ)")
    data = {"params": params, "buffers": buffers, "optimizer": sd, "scheduler": sched, "rng": rng}
    key = f"resume-{files.content_id(data)}"
    keep = tuple(g.tensors for g in spec.groups) == tuple(g.tensors for g in groups)
    out = replace(spec, groups=spec.groups if keep else groups,
                  resume=ResumeSpec(step=n, blob=key, path=str(Path(path).absolute()), sha256=_sha256(path)))
    out.check()
    return Resumed(out, {key: data}, n, step_from, tuple(notes))


def task_spec_for(task: str, checkpoint, optimizer: str | None = None, optimizer_index: int | None = None,
                  **task_fields) -> SessionSpec:
    """The session spec a resumed run starts from: a task script (``.py``; its optimizer named,
    or read from the checkpoint's state; ``task_fields`` such as batch_size and seed as the run
    used them) or a session spec's JSON file naming a task (its journal is not used)."""
    from . import spec as specmod
    from .spec import GradientSpec
    from .task_spec import TaskSpec
    p = Path(task)
    if p.suffix.lower() == ".py":
        try:
            ts = TaskSpec(kind="script", script=str(p.absolute()), **task_fields)
        except TypeError as e:
            raise SpecError(f"Invalid task option: {e}") from None
        name = optimizer or guess_optimizer(checkpoint, optimizer_index)
        out = SessionSpec(optimizer=name, gradient=GradientSpec(kind="task", task=ts), zero_grad_each_step=True)
    else:
        with files.open_regular(p) as f:
            text = f.read(8 << 20).decode("utf-8", errors="replace")
        out, _ = specmod.loads(text, p.name)
        out = trust.with_base(out, p.parent)  # a task script named relative to the spec's folder
        if out.gradient.kind != "task":
            raise SpecError(f"{p.name} is not a task session: resuming needs the task whose model the checkpoint holds")
        if task_fields:
            out = replace(out, gradient=replace(out.gradient, task=replace(out.gradient.task, **task_fields)))
        if optimizer:
            out = replace(out, optimizer=optimizer)
    out.check()
    return out


def guess_optimizer(path, optimizer: int | None = None) -> str:
    """The torch.optim class whose param_groups the checkpoint's optimizer state has (for a task
    script, which names no optimizer); LoadError if none or several fit."""
    with files.about(str(path)):
        obj, _ = checkpoints.load_raw(path)
        _, opts, _, _, _ = checkpoints.parts(obj)
        where, sd = _pick(opts, optimizer)
        groups = [g for g in sd["param_groups"] if isinstance(g, dict)]
        if not groups:
            raise LoadError(f"the optimizer state at {where} has no param_groups")
        got = catalogue.identify(groups[0].keys(), groups[0])
        # the class whose fixed entries the group shows (AdamW's decoupled_weight_decay=True) over
        # one that merely allows them (Adam with that argument): they step alike
        specific = [n for n in got if catalogue.fixed_group_values(n)
                    and all(k in groups[0] for k in catalogue.fixed_group_values(n))]
        got = specific if len(specific) == 1 else got
        if len(got) != 1:
            which = f"it could be {' or '.join(got)}" if got else "no torch.optim class has its param_groups"
            raise LoadError(f"cannot tell which optimizer wrote the state at {where} ({which}): name it")
        return got[0]


# ----- what the checkpoint holds -----

def _model_weights(weights: dict, task: Task):
    """(params, buffers, where) for the task's model, by name: a weights dict holding every
    parameter, under a common prefix (Lightning's ``model.``, DDP's ``module.``) or none."""
    model_params = dict(task.model.named_parameters())
    state_names = set(task.model.state_dict())
    first = next(iter(model_params))
    best = None
    for where, w in weights.items():
        for k in w:
            if not (isinstance(k, str) and k.endswith(first)):
                continue
            prefix = k[:len(k) - len(first)]
            if prefix and not prefix.endswith("."):
                continue
            found = sum(prefix + n in w for n in model_params)
            if best is None or found > best[0]:
                best = (found, where, w, prefix)
    if best is None:
        raise LoadError(f"the checkpoint holds no weight named {first} (the task's model's first parameter): "
                        "it is not this model's checkpoint")
    _, where, w, prefix = best
    missing = next((n for n in model_params if prefix + n not in w), None)
    if missing is not None:
        raise LoadError(f"the checkpoint's weights at {where} have no {prefix}{missing}, which the task's model has")
    extra = next((k for k in w if k.startswith(prefix) and k[len(prefix):] not in state_names), None)
    if extra is not None:
        raise LoadError(f"the checkpoint's weights at {where} hold {extra}, which the task's model does not have")
    params = {}
    for n, p in model_params.items():
        t = _tensor(w[prefix + n], f"{where}.{prefix}{n}")
        if tuple(t.shape) != tuple(p.shape):
            raise LoadError(f"{prefix}{n} has shape {list(t.shape)} in the checkpoint, "
                            f"but {list(p.shape)} in the task's model")
        if t.dtype != p.dtype:
            raise LoadError(f"{prefix}{n} is {str(t.dtype)[6:]} in the checkpoint, "
                            f"but {str(p.dtype)[6:]} in the task's model")
        params[n] = t
    buffers = {n: _tensor(w[prefix + n], f"{where}.{prefix}{n}") for n, _ in task.model.named_buffers()
               if prefix + n in w}
    return params, buffers, where


def _pick(opts: list, index: int | None):
    if not opts:
        raise LoadError("the checkpoint holds no optimizer state (a dict with 'state' and 'param_groups'); "
                        "resuming needs one")
    if index is None:
        if len(opts) > 1:
            raise LoadError(f"the checkpoint holds {len(opts)} optimizer states "
                            f"({', '.join(w or '(top level)' for w, _ in opts)}): choose one by its number from 0 "
                            "(optimlab resume --optimizer-state I)")
        index = 0
    if not 0 <= index < len(opts):
        raise LoadError(f"there is no optimizer state {index}; the checkpoint holds {len(opts)}")
    where, sd = opts[index]
    return where or "(top level)", sd


def _optimizer(opts: list, task: Task, index: int | None, spec_groups=()):
    """(the optimizer state_dict as saved, the groups as tensor names, where it was). The
    parameters of the groups, in order, are their ``param_names`` if saved; else the first of
    these orders whose parameters have the shapes of their state tensors: the spec's groups (the
    script built its groups as the spec says), the model's ``named_parameters`` order, Hugging
    Face Trainer's weight-decay grouping (weights first, then biases and norms)."""
    where, raw = _pick(opts, index)
    sd = _materialise(raw, where)
    shapes = {n: tuple(p.shape) for n, p in task.named_parameters()}
    names = list(shapes)
    groups = [g for g in sd["param_groups"] if isinstance(g, dict) and isinstance(g.get("params"), list)]
    count = sum(len(g["params"]) for g in groups)
    if count != len(names):
        raise LoadError(f"the optimizer state at {where} holds {count} parameter(s); "
                        f"the task's model has {len(names)} ({', '.join(names[:4])}{'...' if len(names) > 4 else ''})")
    sizes = [len(g["params"]) for g in groups]
    keys = [k for g in groups for k in g["params"]]
    if keys and all(isinstance(k, str) for k in keys):
        return _renumbered(sd, groups, keys, names, where)
    if all(isinstance(g.get("param_names"), list) for g in groups):
        unknown = next((n for g in groups for n in g["param_names"] if n not in names), None)
        if unknown is not None:
            raise LoadError(f"the optimizer state at {where} names a parameter {unknown!r} "
                            "the task's model does not have")
        named = [tuple(g["param_names"]) for g in groups]
        return sd, tuple(GroupSpec(t) for t in named), where
    orders = []
    if spec_groups and [len(g.tensors) for g in spec_groups] == sizes:
        orders.append([n for g in spec_groups for n in g.tensors])
    orders.append(names)
    orders.append([n for n in names if not _no_decay(n)] + [n for n in names if _no_decay(n)])
    candidates = []
    for flat in orders:
        it = iter(flat)
        named = [tuple(next(it) for _ in range(k)) for k in sizes]
        candidates.append(named)
        try:
            _check_shapes(named, groups, sd["state"], shapes, where)
        except LoadError:
            continue
        return sd, tuple(GroupSpec(t) for t in named), where
    # none fits by shapes (state that is not shaped like its parameter: LBFGS's flat history,
    # factored second moments): the first order, and the engine's own checks of the state decide
    return sd, tuple(GroupSpec(t) for t in candidates[0]), where


def _renumbered(sd: dict, groups: list, keys: list, names: list, where: str):
    """A state keyed by parameter names (torch.distributed.checkpoint's ``get_state_dict``), numbered
    as torch's own state_dict numbers it (group order), each group named by its keys (a common
    prefix such as ``model.`` allowed)."""
    prefix = next((k[:len(k) - len(n)] for k in keys[:1] for n in names
                   if k.endswith(n) and (len(k) == len(n) or k[len(k) - len(n) - 1] == ".")), None)
    bad = next((k for k in keys if prefix is None or not k.startswith(prefix) or k[len(prefix):] not in names), None)
    if bad is not None:
        raise LoadError(f"the optimizer state at {where} is for a parameter {bad!r} the task's model does not have")
    number = {k: i for i, k in enumerate(keys)}
    stray = next((k for k in sd["state"] if k not in number), None)
    if stray is not None:
        raise LoadError(f"the optimizer state at {where} has state for {stray!r}, which no param_group lists")
    out = {"state": {number[k]: v for k, v in sd["state"].items()},
           "param_groups": [{**g, "params": [number[k] for k in g["params"]]} for g in groups]}
    named = [tuple(k[len(prefix):] for k in g["params"]) for g in groups]
    return out, tuple(GroupSpec(t) for t in named), where


def _no_decay(name: str) -> bool:
    low = name.lower()
    return low.endswith("bias") or "norm" in low


def _check_shapes(named, groups, state: dict, shapes: dict, where: str) -> None:
    """Every state tensor with dimensions has its parameter's shape (else LoadError naming it)."""
    for names, g in zip(named, groups):
        for n, key in zip(names, g["params"]):
            st = state.get(key)
            for k, v in (st.items() if isinstance(st, dict) else ()):
                if isinstance(v, torch.Tensor) and v.dim() and tuple(v.shape) != shapes[n]:
                    raise LoadError(f"the optimizer state's {k} for {n} (at {where}) has shape {list(v.shape)}, "
                                    f"but {n} is {list(shapes[n])} in the task's model")


def _step(given: int | None, info: dict, sd: dict) -> tuple[int, str]:
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or given < 0:
            raise LoadError(f"the step must be a whole number, 0 or more, not {given!r}")
        return given, "the step given"
    for k in STEP_KEYS:
        v = info.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v, k
    steps = set()
    for st in sd.get("state", {}).values():
        v = st.get("step") if isinstance(st, dict) else None
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() and v >= 0:
            steps.add(int(v))
        else:
            steps.add(None)
    if len(steps) == 1 and None not in steps:
        return steps.pop(), "the optimizer state's step"
    raise LoadError("no step found in the checkpoint (no global_step, step or iteration entry, and the optimizer "
                    "state's steps do not agree): give the step it was saved at (optimlab resume --step N, "
                    "or the step field of Resume as session)")


def _rng(obj) -> torch.Tensor | None:
    """torch's CPU generator state, if the checkpoint carries one (top-level ``rng_state`` and
    the like; Hugging Face's ``rng_state.pth`` holds it under ``cpu``)."""
    if not isinstance(obj, dict):
        return None
    for k in RNG_KEYS:
        v = obj.get(k)
        if isinstance(v, dict):
            v = v.get("cpu")
        if isinstance(v, TensorRef):
            v = v.tensor()
        if isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.dim() == 1:
            return v.clone()
    return None


def _tensor(v, where: str) -> torch.Tensor:
    if isinstance(v, TensorRef):
        v = v.tensor()
    if not isinstance(v, torch.Tensor):
        raise LoadError(f"{where} is not a tensor")
    return v.detach().clone()  # out of the memory-mapped file: the session keeps its own copy


def _materialise(obj, where: str):
    """A copy with every tensor read (lazy ones too); an entry that needs a class is refused."""
    if isinstance(obj, NotLoaded):
        raise LoadError(f"{where} is {obj}, and resuming needs it")
    if isinstance(obj, (TensorRef, torch.Tensor)):
        return _tensor(obj, where)
    if isinstance(obj, dict):
        return {k: _materialise(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(_materialise(v, f"{where}[{i}]") for i, v in enumerate(obj))
    return obj


def _sha256(path) -> str:
    """The file's SHA-256 (a folder's: over its files' names and bytes, in name order)."""
    h = hashlib.sha256()
    p = Path(path)
    for f in (sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]):
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


__all__ = ["Resumed", "resume_spec", "task_spec_for", "guess_optimizer"]
