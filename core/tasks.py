"""Training tasks: a model, its data, a loss and metrics, built from a ``TaskSpec``.

Everything random is seeded from ``spec.seed`` through four derived seeds
(``task_seeds``), so a task is reproduced bit for bit by a plain PyTorch script
that follows these rules (tests/core/test_tasks.py does exactly this):

1. **Data.** ``train_x, train_y, val_x, val_y = make_task_data(spec)``: the
   ``core.datasets`` generator with ``seed=seeds.data``, then
   ``train_val_split(x, y, spec.val_fraction, seed=seeds.split)``.
2. **Init.** The model is PyTorch's default init drawn from the CPU RNG seeded
   with ``seeds.init``: a plain script writes ``torch.manual_seed(seeds.init);
   model = <architecture>``. optimlab builds it under ``torch.random.fork_rng``
   (``seeded_build``), so the global RNG is left as it was. The architectures
   (``build_model``), layers created in this order:
     linear_regression   ``linear = Linear(n_features, 1)``
     logistic_regression ``linear = Linear(2, 1)``
     mlp / digits_mlp    ``fc1 = Linear(in, h1), act1, fc2, act2, ..., out = Linear(h_last, k)``
     digits_cnn          ``conv1 = Conv2d(1, c1, 3, padding=1), act1, pool1 = MaxPool2d(2), ...,
                         flatten, out = Linear(c_last * s * s, 10)``
   as ``nn.Sequential(OrderedDict(...))`` (so parameters are named ``fc1.weight``...),
   with ``in`` = 2 (mlp) or 64 (digits) and ``k`` = 1 (two classes) or 10 (digits).
3. **Data order.** ``g = torch.Generator().manual_seed(seeds.order)``; at the start
   of every epoch ``order = torch.randperm(n_train, generator=g)`` if ``shuffle``
   else ``torch.arange(n_train)``; batch ``i`` is ``train_x[order[i*bs:(i+1)*bs]]``
   (the last batch of an epoch may be smaller; nothing is dropped). A session resumed from a
   checkpoint at step N stands where this rule leaves a script after N batches (``Task.seek``).
4. **Loss.** Regression: ``F.mse_loss(model(x), y)``. Two-class sets (one logit):
   ``F.binary_cross_entropy_with_logits(model(x).squeeze(1), y.to(float32))``.
   Digits: ``F.cross_entropy(model(x), y)``. A script: its own ``loss_fn``.
5. **Step.** ``optimizer.zero_grad(); loss.backward(); optimizer.step()``.

User scripts (trusted code: run only once the user agreed to that file, see ``core.trust``)
define, at module level::

    def make_model() -> torch.nn.Module          # built under seeded_build(seeds.init)
    def make_data() -> (train_x, train_y, val_x, val_y)   # tensors, first dim = samples;
                                                  # called under seeded_build(seeds.data)
    def loss_fn(output, target) -> scalar tensor  # output = model(x_batch)
    def accuracy_fn(output, target) -> float      # optional: adds val_accuracy

Random draws inside them must come from torch's global RNG (seeded as above) or a
generator the script seeds itself. A model whose forward draws random numbers
(dropout) draws from the global RNG while training, which optimlab does not seed.
"""
from __future__ import annotations

import builtins
import math
import traceback
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import datasets, trust
from .spec import GroupSpec
from .task_spec import TaskSpec

__all__ = ["TaskSpec", "Task", "TaskError", "TaskSeeds", "DecisionGrid", "task_seeds", "seeded_build",
           "build_model", "make_task_data", "load_script_task"]

_OFFSETS = {"data": 1, "split": 2, "init": 3, "order": 4}
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
SCRIPT_FUNCTIONS = ("make_model", "make_data", "loss_fn")


class TaskError(ValueError):
    """A task that cannot be built or run; ``traceback_text`` holds the user's traceback, if any."""

    def __init__(self, message: str, traceback_text: str = ""):
        super().__init__(message)
        self.traceback_text = traceback_text


class TaskSeeds(NamedTuple):
    data: int
    split: int
    init: int
    order: int


