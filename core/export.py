"""Export a branch of the timeline as a plain PyTorch script that reproduces it.

``export_script(session)`` translates the current branch (up to where the session
stands; another branch: its head) into a readable script that needs only torch (and
numpy for the digits): the tensors exactly as ``core.engine.make_tensor`` makes them
(or the task's data and model, ``core.export_task``), the groups, the optimizer, the
scheduler, the manual gradients set once, then every journal action in order (steps in
the engine's documented order, ``param_groups`` edits, ``zero_grad``,
``add_param_group``, loads of stored state_dicts with ``weights_only=True``, edits of
tensors, device moves), with the seeds and torch's thread count where the branch
recorded one. At its end the script compares a SHA-256 of every parameter, gradient,
optimizer state entry and group setting with the values recorded at export
(``core.export_check``) and prints ``reproduced`` or what differs. A branch resumed from a
checkpoint starts where the engine starts it (``core.export_resume``): the checkpoint's data
is a file beside the script.

``optimlab export SESSION [-o script.py] [--branch B]`` prints or writes it.
"""
from __future__ import annotations

import base64
import keyword
import re
from dataclasses import dataclass, field, replace
from pathlib import Path


from . import (catalogue, export_check, export_resume, export_task, files, objectives, optimizer_names, paths,
               schedulers)
from .engine import Engine, grad_seed, optimizer_seed, tensor_seed
from .replay import engine_at, generators_kept
from .spec import (AddGroup, EditTensor, LoadOptimizer, LoadParams, ManualGrad, Reset, SetDevice, SetGrad, SetHparam,
                   SpecError, Step, TensorSpec, ZeroGrad)
from .timeline import branch_list

INLINE_LIMIT = 256 * 1024  # bytes of a stored state_dict embedded in the script; bigger ones go beside it
RESERVED = {"torch", "nn", "F", "np", "math", "io", "sys", "base64", "hashlib", "runpy", "Path", "OrderedDict",
            "optimizer", "scheduler", "params", "model", "step", "closure", "grad_gen", "stored", "STORED", "FILES",
            "EXPECTED", "digest", "fingerprints", "found", "differ", "device", "task", "batch", "loss", "loss_fn",
            "next_batch", "evaluate", "step_count", "val_loss", "train_x", "train_y", "val_x", "val_y", "order",
            "order_generator", "n_train", "batch_size", "steps_per_epoch", "batch_in_epoch", "evaluated", "x", "y",
            "sd", "p", "name", "value", "TASK_SCRIPT", "importlib", "optimizer_module", "module_spec", "beside",
            "checkpoint", "epoch"}


@dataclass(frozen=True)
class ExportedScript:
    """The script's text and the files it reads from beside itself (large stored state_dicts, a
    resumed branch's checkpoint data)."""

    text: str
    files: dict[str, bytes] = field(default_factory=dict)


def _shape(shape) -> str:
    shape = tuple(shape)
    return f"({shape[0]},)" if len(shape) == 1 else repr(shape)


def _dtype(dtype: str, first: bool = False) -> str:
    """``, dtype=torch.float64`` (float32 is torch's default and left out)."""
    return "" if dtype == "float32" else f"{'' if first else ', '}dtype=torch.{dtype}"


def tensor_expr(t: TensorSpec, seed: int, device: str) -> str:
    """``core.engine.make_tensor`` as one expression (on the CPU, then moved)."""
    shape, dt = _shape(t.shape), _dtype(t.dtype)
    gen = f"generator=torch.Generator().manual_seed({seed})"
    empty = f"torch.empty({shape}{dt})"
    x = {"zeros": f"torch.zeros({shape}{dt})", "ones": f"torch.ones({shape}{dt})",
         "constant": f"torch.full({shape}, {t.value!r}{dt})",
         "normal": f"torch.nn.init.normal_({empty}, {t.mean!r}, {t.std!r}, {gen})",
         "uniform": f"torch.nn.init.uniform_({empty}, {t.low!r}, {t.high!r}, {gen})",
         "xavier_uniform": f"torch.nn.init.xavier_uniform_({empty}, {t.gain!r}, {gen})",
         "xavier_normal": f"torch.nn.init.xavier_normal_({empty}, {t.gain!r}, {gen})",
         "kaiming_uniform": f"torch.nn.init.kaiming_uniform_({empty}, {gen})",
         "kaiming_normal": f"torch.nn.init.kaiming_normal_({empty}, {gen})",
         "values": f"torch.tensor({t.values!r}{dt})"}[t.init]
    return x + (f".to({device!r})" if device != "cpu" else "") + ".requires_grad_(True)"


