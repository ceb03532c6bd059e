"""The engine: live tensors and the optimizer built from a spec, driven one action at a time.

The per-step order is fixed and documented (README, "The step"):
  1. ``zero_grad(set_to_none)`` if the spec says "zero_grad before every step";
  2. the gradient: manual gradients marked ``every_step`` are assigned, or the
     objective's (or task's) ``loss.backward()`` accumulates into ``.grad``;
  3. ``optimizer.step()`` (LBFGS: ``optimizer.step(closure)``, the closure doing
     zero_grad, loss and backward itself, as torch's docs show);
  4. tasks: evaluation every K steps, then the scheduler.
Nothing here draws random numbers, casts or moves tensors except what a plain script
doing the same actions would do, so results equal plain PyTorch's bit for bit.

The engine keeps no history: the timeline (``core.timeline``) records what happened,
and an observer (``core.observer``) watches the steps through the optimizer's hooks.
``state()``/``restore()`` capture and bring back everything a step depends on (tensors,
gradients, optimizer and scheduler state, data order, random generators), which is what
rewinding is made of.
"""
from __future__ import annotations

import copy

import torch

from . import catalogue, limits, objectives, schedulers
from .spec import (AddGroup, EditTensor, GroupSpec, LoadOptimizer, LoadParams, ManualGrad, Reset, SessionSpec,
                   SetDevice, SetGrad, SetHparam, SpecError, Step, TensorSpec, ZeroGrad, check_groups)
from .tasks import Task
from .trust import UntrustedScript

GRAD_SEED_OFFSET = 999_983


class StepError(RuntimeError):
    """The optimizer cannot take this step; the message is for the user."""


def tensor_seed(session_seed: int, position: int) -> int:
    """Seed of the generator that initialises the ``position``-th tensor."""
    return (session_seed * 1_000_003 + position) % (2 ** 63)


def grad_seed(session_seed: int) -> int:
    """Seed of the session's generator for random manual gradients."""
    return (session_seed * 1_000_003 + GRAD_SEED_OFFSET) % (2 ** 63)


def make_tensor(t: TensorSpec, seed: int, device: str) -> torch.Tensor:
    """Create a leaf tensor exactly as the spec says (always on CPU, then moved)."""
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
    """A manual gradient for ``like`` (random draws come from the session's generator)."""
    shape, dtype = tuple(like.shape), like.dtype
    if g.fill == "constant":
        out = torch.full(shape, g.value, dtype=dtype)
    elif g.fill == "zeros":
        out = torch.zeros(shape, dtype=dtype)
    elif g.fill == "normal":
        out = torch.randn(shape, generator=gen, dtype=dtype) * g.std
    else:
        out = torch.tensor(g.values, dtype=dtype).reshape(shape)
    if g.sparse:
        out = out.to_sparse()
    return out.to(like.device)