def task_seeds(seed: int) -> TaskSeeds:
    """The four seeds of a task: ``(seed * 1_000_003 + k) % 2**63`` for k = 1 (data) .. 4 (order)."""
    return TaskSeeds(*((seed * 1_000_003 + _OFFSETS[k]) % (2 ** 63) for k in TaskSeeds._fields))


def seeded_build(fn, seed: int):
    """``fn()`` with the CPU RNG seeded with ``seed``; the global RNG state is restored after.

    Equal to ``torch.manual_seed(seed); fn()`` in a plain script (on CPU). Not
    thread-safe against another thread drawing from the global RNG meanwhile.
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return fn()


@dataclass(frozen=True)
class DecisionGrid:
    """What a 2-D classifier predicts over the plane, with the data, for drawing.

    ``probs[i, j]`` is the probability of class 1 at ``(xs[j], ys[i])`` (row-major, rows = y).
    """

    xs: np.ndarray
    ys: np.ndarray
    probs: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    val_points: np.ndarray
    val_labels: np.ndarray


# ----- building blocks a plain script can call too -----

def build_model(spec: TaskSpec) -> nn.Module:
    """The architecture of a built-in task (initialised from the current global RNG)."""
    kind, act = spec.kind, _ACTIVATIONS[spec.activation]
    if kind == "linear_regression":
        return nn.Sequential(OrderedDict(linear=nn.Linear(spec.n_features, 1)))
    if kind == "logistic_regression":
        return nn.Sequential(OrderedDict(linear=nn.Linear(2, 1)))
    hidden = spec.effective_hidden()
    layers: list[tuple[str, nn.Module]] = []
    if kind == "digits_cnn":
        channels, size = 1, 8
        for i, c in enumerate(hidden, 1):
            layers += [(f"conv{i}", nn.Conv2d(channels, c, 3, padding=1)), (f"act{i}", act()),
                       (f"pool{i}", nn.MaxPool2d(2))]
            channels, size = c, size // 2
        layers += [("flatten", nn.Flatten()), ("out", nn.Linear(channels * size * size, 10))]
        return nn.Sequential(OrderedDict(layers))
    width, k = (2, 1) if kind == "mlp" else (64, 10)
    for i, h in enumerate(hidden, 1):
        layers += [(f"fc{i}", nn.Linear(width, h)), (f"act{i}", act())]
        width = h
    layers.append(("out", nn.Linear(width, k)))
    return nn.Sequential(OrderedDict(layers))


def make_task_data(spec: TaskSpec):
    """(train_x, train_y, val_x, val_y) of a built-in task, seeded from ``spec.seed``."""
    s = task_seeds(spec.seed)
    if spec.kind == "linear_regression":
        x, y, _, _ = datasets.make_linear_regression(spec.n_samples, spec.n_features, spec.noise, s.data)
    elif spec.two_d:
        x, y = datasets.make_classification(spec.dataset, spec.n_samples, spec.noise, s.data)
    elif spec.kind in ("digits_mlp", "digits_cnn"):
        x, y = datasets.load_digits(flat=spec.kind == "digits_mlp")
    else:
        raise ValueError(f"A {spec.kind} task has no built-in data")
    return datasets.train_val_split(x, y, spec.val_fraction, s.split)


def _user_error(what: str, e: BaseException) -> TaskError:
    first = (str(e).strip().splitlines() or [""])[0]
    return TaskError(f"{what}: {type(e).__name__}: {first}".rstrip(": "), traceback.format_exc())


@contextmanager
def _user_code(what: str):
    """Run a script's code; any exception becomes one TaskError with its traceback."""
    try:
        yield
    except TaskError:
        raise
    except (Exception, SystemExit) as e:  # trusted but fallible code: report, keep running
        raise _user_error(what, e) from e


# ----- the task -----

