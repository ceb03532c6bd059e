"""The engine: live tensors and the optimizer built from a spec, driven one action at a time.

The per-step order is fixed and documented (README, "The step"):
  1. ``zero_grad(set_to_none)`` if the spec says "zero_grad before every step";
  2. the gradient: manual gradients marked ``every_step`` are assigned, or the
     objective's (or task's) ``loss.backward()`` accumulates into ``.grad``;
  3. ``optimizer.step()`` (LBFGS: ``optimizer.step(closure)``, the closure doing
     zero_grad, loss and backward itself, as torch's docs show);
  4. tasks: evaluation every K steps, then the scheduler.
Optimizers outside torch.optim may need more (``catalogue.needs``): a closure like LBFGS's,
``backward(create_graph=True)`` (second-order: SophiaH, AdaHessian), or schedule-free's
switch: ``optimizer.train()`` before every step (before its gradient) and
``optimizer.eval()``/``optimizer.train()`` just around an evaluation. Before their
first step torch's and numpy's global generators are seeded (``optimizer_seed``): some draw from them.
Nothing here draws random numbers, casts or moves tensors except what a plain script
doing the same actions would do, so results equal plain PyTorch's bit for bit.

The engine keeps no history: the timeline (``core.timeline``) records what happened,
and an observer (``core.observer``) watches the steps through the optimizer's hooks.
``state()``/``restore()`` capture and bring back everything a step depends on (tensors,
gradients, optimizer and scheduler state, data order, random generators), which is what
rewinding is made of.
"""
from __future__ import annotations

import contextlib
import copy
import sys
import warnings

import numpy as np
import torch

from . import catalogue, devices, limits, objectives, schedulers
from .observe import state_entry
from .spec import (DTYPES, AddGroup, EditTensor, GroupSpec, LoadOptimizer, LoadParams, ManualGrad, Reset, SessionSpec,
                   SetDevice, SetGrad, SetHparam, SpecError, Step, TensorSpec, ZeroGrad, check_groups)
from .tasks import Task
from .trees import map_tensors
from .trust import UntrustedScript

GRAD_SEED_OFFSET = 999_983
OPTIMIZER_SEED_OFFSET = 999_979


class StepError(RuntimeError):
    """The optimizer cannot take this step; the message is for the user."""


def tensor_seed(session_seed: int, position: int) -> int:
    """Seed of the generator that initialises the ``position``-th tensor."""
    return (session_seed * 1_000_003 + position) % (2 ** 63)


def grad_seed(session_seed: int) -> int:
    """Seed of the session's generator for random manual gradients."""
    return (session_seed * 1_000_003 + GRAD_SEED_OFFSET) % (2 ** 63)


def optimizer_seed(session_seed: int) -> int:
    """Seed of torch's global generator, set after building an optimizer from outside
    torch.optim (Hutchinson's probes of SophiaH and AdaHessian draw from it)."""
    return (session_seed * 1_000_003 + OPTIMIZER_SEED_OFFSET) % (2 ** 63)


def make_tensor(t: TensorSpec, seed: int, device: str) -> torch.Tensor:
    """Create a leaf tensor exactly as the spec says: made on the CPU in its dtype (float32,
    float64, bfloat16 or float16; random inits draw in that dtype), then moved, so its values
    are the same on every device."""
    dtype = getattr(torch, t.dtype)
    g = torch.Generator().manual_seed(t.seed if t.seed is not None else seed)
    x = torch.empty(t.shape, dtype=dtype)
    init = t.init
    if init == "zeros":
        x.zero_()
    elif init == "ones":
        x.fill_(1.0)
    elif init == "constant":
        x.fill_(t.value)
    elif init == "normal":
        torch.nn.init.normal_(x, t.mean, t.std, generator=g)
    elif init == "uniform":
        torch.nn.init.uniform_(x, t.low, t.high, generator=g)
    elif init == "xavier_uniform":
        torch.nn.init.xavier_uniform_(x, t.gain, generator=g)
    elif init == "xavier_normal":
        torch.nn.init.xavier_normal_(x, t.gain, generator=g)
    elif init == "kaiming_uniform":
        torch.nn.init.kaiming_uniform_(x, generator=g)
    elif init == "kaiming_normal":
        torch.nn.init.kaiming_normal_(x, generator=g)
    elif init == "values":
        x = torch.tensor(t.values, dtype=dtype).reshape(t.shape)
    return x.to(device).requires_grad_(True)