def copy_state(obj):
    """A copy of a (state_dict-like) structure whose tensors share no memory with the original."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: copy_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [copy_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(copy_state(v) for v in obj)
    return copy.deepcopy(obj)


class Engine:
    """The live objects a spec describes. Call only from the thread that owns it."""

    def __init__(self, spec: SessionSpec, blobs: dict | None = None, observer=None):
        spec.check()
        self.spec = spec
        self.blobs = blobs if blobs is not None else {}  # loaded state_dicts by id (the timeline's store)
        self.observer = observer
        self._build()

    # ----- building -----

    def _build(self) -> None:
        spec = self.spec
        self.device = spec.device
        self._check_device(self.device)
        self.opt_class = catalogue.optimizer_classes().get(spec.optimizer)
        if self.opt_class is None:
            raise SpecError(f"Unknown optimizer {spec.optimizer!r}")
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
            self.tensor_specs = [TensorSpec(n, tuple(p.shape), dtype=str(p.dtype)[6:] if p.dtype in
                                            (torch.float32, torch.float64) else "float32", init="task")
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
        self.grad_gen = torch.Generator().manual_seed(grad_seed(spec.seed))
        try:
            for g in self.group_specs:
                catalogue.validate_hparams(spec.optimizer, {**spec.hparams, **g.hparams}, device=self.device)
        except ValueError as e:
            raise SpecError(str(e)) from None
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
        self.step_count = 0
        self.loss: torch.Tensor | None = None
        self.last_eval: dict = {}
        self._objective_names = self._objective_tensors()
        self._batch = None
        # what every step does, decided once (the step of a tiny problem takes 15 µs)
        self._manual_every = spec.gradient.kind == "manual" and spec.gradient.when == "every_step"
        self._has_loss = bool(self._objective_names) or self.task is not None
        self._lbfgs = self.opt_class is torch.optim.LBFGS
        if self.observer is not None:
            self.observer.attach(self.optimizer)
        if spec.gradient.kind == "manual" and spec.gradient.when == "once":
            for t in self.tensor_specs:
                if t.grad is not None:
                    self._set_grad(t.name, t.grad)

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

    def _check_device(self, device: str) -> None:
        if device not in catalogue.devices():
            raise SpecError(f"Device {device!r} is not available here; torch reports {', '.join(catalogue.devices())}")

    def _check_optimizer_fits(self, tensors, groups) -> None:
        name = self.spec.optimizer
        if name in catalogue.NEEDS_2D:
            bad = [t.name for t in tensors if len(t.shape) != 2]
            if bad:
                raise SpecError(f"{name} optimizes only 2-D tensors (matrices); {bad[0]} is not 2-D")
        if name in catalogue.ONE_GROUP and len(groups) > 1:
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
        if len(self._objective_names) and sum(self.params[n].numel() for n in self._objective_names) == 2:
            with torch.no_grad():
                flat = torch.cat([self.params[n].detach().reshape(-1) for n in self._objective_names])
                return tuple(float(v) for v in flat.cpu().tolist())
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
        v = self.optimizer.state.get(p, {}).get(which)
        return v if isinstance(v, torch.Tensor) else None

    # ----- one step, in the documented order -----

    def check_can_step(self) -> None:
        name = self.spec.optimizer
        if name in catalogue.NEEDS_SPARSE:
            if self.spec.gradient.kind == "objective":
                raise StepError(f"{name} needs sparse gradients; an objective gives dense ones: "
                                "use manual gradients with 'sparse' on")
            for p_name, p in self.params.items():
                if p.grad is not None and not p.grad.is_sparse:
                    raise StepError(f"{name} needs sparse gradients; {p_name} has a dense one: "
                                    "turn 'sparse' on for its manual gradient")

    def step_once(self) -> dict:
        """One optimizer step; returns the evaluation's metrics if one ran this step."""
        spec = self.spec
        opt = self.optimizer
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
                loss.backward()
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
            metrics = task.evaluate()
            self.last_eval = metrics
        if self.scheduler is not None:
            at_end = task.at_epoch_end if task is not None else True
            if schedulers.needs_metric(self.spec.scheduler.name):
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
                loss.backward()
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
                self.params[t.name].grad = make_grad(t.grad, self.params[t.name], self.grad_gen)

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
            if self.step_count == 0:
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
        try:
            catalogue.validate_hparams(self.spec.optimizer, merged, device=self.device)
        except ValueError as e:
            raise SpecError(str(e)) from None
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
        try:
            catalogue.validate_hparams(self.spec.optimizer, current, device=self.device)
        except ValueError as e:
            raise SpecError(str(e)) from None
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
        self._check_device(action.device)
        if action.device == self.device:
            return
        sd = self.optimizer.state_dict()
        for p in self.params.values():
            p.data = p.data.to(action.device)
            if p.grad is not None:
                p.grad = p.grad.to(action.device)
        self.optimizer.load_state_dict(sd)
        if self.task is not None:
            self.task.to(action.device)
        if self.loss is not None:
            self.loss = self.loss.to(action.device)
        self.device = action.device

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
            "grad_rng": self.grad_gen.get_state(),
            "torch_rng": torch.random.get_rng_state(),
            "loss": None if self.loss is None else self.loss.detach().clone(),
            "last_eval": dict(self.last_eval),
        }

    def restore(self, st: dict, check: bool = False) -> None:
        """Become exactly the engine that ``state()`` captured (same spec). With ``check`` (a
        state read from a file), its tensors are checked against this engine first."""
        if self.structure() != st["structure"]:
            self._build()
            base = len(self.group_specs)
            by_name = {t.name: t for t in st["added"]}
            for g in st["groups"][base:]:
                self._do_addgroup(AddGroup(tuple(by_name[n] for n in g.tensors), g.hparams))
            if st["structure"][2] != self.device:
                self._do_setdevice(SetDevice(st["structure"][2]))
            if self.structure() != st["structure"]:
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
        self.grad_gen.set_state(st["grad_rng"])
        torch.random.set_rng_state(st["torch_rng"])
        self.loss = None if st["loss"] is None else st["loss"].to(self.device).clone()
        self.last_eval = dict(st["last_eval"])
        self.step_count = st["step"]

    @staticmethod
    def state_bytes(st: dict) -> int:
        """Memory a captured state holds (its tensors)."""
        return _nbytes(st)


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