class Task:
    """A model, its train/val data and a seeded data order, built from a TaskSpec."""

    def __init__(self, spec: TaskSpec, device: str = "cpu"):
        spec.check()
        self.spec = spec
        self.seeds = task_seeds(spec.seed)
        self.accuracy_fn = None
        self.loss_fn = None
        if spec.kind == "script":
            self.model, data = self._load_script(Path(spec.script))
        else:
            self.model = seeded_build(lambda: build_model(spec), self.seeds.init)
            data = make_task_data(spec)
        self.train_x, self.train_y, self.val_x, self.val_y = data
        self.device = "cpu"
        self.order_generator = torch.Generator().manual_seed(self.seeds.order)
        self.epoch = 0  # epochs completed
        self.batch_in_epoch = 0  # batches handed out in the current epoch
        self._order: torch.Tensor | None = None
        self._order_here: torch.Tensor | None = None  # _order on the data's device
        self._bounds = self._plane_bounds() if spec.two_d else None
        if device != "cpu":
            self.to(device)

    # ----- the model's parameters and groups -----

    def named_parameters(self) -> list[tuple[str, torch.Tensor]]:
        return list(self.model.named_parameters())

    def default_groups(self) -> tuple[GroupSpec, ...]:
        """One param_group per layer (module prefix), in parameter order."""
        groups: dict[str, list[str]] = {}
        for name, _ in self.model.named_parameters():
            groups.setdefault(name.rpartition(".")[0], []).append(name)
        return tuple(GroupSpec(tuple(names)) for names in groups.values())

    def decay_groups(self, weight_decay: float | None = None) -> tuple[GroupSpec, ...]:
        """Weights (ndim >= 2) decay; biases and norm parameters (ndim < 2) get weight_decay 0.

        ``weight_decay`` given: set on the first group too (else it keeps the optimizer's default).
        """
        params = self.named_parameters()
        decay = tuple(n for n, p in params if p.ndim >= 2)
        rest = tuple(n for n, p in params if p.ndim < 2)
        out = []
        if decay:
            out.append(GroupSpec(decay, {} if weight_decay is None else {"weight_decay": weight_decay}))
        if rest:
            out.append(GroupSpec(rest, {"weight_decay": 0.0}))
        return tuple(out)

    # ----- data order -----

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.spec.batch_size)

    @property
    def batches_served(self) -> int:
        return self.epoch * self.steps_per_epoch + self.batch_in_epoch

    @property
    def at_epoch_end(self) -> bool:
        """True right after the last batch of an epoch was handed out (step a per-epoch scheduler)."""
        return self.batch_in_epoch == 0 and self.epoch > 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y) in the seeded order (rule 3 of the module docstring)."""
        if self.batch_in_epoch == 0:
            self._order = (torch.randperm(self.n_train, generator=self.order_generator)
                           if self.spec.shuffle else torch.arange(self.n_train))
            self._order_here = None
        if self._order_here is None:  # one copy to the data's device per epoch, none per step
            self._order_here = self._order.to(self.train_x.device)
        bs = self.spec.batch_size
        idx = self._order_here[self.batch_in_epoch * bs:(self.batch_in_epoch + 1) * bs]
        self.batch_in_epoch += 1
        if self.batch_in_epoch == self.steps_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0
        return self.train_x[idx], self.train_y[idx]

    # ----- loss and metrics -----

    def _loss_of(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        kind = self.spec.kind
        if kind == "script":
            with _user_code("loss_fn failed"):
                loss = self.loss_fn(out, y)
            return loss
        if kind == "linear_regression":
            return F.mse_loss(out, y)
        if self.spec.two_d:
            return F.binary_cross_entropy_with_logits(out.squeeze(1), y.to(out.dtype))
        return F.cross_entropy(out, y)

    def _accuracy(self, out: torch.Tensor, y: torch.Tensor) -> float | None:
        if self.spec.kind == "script":
            if self.accuracy_fn is None:
                return None
            with _user_code("accuracy_fn failed"):
                return float(self.accuracy_fn(out, y))
        if not self.spec.classification:
            return None
        pred = (out.squeeze(1) > 0).to(y.dtype) if out.shape[1] == 1 else out.argmax(1)
        return float((pred == y).to(torch.float32).mean())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.kind == "script":
            with _user_code("The model's forward failed"):
                return self.model(x)
        return self.model(x)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The scalar training loss of one batch (rule 4), with its graph for backward()."""
        x, y = batch
        return self._loss_of(self._forward(x), y)

    @contextmanager
    def _inference(self):
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.model.train(was)

    def evaluate(self) -> dict[str, float]:
        """``val_loss`` (and ``val_accuracy`` for classification) under no_grad and eval()."""
        with self._inference():
            out = self._forward(self.val_x)
            result = {"val_loss": float(self._loss_of(out, self.val_y))}
            acc = self._accuracy(out, self.val_y)
        if acc is not None:
            result["val_accuracy"] = acc
        return result

    @property
    def has_decision_grid(self) -> bool:
        return self.spec.two_d

    def _plane_bounds(self) -> tuple[float, float, float, float]:
        pts = torch.cat([self.train_x, self.val_x]).double()
        lo, hi = pts.min(0).values, pts.max(0).values
        pad = torch.clamp((hi - lo) * 0.1, min=0.25)
        lo, hi = (lo - pad).tolist(), (hi + pad).tolist()
        return lo[0], hi[0], lo[1], hi[1]

    def decision_grid(self, size: int = 80) -> DecisionGrid:
        """P(class 1) over a size x size grid covering the data, under no_grad and eval()."""
        if not self.has_decision_grid:
            raise ValueError(f"A {self.spec.kind} task has no 2-D decision boundary to draw")
        x0, x1, y0, y1 = self._bounds
        xs, ys = np.linspace(x0, x1, size), np.linspace(y0, y1, size)
        gx, gy = np.meshgrid(xs, ys)
        pts = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32))
        with self._inference():
            out = self._forward(pts.to(self.train_x.device))
            probs = torch.sigmoid(out[:, 0]) if out.shape[1] == 1 else out.argmax(1).to(torch.float32)
            probs = probs.reshape(size, size).cpu().numpy().astype(np.float32)

        def npy(t):
            return t.detach().cpu().numpy().copy()
        return DecisionGrid(xs, ys, probs, npy(self.train_x), npy(self.train_y), npy(self.val_x), npy(self.val_y))

    # ----- saving and devices -----

    def state(self) -> dict:
        """Data order position and model buffers: tensors and ints only (weights_only-safe)."""
        # between epochs the order is drawn afresh at the next batch: none is kept then
        order = self._order if self._order is not None and self.batch_in_epoch > 0 \
            else torch.empty(0, dtype=torch.int64)
        return {"order_generator": self.order_generator.get_state(), "epoch": int(self.epoch),
                "batch_in_epoch": int(self.batch_in_epoch), "order": order.clone(),
                "buffers": {n: b.detach().cpu().clone() for n, b in self.model.named_buffers()}}

    def load_state(self, d: dict) -> None:
        """Restore ``state()``; checks everything first, so a refused state changes nothing."""
        if not isinstance(d, dict) or not {"order_generator", "epoch", "batch_in_epoch", "order"} <= set(d):
            raise ValueError("This is not a task state: it needs order_generator, epoch, batch_in_epoch and order")
        epoch, pos, order = d["epoch"], d["batch_in_epoch"], d["order"]
        if not (isinstance(epoch, int) and isinstance(pos, int) and epoch >= 0 and 0 <= pos < self.steps_per_epoch):
            raise ValueError(f"Invalid data position: epoch {epoch!r}, batch {pos!r} of {self.steps_per_epoch}")
        if pos > 0 and (not isinstance(order, torch.Tensor) or tuple(order.shape) != (self.n_train,)):
            raise ValueError(f"The saved data order does not fit this task's {self.n_train} training samples")
        buffers = d.get("buffers", {})
        mine = dict(self.model.named_buffers())
        if set(buffers) != set(mine) or any(tuple(buffers[n].shape) != tuple(b.shape) for n, b in mine.items()):
            raise ValueError("The saved model buffers do not match this task's model")
        gen = torch.Generator()
        try:
            gen.set_state(d["order_generator"])
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"Invalid data-order generator state: {e}") from None
        self.order_generator = gen
        self.epoch, self.batch_in_epoch = epoch, pos
        self._order = order.clone() if pos > 0 else None
        self._order_here = None
        with torch.no_grad():
            for n, b in mine.items():
                b.copy_(buffers[n])

    def seek(self, batches: int) -> None:
        """Stand where a plain script following rule 3 stands after ``batches`` batches (how a
        session resumed from a checkpoint at that step goes on with the same data): the order
        generator has drawn one permutation per epoch begun, the current epoch's order is kept."""
        if isinstance(batches, bool) or not isinstance(batches, int) or batches < 0:
            raise ValueError(f"Invalid data position: {batches!r} batches")
        epoch, pos = divmod(batches, self.steps_per_epoch)
        gen = torch.Generator().manual_seed(self.seeds.order)
        order = None
        if self.spec.shuffle:
            for _ in range(epoch + (pos > 0)):  # the generator's state after that many draws
                order = torch.randperm(self.n_train, generator=gen)
        elif pos > 0:
            order = torch.arange(self.n_train)
        self.order_generator = gen
        self.epoch, self.batch_in_epoch = epoch, pos
        self._order = order if pos > 0 else None
        self._order_here = None

    def to(self, device: str) -> None:
        """Move model and data; parameters stay the same Parameter objects (module._apply)."""
        self.model.to(device)
        self.train_x, self.train_y, self.val_x, self.val_y = (
            t.to(device) for t in (self.train_x, self.train_y, self.val_x, self.val_y))
        self._order_here = None
        self.device = device

    # ----- user scripts -----

    def _load_script(self, path: Path):
        if not path.exists():
            raise TaskError(f"The task script {path} does not exist")
        source = trust.checked_source(str(path))  # refuses, running nothing, unless the user agreed
        ns = {"__name__": "optimlab_task", "__file__": str(path), "__builtins__": builtins}
        with _user_code(f"The script {path.name} failed"):
            exec(compile(source, str(path), "exec"), ns)  # the very bytes that were hashed
        missing = [f for f in SCRIPT_FUNCTIONS if not callable(ns.get(f))]
        if missing:
            raise TaskError(f"The script {path.name} does not define {missing[0]}(): a task script "
                            "defines make_model(), make_data() and loss_fn(output, target)")
        self.loss_fn = ns["loss_fn"]
        self.accuracy_fn = ns.get("accuracy_fn") if callable(ns.get("accuracy_fn")) else None
        with _user_code("make_data() failed"):
            data = seeded_build(ns["make_data"], self.seeds.data)
        data = _check_data(data)
        with _user_code("make_model() failed"):
            model = seeded_build(ns["make_model"], self.seeds.init)
        if not isinstance(model, nn.Module) or not any(p.requires_grad for p in model.parameters()):
            raise TaskError("make_model() must return a torch.nn.Module with trainable parameters")
        self.model = model
        self._dry_run(data[0][:self.spec.batch_size], data[1][:self.spec.batch_size])
        return model, data

    def _dry_run(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One forward and loss on the first batch, in eval mode, so nothing in the model changes."""
        was = self.model.training
        self.model.eval()
        try:
            with _user_code("The model does not fit the data"):
                out = self.model(x)
            loss = self._loss_of(out, y)
        finally:
            self.model.train(was)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = list(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise TaskError(f"loss_fn must return a scalar tensor (one number), not {shape}")
        if not loss.is_floating_point() or not loss.requires_grad:
            raise TaskError("loss_fn's result has no gradient: it must be a float tensor computed from the model's output")


def _check_data(data):
    if not isinstance(data, (tuple, list)) or len(data) != 4:
        raise TaskError("make_data() must return four tensors: train_x, train_y, val_x, val_y")
    names = ("train_x", "train_y", "val_x", "val_y")
    for n, t in zip(names, data):
        if not isinstance(t, torch.Tensor):
            raise TaskError(f"make_data() returned {type(t).__name__} for {n}; it must be a torch.Tensor")
        if t.ndim == 0 or t.shape[0] == 0:
            raise TaskError(f"make_data()'s {n} is empty: the first dimension counts the samples")
    for a, b in ((0, 1), (2, 3)):
        if data[a].shape[0] != data[b].shape[0]:
            raise TaskError(f"make_data()'s {names[a]} has {data[a].shape[0]} samples but "
                            f"{names[b]} has {data[b].shape[0]}")
    return tuple(t.detach().contiguous() for t in data)


def load_script_task(path: str | Path, device: str = "cpu", **fields) -> Task:
    """A Task from a trusted user script (interface in the module docstring).

    ``fields`` are other TaskSpec fields (batch_size, shuffle, eval_every, seed).
    Errors raise TaskError carrying the user's traceback text.
    """
    return Task(TaskSpec(kind="script", script=str(path), **fields), device=device)