def grad_expr(g: ManualGrad, shape, dtype: str, device: str) -> str:
    """``core.engine.make_grad`` as one expression (random ones from ``grad_gen``)."""
    shape, dt = _shape(shape), _dtype(dtype)
    if g.fill == "constant":
        x = {1.0: f"torch.ones({shape}{dt})", 0.0: f"torch.zeros({shape}{dt})"}.get(
            g.value, f"torch.full({shape}, {g.value!r}{dt})")
    elif g.fill == "zeros":
        x = f"torch.zeros({shape}{dt})"
    elif g.fill == "normal":
        x = f"torch.randn({shape}, generator=grad_gen{dt})" + ("" if g.std == 1.0 else f" * {g.std!r}")
    else:
        x = f"torch.tensor({g.values!r}{dt})"
    return x + (".to_sparse()" if g.sparse else "") + (f".to({device!r})" if device != "cpu" else "")


class _Writer:
    """Writes the script for one branch's spec and journal, line by line."""

    def __init__(self, spec, blobs: dict, engine: Engine, script_name: str, inline_limit: int):
        self.spec, self.blobs, self.script_name, self.inline_limit = spec, blobs, script_name, inline_limit
        self.task = spec.gradient.task if spec.gradient.kind == "task" else None
        need = catalogue.needs(spec.optimizer)  # what the engine does for the class, the script does too
        self.lbfgs = catalogue.CLOSURE in need  # LBFGS, and other classes stepped with a closure
        self.backward = "loss.backward(create_graph=True)" if catalogue.SECOND_ORDER in need else "loss.backward()"
        self.switch = catalogue.TRAIN_EVAL in need  # schedule-free's train()/eval()
        self.origin = optimizer_names.parse(spec.optimizer)
        self.device = spec.device
        self.lines: list[str] = []
        self.files: dict[str, bytes] = {}
        self.stored: dict[str, str] = {}  # blob key -> base64, or the sibling file's name
        self.beside: dict[str, str] = {}  # sibling file -> what it holds (the header's list)
        self.names: dict[str, str] = {}  # tensor name -> how the script refers to it
        self.dtypes: dict[str, str] = {}
        self.shapes: dict[str, tuple] = {}
        self.grad_gen = False  # set when any gradient is drawn from the session's generator
        self.count = len(engine.tensor_specs)  # tensors made so far (seeds of added ones follow on)
        self.manual = [(t.name, t.grad) for t in engine.tensor_specs if t.grad is not None]
        self.step_defined = None  # the manual-gradient list the current step() was written for
        self.initial = engine  # the engine as the spec builds it (a task's parameters, the first groups)
        self.reads = export_task.files_read(self.task) if self.task is not None else []  # (path, what)
        if self.origin.kind == "file":
            self.reads.append((str(self.origin.path), "your optimizer file"))

    # ----- names -----

    def ref(self, name: str) -> str:
        return self.names[name]

    def _name(self, name: str) -> str:
        """A variable for a hand-made tensor: its own name where Python allows, else one made from it."""
        var = re.sub(r"\W", "_", name)
        var = var if var.isidentifier() else f"t_{var}"
        taken = set(self.names.values())
        if keyword.iskeyword(var) or var in RESERVED or var in taken:
            var = f"t_{var}"
            while var in taken or var in RESERVED:
                var += "_"
        return var

    # ----- the parts of the script -----

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    def build(self, threads: int) -> None:
        spec, eng = self.spec, self.initial
        if threads:
            self.emit(f"torch.set_num_threads({threads})  # the branch ran with {threads} "
                      f"thread{'s' if threads != 1 else ''} "
                      "(a CPU reduction's order depends on it)", "")
        if self.task is not None:
            self.emit("# ----- the task: data, model and loss (core/tasks.py's recipe) -----")
            self.emit(*export_task.setup(self.task, self.device))
            for n, p in eng.params.items():
                self.names[n], self.dtypes[n], self.shapes[n] = f"params[{n!r}]", str(p.dtype)[6:], tuple(p.shape)
            self.emit("", *export_task.batches(self.task), "", "")
        else:
            self.emit("# ----- the tensors (tensor i: seed (session seed * 1_000_003 + i) % 2**63 unless set) -----")
            self._make_tensors(spec.tensors, 0)
            self.emit("params = {" + ", ".join(f"{t.name!r}: {self.ref(t.name)}" for t in spec.tensors) + "}")
        if self.grad_gen:
            self.emit(f"grad_gen = torch.Generator().manual_seed({grad_seed(spec.seed)})  "
                      "# random manual gradients: (seed * 1_000_003 + 999_983) % 2**63")
        if spec.gradient.kind == "manual" and spec.gradient.when == "once":
            for name, g in self.manual:
                self.emit(f"{self.ref(name)}.grad = {self._grad(name, g)}")
        if spec.gradient.kind == "objective":
            self.emit("", "", "# ----- the objective (core/objectives.py) -----", "")
            self.emit(*export_task.source(objectives._flat, objectives.OBJECTIVES[spec.gradient.objective].fn))
        self.emit("", "# ----- the optimizer" + (" and the scheduler" if spec.scheduler else "") + " -----")
        self._optimizer(eng.group_specs)
        if spec.scheduler is not None:
            s = spec.scheduler
            args = "".join(f", {k}={v!r}" for k, v in schedulers._coerce(s.name, s.params).items())
            self.emit(f"scheduler = torch.optim.lr_scheduler.{s.name}(optimizer{args})")
        if self.switch:
            self.emit("optimizer.train()  # schedule-free: train mode before the first gradient")
        if self.origin.kind != "torch":
            self.emit(f"torch.manual_seed({optimizer_seed(spec.seed)})  # torch's generator, for a class that draws "
                      "from it: (seed * 1_000_003 + 999_979) % 2**63")
            self.emit(f"np.random.seed({optimizer_seed(spec.seed) % 2 ** 32})  # and numpy's, for one that draws from it")
        if spec.resume is not None:
            self._resume(spec.resume)
        elif self.task is not None:
            self.emit("step_count, val_loss = 0, None")
        if self.lbfgs:
            self._closure()
        if not self._plain_step():
            self._step_function()
        self.emit("", "# ----- what the session did, in order -----")

    def _resume(self, r) -> None:
        """The checkpoint's data, loaded as ``Engine._resume`` loads it (``core.export_resume``)."""
        data = self.blobs[r.blob]
        has_scheduler = self.spec.scheduler is not None
        name = export_resume.file_name(self.script_name)
        what = "the checkpoint's data: " + ", ".join(export_resume.what_it_holds(r, data, has_scheduler))
        self._store(r.blob, beside=(name, what))
        self.emit(*export_resume.lines(r, data, r.blob, name, scheduler=has_scheduler, switch=self.switch,
                                       shuffle=self.task.shuffle))

    def _make_tensors(self, tensors, first: int) -> None:
        for k, t in enumerate(tensors):
            seed = t.seed if t.seed is not None else tensor_seed(self.spec.seed, first + k)
            self.names[t.name], self.dtypes[t.name], self.shapes[t.name] = self._name(t.name), t.dtype, t.shape
            self.emit(f"{self.ref(t.name)} = {tensor_expr(t, seed, self.device)}")

    def _grad(self, name: str, g: ManualGrad) -> str:
        return grad_expr(g, self.shapes[name], self.dtypes[name], self.device)

    def _optimizer_class(self) -> str:
        """How the script names the class: torch.optim's, a collection's (imported in the prelude),
        or one loaded from the user's file."""
        n = self.origin
        if n.kind == "torch":
            return f"torch.optim.{n.cls}"
        if n.kind == "collection":
            return f"{n.module}.{n.cls}"
        self.emit(f"module_spec = importlib.util.spec_from_file_location('optimizer_module', "
                  f"str(beside({n.path!r})))",
                  "optimizer_module = importlib.util.module_from_spec(module_spec)",
                  "module_spec.loader.exec_module(optimizer_module)  # your optimizer file")
        return f"optimizer_module.{n.cls}"

    def _optimizer(self, groups) -> None:
        kwargs = "".join(f", {k}={v!r}" for k, v in self.spec.hparams.items())
        refs = [[self.ref(n) for n in g.tensors] for g in groups]
        cls = self._optimizer_class()
        if len(groups) == 1 and not groups[0].hparams:
            self.emit(f"optimizer = {cls}([{', '.join(refs[0])}]{kwargs})")
            return
        self.emit(f"optimizer = {cls}([")
        for g, r in zip(groups, refs):
            extra = "".join(f", {k!r}: {v!r}" for k, v in g.hparams.items())
            self.emit(f'    {{"params": [{", ".join(r)}]{extra}}},')
        self.emit(f"]{kwargs})")

    def _loss_call(self, batch: str = "x, y") -> str:
        g = self.spec.gradient
        if self.task is not None:
            x, y = batch.split(", ")
            return f"loss_fn(model({x}), {y})"
        names = g.tensors or tuple(t.name for t in self.spec.tensors)
        return f"{g.objective}([{', '.join(self.ref(n) for n in names)}], {g.condition!r})"

    def _closure(self) -> None:
        spec = self.spec
        self.emit("", "", "def closure():", '    """What L-BFGS evaluates, as often as it needs (optimlab\'s closure)."""')
        if spec.gradient.kind in ("objective", "task"):
            self.emit(f"    optimizer.zero_grad(set_to_none={spec.set_to_none})",
                      f"    loss = {self._loss_call('batch[0], batch[1]')}", f"    {self.backward}", "    return loss")
        else:
            if spec.gradient.when == "every_step":
                self.emit(*(f"    {self.ref(n)}.grad = {self._grad(n, g)}" for n, g in self.manual))
            self.emit("    return torch.zeros((), dtype=torch.float64)")

    def _plain_step(self) -> bool:
        s = self.spec
        return (s.gradient.kind == "manual" and s.gradient.when == "once" and not s.zero_grad_each_step
                and s.scheduler is None and not self.lbfgs and not self.switch)

    def _step_function(self) -> None:
        """``def step()``: one step in the engine's order (README, "The step")."""
        s, task = self.spec, self.task
        body, glob = [], []
        if self.switch:
            body.append("optimizer.train()  # schedule-free: train mode for the gradient and the step")
        if self.lbfgs:
            if task is not None:
                body.append("batch = next_batch()  # the closure evaluates the loss on this batch")
                glob.append("batch")
            body.append("loss = optimizer.step(closure)")
        else:
            if s.zero_grad_each_step:
                body.append(f"optimizer.zero_grad(set_to_none={s.set_to_none})")
            if s.gradient.kind == "manual" and s.gradient.when == "every_step":
                body += [f"{self.ref(n)}.grad = {self._grad(n, g)}" for n, g in self.manual]
            elif s.gradient.kind == "objective":
                body += [f"loss = {self._loss_call()}", self.backward]
            elif task is not None:
                body += ["x, y = next_batch()", f"loss = {self._loss_call()}", self.backward]
            body.append("optimizer.step()")
        if task is not None:
            glob += ["step_count", "val_loss"]
            body += ["step_count += 1", f"evaluated = step_count % {task.eval_every} == 0",
                     "if evaluated:"]
            body += (["    optimizer.eval()  # schedule-free: evaluated at the averaged weights",
                      "    val_loss = evaluate()", "    optimizer.train()"] if self.switch else
                     ["    val_loss = evaluate()"])
        body += self._scheduler_step()
        doc = '"""One step: ' + ("optimizer.step(closure), " if self.lbfgs else "zero_grad, the gradient, "
                                 "optimizer.step(), ") + ("evaluation, " if task else "") + \
            ("the scheduler" if s.scheduler else "") + '."""'
        doc = doc.replace(", .", ".")
        self.emit("", "", "def step():", f"    {doc}")
        if glob:
            self.emit(f"    global {', '.join(glob)}")
        self.emit(*(f"    {b}" for b in body))
        self.emit("", "")
        self.step_defined = list(self.manual)

    def _scheduler_step(self) -> list[str]:
        sc = self.spec.scheduler
        if sc is None:
            return []
        if schedulers.needs_metric(sc.name):
            if self.task is not None:
                return ["if evaluated:", "    scheduler.step(val_loss)"]
            if self.spec.gradient.kind == "objective":
                return ["scheduler.step(float(loss.detach()))  # no task: the training loss"]
            return ["# ReduceLROnPlateau has no loss to step with (manual gradients): never stepped"]
        if sc.every == "step":
            return ["scheduler.step()"]
        if self.task is not None:
            return ["if batch_in_epoch == 0:  # the end of an epoch", "    scheduler.step()"]
        return ["scheduler.step()  # without a task every step is an epoch"]

    # ----- the journal -----

    def action(self, a) -> None:
        if isinstance(a, Step):
            if self._plain_step():
                call = "optimizer.step()"
            else:
                if self.step_defined != self.manual:  # tensors added since with gradients of their own
                    self._step_function()
                call = "step()"
            self.emit(call if a.n == 1 else f"for _ in range({a.n}):\n    {call}")
        elif isinstance(a, ZeroGrad):
            s = self.spec.set_to_none if a.set_to_none is None else a.set_to_none
            self.emit(f"optimizer.zero_grad(set_to_none={s})")
        elif isinstance(a, SetGrad):
            self.emit(f"{self.ref(a.tensor)}.grad = " + ("None" if a.grad is None else self._grad(a.tensor, a.grad)))
        elif isinstance(a, AddGroup):
            self._add_group(a)
        elif isinstance(a, SetHparam):
            self.emit(f"optimizer.param_groups[{a.group}][{a.name!r}] = {a.value!r}")
        elif isinstance(a, LoadOptimizer):
            self.emit(f"optimizer.load_state_dict(stored({self._store(a.blob)!r}))  # {a.path or 'a stored state_dict'}")
        elif isinstance(a, LoadParams):
            self.emit(f"with torch.no_grad():  # load parameters ({a.path or 'stored'})",
                      f"    for name, value in stored({self._store(a.blob)!r}).items():",
                      "        params[name].copy_(value)")
        elif isinstance(a, EditTensor):
            self._edit(a)
        elif isinstance(a, SetDevice):
            self._move(a.device)
        else:
            raise SpecError(f"Cannot export the action {type(a).__name__}")

    def _add_group(self, a: AddGroup) -> None:
        self._make_tensors(a.tensors, self.count)
        self.emit(*(f"params[{t.name!r}] = {self.ref(t.name)}" for t in a.tensors))
        self.count += len(a.tensors)
        extra = "".join(f", {k!r}: {v!r}" for k, v in a.hparams.items())
        self.emit(f'optimizer.add_param_group({{"params": [{", ".join(self.ref(t.name) for t in a.tensors)}]{extra}}})')
        new = [(t.name, t.grad) for t in a.tensors if t.grad is not None]
        self.manual += new
        if self.spec.gradient.kind == "manual" and self.spec.gradient.when == "once":
            for name, g in new:
                self.emit(f"{self.ref(name)}.grad = {self._grad(name, g)}")

    def _edit(self, a: EditTensor) -> None:
        ref = self.ref(a.tensor)
        target = {"value": ref, "grad": f"{ref}.grad"}.get(a.which, f"optimizer.state[{ref}][{a.which!r}]")
        where = f".fill_({a.value!r})" if not a.index else f"[{', '.join(map(str, a.index))}] = {a.value!r}"
        self.emit("with torch.no_grad():  # an edit while paused", f"    {target}{where}")

    def _move(self, device: str) -> None:
        if device == self.device:
            self.emit(f"# moved to {device}: already there")
            return
        self.emit(f"# ----- move to {device}: tensors, gradients and the optimizer's state -----",
                  "sd = optimizer.state_dict()", "for p in params.values():", f"    p.data = p.data.to({device!r})",
                  "    if p.grad is not None:", f"        p.grad = p.grad.to({device!r})", "optimizer.load_state_dict(sd)")
        if self.task is not None:
            self.emit(f"model.to({device!r})",
                      f"train_x, train_y, val_x, val_y = (t.to({device!r}) for t in (train_x, train_y, val_x, val_y))")
        self.device = device

    def _store(self, key: str, beside: tuple[str, str] | None = None) -> str:
        """A stored blob for ``stored(key)``: inline base64 when small, else a file beside the script
        (always, named and described by ``beside``: the checkpoint's data of a resumed branch)."""
        if key not in self.stored:
            data = files.to_bytes(self.blobs[key])
            if beside is None and len(data) <= self.inline_limit:
                self.stored[key] = base64.b64encode(data).decode()
            else:
                name, what = beside or (f"{Path(self.script_name).stem}.{key}.pt", "a stored state_dict")
                self.files[name], self.beside[name] = data, what
                self.stored[key] = "file:" + name
        return key

    def _needs(self) -> list[str]:
        """The header's list of the files the script reads besides itself."""
        beside = list(self.beside.items())
        if not self.reads and not beside:
            return []
        out = ["# Needs these files, beside this script (or where they were at export):"]
        out += [f"#   {Path(path).name}  ({what}; at export: {path!r})" for path, what in self.reads]
        return out + [f"#   {name}  ({what})" for name, what in beside] + [""]

    # ----- the check -----

    def check(self, expected: dict[str, str]) -> None:
        self.emit("", "", "# ----- the check: the result against what optimlab recorded at export -----", "")
        self.emit(*export_task.source(export_check.digest, export_check.fingerprints))
        self.emit("EXPECTED = {", *(f"    {k!r}: {v!r}," for k, v in expected.items()), "}", "")
        self.emit("if len(sys.argv) > 1:  # python script.py [PARAMS.pt [OPTIMIZER.pt]] saves them as optimlab does",
                  "    torch.save({n: p.detach().clone() for n, p in params.items()}, sys.argv[1])",
                  "if len(sys.argv) > 2:", "    torch.save(optimizer.state_dict(), sys.argv[2])")
        if self.task is not None:
            self.emit("if val_loss is not None:", '    print(f"validation loss at step {step_count}: {val_loss:.6g}")')
        self.emit("found = fingerprints(params, optimizer)",
                  "differ = sorted(k for k in EXPECTED.keys() | found.keys() if EXPECTED.get(k) != found.get(k))",
                  "if differ:", '    print("differs from the session: " + ", ".join(differ))', "    sys.exit(1)",
                  'print("reproduced")')

    def prelude(self, title: str) -> list[str]:
        task = self.task
        std = {"import hashlib", "import sys"}
        if self.stored:
            std |= {"import base64", "import io", "from pathlib import Path"}
        if self.reads:
            std.add("from pathlib import Path")
        if task is not None or self.spec.gradient.kind == "objective":
            std.add("import math")
        if task is not None:
            std.add("from collections import OrderedDict")
        if task is not None and task.kind == "script":
            std.add("import runpy")
        third = ["import torch"]
        if self.origin.kind == "collection":
            third.append(f"import {self.origin.module}")
        elif self.origin.kind == "file":
            std.add("import importlib.util")
        if task is not None:
            third += ["import torch.nn.functional as F", "from torch import nn"]
        if self.origin.kind != "torch" or (task is not None and task.kind in ("digits_mlp", "digits_cnn")):
            third.insert(0, "import numpy as np")
        std = sorted(i for i in std if i.startswith("import ")) + sorted(i for i in std if i.startswith("from "))
        out = [f'"""{title}', "",
               "A plain PyTorch script (optimlab not needed) that does what the session did, in order,",
               "then checks its result against SHA-256 digests optimlab recorded at export.",
               f"Run: python {self.script_name} [PARAMS.pt [OPTIMIZER.pt]]  (optionally saves both, as optimlab does)",
               '"""', *self._needs(), *std, "", *third, "", ""]
        if self.reads:
            out += ["def beside(recorded):",
                    '    """A file this script reads: its copy beside the script if there is one (the folder was',
                    '    moved or sent), else where it was at export."""',
                    '    if "__file__" not in globals():  # run from stdin: only the recorded path',
                    "        return Path(recorded)",
                    "    here = Path(__file__).resolve().with_name(Path(recorded).name)",
                    "    return here if here.is_file() else Path(recorded)", "", ""]
        if self.stored:
            out += ["# state_dicts the session loaded: base64 of their torch.save bytes, or files beside this script",
                    "STORED = {"]
            out += [f"    {k!r}: {v!r}," for k, v in self.stored.items()]
            out += ["}", "", "",
                    "def stored(key):", '    """A stored state_dict, read as optimlab reads files: weights_only=True."""',
                    "    data = STORED[key]",
                    '    source = Path(__file__).with_name(data[5:]) if data.startswith("file:") else '
                    "io.BytesIO(base64.b64decode(data))",
                    '    return torch.load(source, weights_only=True, map_location="cpu")', "", ""]
        return out