def make_grad(g: ManualGrad, like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A manual gradient for ``like``, in its dtype, made on its device.

    Random draws come from ``gen``, the session's generator *on that device*
    (``grad_generator``): on the CPU ``torch.randn(shape, generator=gen, dtype=dtype) * std``;
    on CUDA the same call with ``device="cuda:N"`` and a CUDA generator, so nothing is drawn
    on the CPU and copied each step. Explicit values are written on the CPU and copied (the
    one fill that needs a copy; they are small)."""
    shape, dtype, device = tuple(like.shape), like.dtype, like.device
    if g.fill == "constant":
        out = torch.full(shape, g.value, dtype=dtype, device=device)
    elif g.fill == "zeros":
        out = torch.zeros(shape, dtype=dtype, device=device)
    elif g.fill == "normal":
        out = torch.randn(shape, generator=gen, dtype=dtype, device=gen.device) * g.std
    else:
        out = torch.tensor(g.values, dtype=dtype).reshape(shape)
    if g.sparse:
        out = out.to_sparse()
    return out.to(device)


def grad_generator(session_seed: int, device: str) -> torch.Generator:
    """The generator random manual gradients are drawn from on ``device``: one per device,
    each seeded with ``grad_seed(session_seed)`` when first used there (a session moved to
    CUDA and back goes on with its CPU generator where it left off)."""
    return torch.Generator(device=device).manual_seed(grad_seed(session_seed))


def copy_state(obj):
    """A copy of a (state_dict-like) structure whose tensors share no memory with the original."""
    return map_tensors(obj, lambda t: t.detach().clone(), copy.deepcopy)


def quiet():
    """What is printed while a session is built goes to stderr: prodigyopt prints "Using decoupled
    weight decay" in its constructor, which at every rebuild and rewind (and every validation
    that builds the class on a throwaway tensor) would mix into the CLI's output."""
    return contextlib.redirect_stdout(sys.stderr)