# ----- exporting -----

def _draws_gradients(spec, entries) -> bool:
    """Whether anything draws random gradients from the session's generator (the script then makes it)."""
    grads = [t.grad for t in spec.tensors] + [t.grad for a in entries if isinstance(a, AddGroup) for t in a.tensors]
    grads += [a.grad for a in entries if isinstance(a, SetGrad)]
    return any(g is not None and g.fill == "normal" for g in grads)


def _position(session, branch: int | None) -> tuple[int, int, int]:
    session.flush()
    if branch is None:
        return session.position()
    tl = session.timeline
    if branch not in tl.branches:
        raise SpecError(f"There is no branch {branch}; {branch_list(tl.branches)}")
    b = tl.branches[branch]
    return branch, b.end_step, len(b.journal.entries)


def export_script(session, branch: int | None = None, script_name: str = "exported.py", title: str = "",
                  inline_limit: int = INLINE_LIMIT) -> ExportedScript:
    """The script reproducing ``branch`` (default: the current one, up to where the session stands;
    another branch: up to its head). The session does not move."""
    bid, step, index = _position(session, branch)
    tl = session.timeline
    b = tl.branches[bid]
    entries = [a for _, a in b.journal.prefix(step, index)]
    resets = [i for i, a in enumerate(entries) if isinstance(a, Reset)]
    entries = entries[resets[-1] + 1:] if resets else entries  # a reset starts again from the spec
    with generators_kept():  # replaying restores generator states: keep the caller's
        if (bid, step, index) == session.position():
            final = session.engine
        else:
            final = engine_at(tl, bid, step, index)
        expected = export_check.fingerprints(final.params, final.optimizer)
        # the engine as the script first builds it: a resumed branch's checkpoint is loaded after
        # the optimizer and scheduler are made from the spec (``_Writer._resume``)
        initial = Engine(replace(b.spec, resume=None), tl.blobs)
        w = _Writer(b.spec, tl.blobs, initial, script_name, inline_limit)
    w.grad_gen = _draws_gradients(b.spec, entries)
    w.build(b.threads)
    for a in entries:
        w.action(a)
    w.check(expected)
    name = b.spec.name or "an optimlab session"
    title = title or f"{name}: branch {bid} at step {step:,}, exported by optimlab."
    text = "\n".join(w.prelude(title) + w.lines) + "\n"
    return ExportedScript(re.sub(r"\n{4,}", "\n\n\n", text), w.files)