class Engine:
    """The live objects a spec describes. Call only from the thread that owns it."""

    def __init__(self, spec: SessionSpec, blobs: dict | None = None, observer=None):
        with quiet():
            spec.check()
        self.spec = spec
        self.start_step = spec.start_step  # read before every step (a property of the spec)
        self.blobs = blobs if blobs is not None else {}  # loaded state_dicts by id (the timeline's store)
        self.observer = observer
        self._build()

    # ----- building -----

    def _build(self) -> None:
        with quiet():
            self._construct()

    def _construct(self) -> None:
        spec = self.spec
        self.device = devices.canonical(spec.device)
        try:
            self.opt_class = catalogue.optimizer_class(spec.optimizer)
            self.needs = catalogue.needs(spec.optimizer)
        except UntrustedScript:
            raise  # the window asks the user and tries again
        except ValueError as e:
            raise SpecError(str(e)) from None
        self.task = None
        self.params: dict[str, torch.Tensor] = {}
        if spec.gradient.kind == "task":
            # the model's parameters are the session's tensors, named as named_parameters() names them
            try:
                self.task = Task(spec.gradient.task, self.device)
            except UntrustedScript:
                raise  # the window asks the user and tries again
            except ValueError as e:
                raise SpecError(str(e)) from None
            self.params = dict(self.task.named_parameters())
            self.tensor_specs = [TensorSpec(n, tuple(p.shape), dtype=_dtype_name(p.dtype), init="task")
                                 for n, p in self.params.items()]
            self.group_specs = list(spec.groups or self.task.default_groups())
            check_groups(self.group_specs, set(self.params))
        else:
            self.tensor_specs = list(spec.tensors)
            self.group_specs = list(spec.effective_groups())
        self._check_optimizer_fits(self.tensor_specs, self.group_specs)
        self._n_built = len(self.tensor_specs)  # later ones joined by add_param_group
        limits.check_tensors_fit(spec.optimizer, self.tensor_specs,
                                 [{**spec.hparams, **g.hparams} for g in self.group_specs], self.device)
        for i, t in enumerate(self.tensor_specs):
            if t.init != "task":
                self.params[t.name] = make_tensor(t, tensor_seed(spec.seed, i), self.device)
        self._grad_gens = {"cpu": torch.Generator().manual_seed(grad_seed(spec.seed))}
        self._saved_rngs: dict[str, torch.Tensor] = {}
        self._values_grads: dict[str, tuple] = {}  # tensor -> (its ManualGrad, that gradient made on the device)
        self._check_groups_run(self.device, [{**spec.hparams, **g.hparams} for g in self.group_specs])
        self._check_lrs([{**spec.hparams, **g.hparams}.get("lr") for g in self.group_specs])
        groups = [{"params": [self.params[n] for n in g.tensors], **g.hparams} for g in self.group_specs]
        try:
            self.optimizer = self.opt_class(groups, **spec.hparams)
        except (ValueError, TypeError, RuntimeError) as e:
            raise SpecError(str(e)) from None
        self.scheduler = None
        if spec.scheduler is not None:
            try:  # built right after the optimizer, as in a plain script (it sets initial_lr at once)
                self.scheduler = schedulers.make_scheduler(spec.scheduler.name, spec.scheduler.params,
                                                           self.optimizer)
            except ValueError as e:
                raise SpecError(f"{spec.scheduler.name}: {e}") from None
        self._metric_scheduler = self.scheduler is not None and schedulers.needs_metric(spec.scheduler.name)
        self._switch = catalogue.TRAIN_EVAL in self.needs
        self._same_lr = spec.optimizer in catalogue.SAME_LR
        if self._switch:
            self.optimizer.train()  # schedule-free: train mode before the first gradient
        self._draws_numpy = not catalogue.is_torch(spec.optimizer)
        if self._draws_numpy:
            torch.manual_seed(optimizer_seed(spec.seed))
            np.random.seed(optimizer_seed(spec.seed) % 2 ** 32)  # some draw from numpy's (PSGD's Kron)
        self.step_count = 0
        self.loss: torch.Tensor | None = None
        self.last_eval: dict = {}
        self._objective_names = self._objective_tensors()
        self._batch = None
        # what every step does, decided once (the step of a tiny problem takes 15 µs)
        self._manual_every = spec.gradient.kind == "manual" and spec.gradient.when == "every_step"
        self._has_loss = bool(self._objective_names) or self.task is not None
        self._lbfgs = catalogue.CLOSURE in self.needs  # LBFGS, and other classes stepped with a closure
        self._graph = catalogue.SECOND_ORDER in self.needs  # backward(create_graph=True)
        if self._graph:  # torch's advice (autograd.grad) is not what a plain training script does
            warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
        if spec.resume is not None:
            self._resume(spec.resume)
        if self.observer is not None:
            self.observer.attach(self.optimizer)
        if spec.gradient.kind == "manual" and spec.gradient.when == "once":
            for t in self.tensor_specs:
                if t.grad is not None:
                    self._set_grad(t.name, t.grad)

    def _resume(self, r) -> None:
        """Stand at step ``r.step`` of the checkpoint the spec resumes (``core.resume``): its
        weights, optimizer and scheduler state, the task's data position, torch's generator.
        Each piece is checked before it is applied; a refusal leaves a half-built engine that
        nobody keeps (building raises)."""
        from . import files
        data = self.blobs.get(r.blob)
        if not isinstance(data, dict) or not {"params", "optimizer"} <= set(data):
            raise SpecError(f"The session has no stored checkpoint data named {r.blob!r}")
        with files.about(r.path or None):
            self.load_params(data["params"])
            if r.optimizer_state:
                self.load_optimizer_state(data["optimizer"])
            buffers = data.get("buffers") or {}
            mine = dict(self.task.model.named_buffers())
            for n, b in buffers.items():
                if n not in mine or tuple(mine[n].shape) != tuple(b.shape):
                    raise files.LoadError(f"the checkpoint's buffer {n} does not fit the task's model")
            with torch.no_grad():
                for n, b in buffers.items():
                    mine[n].copy_(b)
            if self.scheduler is not None and data.get("scheduler") is not None and r.optimizer_state:
                extra = sorted(set(data["scheduler"]) - set(self.scheduler.state_dict()))
                if extra:  # torch's load_state_dict takes any keys: another class's state would slip in
                    raise files.LoadError(f"the scheduler state has {', '.join(map(str, extra[:3]))}, which "
                                          f"{self.spec.scheduler.name} does not have: it is another scheduler's")
                try:
                    self.scheduler.load_state_dict(copy_state(data["scheduler"]))
                except (KeyError, TypeError, ValueError, RuntimeError) as e:
                    raise files.LoadError(f"the scheduler state does not fit {self.spec.scheduler.name}: {e}") from None
            self.task.seek(r.step)
            if data.get("rng") is not None:
                try:
                    torch.random.set_rng_state(data["rng"])
                except (RuntimeError, TypeError) as e:
                    raise files.LoadError(f"the random generator state is not torch's: {e}") from None
        self.step_count = r.step

    def _objective_tensors(self) -> tuple[str, ...]:
        g = self.spec.gradient
        if g.kind != "objective":
            return ()
        names = g.tensors or tuple(t.name for t in self.spec.tensors)
        try:
            objectives.check_size(g.objective, sum(self.params[n].numel() for n in names))
        except ValueError as e:
            raise SpecError(str(e)) from None
        return names

    @property
    def grad_gen(self) -> torch.Generator:
        """The generator of random manual gradients on the session's device (``grad_generator``)."""
        return self.grad_gen_for(self.device)

    def grad_gen_for(self, device: str) -> torch.Generator:
        gen = self._grad_gens.get(device)
        if gen is None:
            gen = self._grad_gens[device] = grad_generator(self.spec.seed, device)
            saved = self._saved_rngs.pop(device, None)
            if saved is not None:
                gen.set_state(saved)
        return gen

    def _grad_rng_states(self) -> dict:
        """device -> state of the manual-gradient generators other than the CPU's (those of a
        device not here, read from a file, are kept for when the session goes back there)."""
        return {**self._saved_rngs, **{d: g.get_state() for d, g in self._grad_gens.items() if d != "cpu"}}

    def _set_grad_rngs(self, cpu_state, others: dict) -> None:
        if not (isinstance(others, dict) and all(isinstance(d, str) and isinstance(v, torch.Tensor)
                                                 for d, v in others.items())):
            raise SpecError("The saved random-gradient generators are not device -> state tensors")
        gen = self._grad_gens["cpu"]
        gen.set_state(cpu_state)
        self._grad_gens, self._saved_rngs = {"cpu": gen}, dict(others)

    def dtypes(self) -> tuple[str, ...]:
        """The parameters' dtypes, as a spec names them (what advanced options are tried with)."""
        return tuple(dict.fromkeys(t.dtype for t in self.tensor_specs)) or ("float32",)

    def _check_groups_run(self, device: str, hparams_per_group, dtypes=None) -> None:
        """Every group's hyperparameters can step on ``device`` with the tensors' dtypes
        (capturable on the CPU, fused for a dtype torch has no kernel for: one sentence)."""
        try:
            for hp in hparams_per_group:
                catalogue.validate_hparams(self.spec.optimizer, hp, device=device, dtypes=dtypes or self.dtypes())
        except ValueError as e:
            raise SpecError(str(e)) from None

    def _check_lrs(self, lrs) -> None:
        """Every group's lr (None: the default) fits the optimizer (Prodigy: one lr for all)."""
        if self.spec.optimizer not in catalogue.SAME_LR:
            return
        default = catalogue.info(self.spec.optimizer).defaults.get("lr")
        try:
            catalogue.check_same_lr(self.spec.optimizer, [default if v is None else v for v in lrs])
        except ValueError as e:
            raise SpecError(str(e)) from None

    def _check_optimizer_fits(self, tensors, groups) -> None:
        name = self.spec.optimizer
        if catalogue.TWO_D in self.needs:
            bad = [t.name for t in tensors if len(t.shape) != 2]
            if bad:
                raise SpecError(f"{name} optimizes only 2-D tensors (matrices); {bad[0]} is not 2-D")
        if catalogue.ONE_GROUP_ONLY in self.needs and len(groups) > 1:
            raise SpecError(f"{name} does not support parameter groups: use one group")

    # ----- what snapshots, files and the observer read -----

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensor_specs]

    @property
    def param_list(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def index_of(self) -> dict[str, int]:
        """state_dict index of each tensor (torch numbers params in group order)."""
        order = {id(p): i for i, p in enumerate(self.param_list)}
        return {n: order[id(p)] for n, p in self.params.items()}

    def group_of(self) -> dict[str, int]:
        return {n: gi for gi, g in enumerate(self.group_specs) for n in g.tensors}

    def added_tensors(self) -> list[TensorSpec]:
        """The tensors that joined by add_param_group (after the spec's own, or the model's)."""
        return self.tensor_specs[self._n_built:]

    def numel(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def loss_value(self) -> float | None:
        return None if self.loss is None else float(self.loss)

    def lrs(self) -> list[float | None]:
        out = []
        for g in self.optimizer.param_groups:
            lr = g.get("lr")
            out.append(float(lr) if lr is not None else None)
        return out

    def xy(self):
        """The current point of a 2-number objective, for the landscape path."""
        flat = self.xy_tensor()
        return None if flat is None else tuple(float(v) for v in flat.cpu().tolist())

    def xy_tensor(self) -> torch.Tensor | None:
        """The current point of a 2-number objective as a 2-element copy on the device (the
        observer reads it with its batch: no host sync of its own)."""
        if len(self._objective_names) and sum(self.params[n].numel() for n in self._objective_names) == 2:
            with torch.no_grad():
                return torch.cat([self.params[n].detach().reshape(-1) for n in self._objective_names])
        return None

    @property
    def has_xy(self) -> bool:
        return bool(self._objective_names) and sum(self.params[n].numel() for n in self._objective_names) == 2

    def state_tensor(self, name: str, which: str) -> torch.Tensor | None:
        """A parameter (``value``), its gradient (``grad``) or one of its optimizer state entries."""
        p = self.params[name]
        if which == "value":
            return p
        if which == "grad":
            return p.grad
        v = state_entry(self.optimizer.state.get(p, {}), which)  # "Q[1]": an item of a list of tensors
        return v if isinstance(v, torch.Tensor) else None

    # ----- one step, in the documented order -----

    def check_can_step(self) -> None:
        name = self.spec.optimizer
        if self._graph and not self._has_loss:
            raise StepError(f"{name} uses second-order information (backward with create_graph=True); "
                            "manual gradients have none: use an objective or a task")
        if catalogue.SPARSE in self.needs:
            if self.spec.gradient.kind == "objective":
                raise StepError(f"{name} needs sparse gradients; an objective gives dense ones: "
                                "use manual gradients with 'sparse' on")
            for p_name, p in self.params.items():
                if p.grad is not None and not p.grad.is_sparse:
                    raise StepError(f"{name} needs sparse gradients; {p_name} has a dense one: "
                                    "turn 'sparse' on for its manual gradient")

    def step_once(self) -> dict:
        """One optimizer step; returns the evaluation's metrics if one ran this step."""
        if self.spec.deterministic and not torch.are_deterministic_algorithms_enabled():
            with devices.deterministic():  # the spec's option: as a script calling it at its top
                return self.step_once()
        spec = self.spec
        opt = self.optimizer
        if self._same_lr:  # edited one group at a time, the lrs may differ in between; prodigyopt
            try:  # would raise at the second group, after changing the first group's state
                catalogue.check_same_lr(spec.optimizer, [g.get("lr") for g in opt.param_groups])
            except ValueError as e:
                raise StepError(f"{e}; nothing was stepped") from None
        if self._switch:
            opt.train()  # schedule-free: nothing when already in train mode
        if self.task is not None:
            self._batch = self.task.next_batch()  # one batch a step (LBFGS's closure reuses it)
        closure = None
        if self._lbfgs:
            closure = self._closure(self._manual_every)
        else:
            if spec.zero_grad_each_step:
                opt.zero_grad(set_to_none=spec.set_to_none)
            if self._manual_every:
                self._assign_manual_grads()
            elif self._has_loss:
                loss = self._loss()
                loss.backward(create_graph=self._graph)
                self.loss = loss.detach()
        try:
            ret = opt.step(closure) if closure is not None else opt.step()
        except (ValueError, RuntimeError, AssertionError) as e:
            raise StepError(f"{spec.optimizer}.step() failed: {e}") from e
        if closure is not None and self._has_loss and ret is not None:
            self.loss = ret.detach()
        self.step_count += 1
        if self.task is None and self.scheduler is None:
            return _NOTHING
        return self._after_step()

    def _after_step(self) -> dict:
        """Evaluation every K steps, then the scheduler (documented order; see README)."""
        metrics = {}
        task = self.task
        if task is not None and self.step_count % task.spec.eval_every == 0:
            if self._switch:
                self.optimizer.eval()  # schedule-free: evaluate at the averaged weights
            metrics = task.evaluate()
            if self._switch:
                self.optimizer.train()
            self.last_eval = metrics
        if self.scheduler is not None:
            at_end = task.at_epoch_end if task is not None else True
            if self._metric_scheduler:
                if metrics or task is None:
                    value = metrics.get("val_loss") if metrics else self.loss_value()
                    if value is not None:
                        schedulers.step_scheduler(self.scheduler, value)
            elif schedulers.should_step(self.spec.scheduler.every, at_end):
                schedulers.step_scheduler(self.scheduler)
        return metrics

    def _closure(self, manual_every: bool):
        opt, spec = self.optimizer, self.spec

        def closure():
            if self._objective_names or self.task is not None:
                opt.zero_grad(set_to_none=spec.set_to_none)
                loss = self._loss()
                loss.backward(create_graph=self._graph)
                return loss
            if manual_every:
                self._assign_manual_grads()
            return torch.zeros((), dtype=torch.float64)
        return closure

    def _loss(self) -> torch.Tensor:
        if self.task is not None:
            return self.task.loss(self._batch)
        g = self.spec.gradient
        fn = objectives.OBJECTIVES[g.objective].fn
        return fn([self.params[n] for n in self._objective_names], g.condition)

    def _assign_manual_grads(self) -> None:
        for t in self.tensor_specs:
            if t.grad is not None:
                p = self.params[t.name]
                if t.grad.fill == "values":  # written out once on the device, cloned each step
                    kept = self._values_grads.get(t.name)
                    if kept is None or kept[0] is not t.grad or kept[1].device != p.device or kept[1].dtype != p.dtype:
                        kept = self._values_grads[t.name] = (t.grad, make_grad(t.grad, p, self.grad_gen))
                    p.grad = kept[1].clone()
                else:
                    p.grad = make_grad(t.grad, p, self.grad_gen)

    def _set_grad(self, name: str, grad: ManualGrad | None) -> None:
        p = self.params[name]
        p.grad = None if grad is None else make_grad(grad, p, self.grad_gen)

    def decision_grid(self):
        if self.task is None or not self.task.has_decision_grid:
            return None
        return self.task.decision_grid()

    # ----- actions -----

    def apply(self, action) -> None:
        """Carry out one journal action. Refused actions raise and change nothing."""
        handler = _HANDLERS.get(type(action))
        if handler is None:
            raise SpecError(f"Unknown action {type(action).__name__}")
        handler(self, action)

    def _do_step(self, action: Step) -> None:
        for _ in range(action.n):
            if self.step_count == self.start_step:
                self.check_can_step()
            self.step_once()

    def _do_zerograd(self, action: ZeroGrad) -> None:
        s = self.spec.set_to_none if action.set_to_none is None else action.set_to_none
        self.optimizer.zero_grad(set_to_none=s)

    def _do_setgrad(self, action: SetGrad) -> None:
        if action.tensor not in self.params:
            raise SpecError(f"No tensor named {action.tensor!r}")
        if action.grad is not None:
            action.grad.check(tuple(self.params[action.tensor].shape), action.tensor)
        self._set_grad(action.tensor, action.grad)

    def _do_addgroup(self, action: AddGroup) -> None:
        existing = set(self.params)
        names = [t.name for t in action.tensors]
        for t in action.tensors:
            t.check()
            if t.name in existing:
                raise SpecError(f"Tensor {t.name!r} is already in the optimizer: some parameters appear in more than one parameter group")
        check_groups([GroupSpec(tuple(names), action.hparams)], set(names))
        self._check_optimizer_fits(list(action.tensors), self.group_specs + [GroupSpec(tuple(names))])
        known = catalogue.info(self.spec.optimizer).defaults
        merged = {k: v for k, v in self.optimizer.defaults.items() if k in known}
        merged.update(action.hparams)  # unknown names are refused by validate_hparams
        self._check_groups_run(self.device, [merged], self.dtypes() + tuple(t.dtype for t in action.tensors))
        self._check_lrs([g.get("lr") for g in self.optimizer.param_groups] + [merged.get("lr")])
        limits.check_tensors_fit(self.spec.optimizer, action.tensors, [merged], self.device)
        new = {}
        for k, t in enumerate(action.tensors):
            new[t.name] = make_tensor(t, tensor_seed(self.spec.seed, len(self.tensor_specs) + k), self.device)
        try:
            self.optimizer.add_param_group({"params": list(new.values()), **action.hparams})
        except (ValueError, TypeError) as e:
            raise SpecError(str(e)) from None
        self.params.update(new)
        self.tensor_specs.extend(action.tensors)
        self.group_specs.append(GroupSpec(tuple(names), action.hparams))
        if self.spec.gradient.kind == "manual" and self.spec.gradient.when == "once":
            for t in action.tensors:
                if t.grad is not None:
                    self._set_grad(t.name, t.grad)

    def _do_sethparam(self, action: SetHparam) -> None:
        if not 0 <= action.group < len(self.optimizer.param_groups):
            raise SpecError(f"There is no group {action.group}; the optimizer has {len(self.optimizer.param_groups)}")
        desc = catalogue.info(self.spec.optimizer)
        if desc.hparam(action.name) is None:
            raise SpecError(f"{self.spec.optimizer} has no hyperparameter {action.name!r}")
        group = self.optimizer.param_groups[action.group]
        current = {k: v for k, v in group.items() if k in desc.defaults}
        current[action.name] = action.value
        self._check_groups_run(self.device, [current])
        group[action.name] = action.value
        gs = self.group_specs[action.group]
        self.group_specs[action.group] = GroupSpec(gs.tensors, {**gs.hparams, action.name: action.value})

    def _do_loadoptimizer(self, action: LoadOptimizer) -> None:
        from . import files
        sd = self.blobs.get(action.blob)
        if sd is None:
            raise files.LoadError(f"The session has no stored state_dict named {action.blob!r}")
        with files.about(action.path or None):
            self.load_optimizer_state(sd)

    def load_optimizer_state(self, sd: dict) -> None:
        """Validate against this session, then swap the new state in (a refusal changes nothing)."""
        from . import files
        files.check_optimizer_state(self, sd)
        opt = self.optimizer
        before = {"state": opt.state, "param_groups": opt.param_groups}
        try:
            # torch builds the new state and groups aside and swaps them in at its end; the
            # copy keeps the caller's dict (a stored blob) unchanged by later steps
            opt.load_state_dict(copy_state(sd))
        except Exception as e:  # noqa: BLE001 - the checks passed, so this is unexpected: undo it
            opt.__setstate__(before)
            raise files.LoadError(f"The state_dict could not be loaded: {e}") from None
        if self._switch:
            opt.train()  # a file saved in eval mode (as schedule-free advises) steps in train mode
        args = catalogue.info(self.spec.optimizer).defaults
        for gi, g in enumerate(opt.param_groups):
            gs = self.group_specs[gi]
            self.group_specs[gi] = GroupSpec(gs.tensors, {**gs.hparams, **{
                k: v for k, v in g.items() if k in args and opt.defaults.get(k, object()) != v}})

    def _do_loadparams(self, action: LoadParams) -> None:
        from . import files
        sd = self.blobs.get(action.blob)
        if sd is None:
            raise files.LoadError(f"The session has no stored parameters named {action.blob!r}")
        with files.about(action.path or None):
            self.load_params(sd)

    def load_params(self, sd: dict) -> None:
        """Validate, copy every value to its parameter's device, then write them all."""
        from . import files
        files.check_params(self, sd)
        staged = [(self.params[n], v.detach().to(self.params[n].device, copy=True)) for n, v in sd.items()]
        with torch.no_grad():
            for p, v in staged:  # same shape, dtype and device, dense: copy_ cannot fail here
                p.copy_(v)

    def _do_edittensor(self, action: EditTensor) -> None:
        """Set one element (or fill a whole tensor) of a parameter, its gradient or a state entry."""
        if action.tensor not in self.params:
            raise SpecError(f"No tensor named {action.tensor!r}")
        t = self.state_tensor(action.tensor, action.which)
        if t is None:
            what = "gradient" if action.which == "grad" else f"optimizer state {action.which!r}"
            raise SpecError(f"{action.tensor} has no {what} to edit (yet)")
        if t.is_sparse:
            raise SpecError(f"{action.tensor}'s {action.which} is sparse; only dense tensors can be edited")
        if action.index is not None:
            idx = tuple(action.index)
            if len(idx) != t.dim() or any(not 0 <= i < s for i, s in zip(idx, t.shape)):
                raise SpecError(f"Index {list(idx)} is outside {action.tensor}'s {action.which} "
                                f"of shape {list(t.shape)}")
        with torch.no_grad():
            if action.index is None:
                t.fill_(action.value)
            else:
                t[tuple(action.index)] = action.value

    def _do_setdevice(self, action: SetDevice) -> None:
        """Move everything a step touches: tensors, gradients, optimizer state (torch's own
        load_state_dict rule: ``step`` counters stay on the CPU unless capturable or fused),
        the task's model, buffers and data, the last loss; the observer then reads back as
        that device wants. Refused before anything moves if the optimizer's settings cannot
        step there."""
        device = devices.canonical(action.device)
        if device == self.device:
            return
        known = catalogue.info(self.spec.optimizer).defaults
        self._check_groups_run(device, [{k: v for k, v in g.items() if k in known}
                                        for g in self.optimizer.param_groups])
        sd = self.optimizer.state_dict()
        for p in self.params.values():
            _move_leaf(p, device)
        self.optimizer.load_state_dict(sd)
        keep_saved_dtypes(self.optimizer, sd)
        if self.task is not None:
            self.task.to(device)
        if self.loss is not None:
            self.loss = self.loss.to(device)
        self.device = device
        if self.observer is not None:
            self.observer.attach(self.optimizer)  # how often it reads back depends on the device

    def _do_reset(self, action: Reset) -> None:
        self._build()

    # ----- capturing and restoring everything a step depends on -----

    def structure(self) -> tuple:
        """What must match for ``restore`` to work in place: tensors, groups and device."""
        return (tuple(self.names), tuple(g.tensors for g in self.group_specs), self.device)

    def state(self) -> dict:
        """A copy of everything the next steps depend on (tensors are clones)."""
        return {
            "step": self.step_count,
            "structure": self.structure(),
            "added": list(self.added_tensors()),
            "groups": list(self.group_specs),
            "params": {n: p.detach().clone() for n, p in self.params.items()},
            "grads": {n: p.grad.detach().clone() for n, p in self.params.items() if p.grad is not None},
            "optimizer": copy_state(self.optimizer.state_dict()),
            # load_state_dict adds keys to defaults (torch's __setstate__), which later groups inherit
            "defaults": copy_state(dict(self.optimizer.defaults)),
            "scheduler": copy_state(self.scheduler.state_dict()) if self.scheduler is not None else None,
            "task": self.task.state() if self.task is not None else None,
            "grad_rng": self._grad_gens["cpu"].get_state(),
            # the generators of other devices (CUDA: random manual gradients drawn there), and
            # CUDA's global one (dropout in a task's model draws from it)
            "grad_rngs": self._grad_rng_states(),
            "torch_rng": torch.random.get_rng_state(),
            # numpy's global generator, for optimizers beyond torch.optim that draw from it (Kron)
            **({"numpy_rng": np.random.get_state()} if self._draws_numpy else {}),
            **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.startswith("cuda") else {}),
            "loss": None if self.loss is None else self.loss.detach().clone(),
            "last_eval": dict(self.last_eval),
        }

    def restore(self, st: dict, check: bool = False) -> None:
        """Become exactly the engine that ``state()`` captured (same spec). With ``check`` (a
        state read from a file), its tensors are checked against this engine first."""
        names, groups, device = st["structure"]
        want = (names, groups, devices.canonical(device))  # a device not here: refused in one sentence
        if self.structure() != want:
            self._build()
            base = len(self.group_specs)
            by_name = {t.name: t for t in st["added"]}
            for g in st["groups"][base:]:
                self._do_addgroup(AddGroup(tuple(by_name[n] for n in g.tensors), g.hparams))
            if want[2] != self.device:
                self._do_setdevice(SetDevice(want[2]))
            if self.structure() != want:
                raise SpecError("The saved tensors and groups do not match the session's spec")
        if check:
            from . import files
            files.check_params(self, st["params"])
            files.check_optimizer_state(self, st["optimizer"])
        with torch.no_grad():
            for n, v in st["params"].items():
                self.params[n].copy_(v)
        for n, p in self.params.items():
            g = st["grads"].get(n)
            p.grad = None if g is None else g.to(p.device).clone()
        self.optimizer.load_state_dict(copy_state(st["optimizer"]))
        keep_saved_dtypes(self.optimizer, st["optimizer"])
        if "defaults" in st:
            self.optimizer.defaults = copy_state(st["defaults"])
        self.group_specs = list(st["groups"])
        if self.scheduler is not None and st["scheduler"] is not None:
            self.scheduler.load_state_dict(copy_state(st["scheduler"]))
        if self.task is not None and st["task"] is not None:
            self.task.load_state(st["task"])
        self._set_grad_rngs(st["grad_rng"], st.get("grad_rngs") or {})
        torch.random.set_rng_state(st["torch_rng"])
        if st.get("numpy_rng") is not None:
            np.random.set_state(st["numpy_rng"])
        if st.get("cuda_rng") is not None and self.device.startswith("cuda"):
            torch.cuda.set_rng_state(st["cuda_rng"], self.device)
        self.loss = None if st["loss"] is None else st["loss"].to(self.device).clone()
        self.last_eval = dict(st["last_eval"])
        self.step_count = st["step"]

    @staticmethod
    def state_bytes(st: dict) -> int:
        """Memory a captured state holds (its tensors)."""
        return _nbytes(st)


def _move_leaf(p: torch.Tensor, device: str) -> None:
    """Move a leaf tensor and its gradient in place: the optimizer and the model keep the same
    object, as ``nn.Module.to`` does (``.data``, or a swap where the two tensor types cannot
    share it, as with torch's ``meta`` device)."""
    grad = p.grad
    new = p.data.to(device)
    if torch._has_compatible_shallow_copy_type(p, new):
        p.data = new
    else:
        new = torch.nn.Parameter(new, p.requires_grad) if isinstance(p, torch.nn.Parameter) \
            else new.requires_grad_(p.requires_grad)
        torch.utils.swap_tensors(p, new)
    if grad is not None:
        p.grad = grad.to(device)


def keep_saved_dtypes(optimizer: torch.optim.Optimizer, sd: dict) -> None:
    """Put back state that torch's load_state_dict cast to its parameter's dtype.

    torch casts floating state (lists of tensors too) to the dtype of the parameter it is
    keyed by: LBFGS's float64 direction and history over mixed float32/float64 tensors
    would come back as float32, ASGD's float32 eta of a float64 tensor as float64. A
    reopened session keeps what was saved, so it goes on bit for bit like the one never closed.
    """
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, saved in sd.get("state", {}).items():
        if not (isinstance(i, int) and 0 <= i < len(params) and params[i] in optimizer.state):
            continue
        live = optimizer.state[params[i]]
        for k, v in saved.items():
            if k in live and _dtypes(v) != _dtypes(live[k]):
                live[k] = _copy_to(v, params[i].device)


def _dtypes(v) -> list:
    if isinstance(v, torch.Tensor):
        return [v.dtype]
    if isinstance(v, (list, tuple)):
        return [d for x in v for d in _dtypes(x)]
    return []


def _copy_to(v, device):
    if isinstance(v, torch.Tensor):
        return v.to(device, copy=True)
    if isinstance(v, (list, tuple)):
        return type(v)(_copy_to(x, device) for x in v)
    return v


def _dtype_name(dtype: torch.dtype) -> str:
    """A model parameter's dtype as a spec names it (anything else counts as float32)."""
    name = str(dtype).removeprefix("torch.")
    return name if name in DTYPES else "float32"
_NOTHING: dict = {}  # no evaluation ran (shared: callers only read it)


def _nbytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


_HANDLERS = {Step: Engine._do_step, ZeroGrad: Engine._do_zerograd, SetGrad: Engine._do_setgrad,
             AddGroup: Engine._do_addgroup, SetHparam: Engine._do_sethparam,
             LoadOptimizer: Engine._do_loadoptimizer, LoadParams: Engine._do_loadparams,
             EditTensor: Engine._do_edittensor, SetDevice: Engine._do_setdevice, Reset: Engine._do_reset}