def write_script(session, path, branch: int | None = None) -> list[Path]:
    """Write the script (and any file it reads beside itself) atomically; returns the paths written."""
    path = Path(path)
    paths.save_target(path)
    out = export_script(session, branch, path.name)
    written = []
    for name, data in out.files.items():
        target = path.with_name(name)
        paths.atomic_write(target, lambda f, d=data: f.write(d))
        written.append(target)
    paths.atomic_write(path, lambda f: f.write(out.text.encode()))
    return [path] + written


def command(args) -> int:
    """``optimlab export``: print the script (refused if it needs files beside it), or write it
    and its files with -o."""
    from .cli_open import open_session
    from .compare_file import EXT
    if str(args.session).endswith(EXT):  # one configuration of a saved comparison
        return _export_run(args)
    if getattr(args, "run", None) is not None:
        raise SpecError("--run picks a configuration of a saved comparison (.optimlab-compare)")
    session = open_session(args.session, args.trust_script)
    if args.output:
        written = write_script(session, args.output, args.branch)
        print("wrote " + ", ".join(str(p) for p in written))
    else:
        out = export_script(session, args.branch)
        if out.files:  # printed alone, the script would look for them in vain
            raise SpecError(f"The script reads {', '.join(out.files)} beside itself: write both with -o SCRIPT.py")
        print(out.text, end="")
    return 0


def _export_run(args) -> int:
    """``optimlab export COMPARISON --run N``: configuration N (as the comparison lists them,
    from 0) as a plain script."""
    from . import compare_file, trust
    trust.trust_all(args.trust_script)
    c = compare_file.load(args.session)
    listed = ", ".join(f"{i}: {r.label}" for i, r in enumerate(c.runs))
    if args.run is None or not 0 <= args.run < len(c.runs):
        asked = "give one with --run N" if args.run is None else f"it has no run {args.run}"
        raise SpecError(f"{Path(args.session).name} holds {len(c.runs)} configurations ({listed}): {asked}")
    if args.branch is not None:
        raise SpecError("--branch is for a session; a comparison's configuration is one run (--run)")
    run = c.runs[args.run]
    with run.own_rng():
        if args.output:
            written = write_script(run.session, args.output)
            print("wrote " + ", ".join(str(p) for p in written))
            return 0
        out = export_script(run.session)
    if out.files:
        raise SpecError(f"The script reads {', '.join(out.files)} beside itself: write both with -o SCRIPT.py")
    print(out.text, end="")
    return 0
