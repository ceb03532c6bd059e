"""A live session: the spec's tensors and optimizer, driven by journal actions.

The per-step order is fixed and documented (README, "The step"):
  1. ``zero_grad(set_to_none)`` if the spec says "zero_grad before every step";
  2. the gradient: manual gradients marked ``every_step`` are assigned, or the
     objective's ``loss.backward()`` accumulates into ``.grad``;
  3. ``optimizer.step()`` (LBFGS: ``optimizer.step(closure)``, the closure doing
     zero_grad, loss and backward itself, as torch's docs show).
Nothing here draws random numbers, casts or moves tensors except what a plain
script doing the same actions would do, so results equal plain PyTorch's bit for bit.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace

import torch

from . import catalogue, limits, objectives, schedulers
from .history import Budget, HistoryRecorder
from .tasks import Task
from .spec import (AddGroup, GradientSpec, GroupSpec, LoadOptimizer, LoadParams, ManualGrad, Reset,
                   SessionSpec, SetDevice, SetGrad, SetHparam, SpecError, Step, TensorSpec, ZeroGrad,
                   check_groups)

GRAD_SEED_OFFSET = 999_983
CURVE_POINTS = 256  # measured points per "step N" batch on small problems
SMALL_NUMEL = 1_000_000


class StepError(RuntimeError):
    """The optimizer cannot take this step; the message is for the user."""


class NonFinite(RuntimeError):
    """The loss or a parameter became NaN or infinite (names the culprit)."""


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


class Session:
    """Spec + journal, and the live objects they describe."""

    def __init__(self, spec: SessionSpec, journal=(), blobs: dict | None = None):
        spec.check()
        self.spec = spec
        self.blobs: dict[str, object] = dict(blobs or {})  # state_dicts loaded into the session
        self.journal: list = []
        self.history = HistoryRecorder()
        self._build()
        for action in journal:
            self.apply(action)

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
        limits.check_tensors_fit(spec.optimizer, self.tensor_specs,
                                 [{**spec.hparams, **g.hparams} for g in self.group_specs], self.device)
        for i, t in enumerate(self.tensor_specs):
            if t.init != "task":
                self.params[t.name] = make_tensor(t, tensor_seed(spec.seed, i), self.device)
        self.grad_gen = torch.Generator().manual_seed(grad_seed(spec.seed))
        try:
            for g in self.group_specs:
                catalogue.validate_hparams(spec.optimizer, {**spec.hparams, **g.hparams})
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
        self._grid = None
        self.history.clear()
        self._objective_names = self._objective_tensors()
        self._batch = None
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

    # ----- what a snapshot and the files read -----

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

    def loss_value(self) -> float | None:
        return None if self.loss is None else float(self.loss)

    # ----- actions -----

    def apply(self, action) -> None:
        """Carry out one journal action and record it. Refused actions change nothing."""
        handler = getattr(self, "_do_" + type(action).__name__.lower())
        handler(action)
        self._record(action)

    def _record(self, action) -> None:
        if isinstance(action, Step) and self.journal and isinstance(self.journal[-1], Step):
            self.journal[-1] = Step(self.journal[-1].n + action.n)
        else:
            self.journal.append(action)

    def _do_step(self, action: Step) -> None:
        self._steps(action.n, Budget(), lambda: False)

    def _steps(self, n: int, budget: Budget, cancelled) -> int:
        """Step ``n`` times, measuring for the curves on the time budget and at the last step."""
        done = 0
        every = self.curve_stride(n)
        for i in range(n):
            if cancelled():
                break
            now = time.perf_counter()
            probe = i == n - 1 or (every and (i + 1) % every == 0) or budget.due(now)
            result = self.step_once(probe=probe)
            done += 1
            if result is not None:
                self.record(result)
            if probe:
                budget.charge(time.perf_counter() - now)
        return done

    def curve_stride(self, n: int) -> int:
        """For a batch of ``n`` steps on a small problem, measure every k-th step so the
        curves keep about CURVE_POINTS points of it (0: rely on the time budget alone).

        Small problems only: a probe copies the parameters, which on a big tensor costs
        half a step, so there the budget alone decides.
        """
        if self.numel() > SMALL_NUMEL:
            return 0
        return max(1, -(-n // CURVE_POINTS))

    def numel(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def run(self, n: int, budget: Budget | None = None, cancelled=lambda: False) -> int:
        """Step up to ``n`` times (stopping early if ``cancelled()``) and journal what was done."""
        done = 0
        try:
            done = self._steps(n, budget or Budget(), cancelled)
        finally:
            if done:
                self._record(Step(done))
        return done

    def step(self, n: int = 1) -> None:
        self.apply(Step(n))

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

    def step_once(self, probe: bool = False) -> dict | None:
        """One optimizer step in the documented order.

        With ``probe`` the step also measures what the curves show (gradient norm
        and update norm) and checks every parameter for NaN/inf; this costs a copy
        of the parameters, so callers probe on a time budget, not every step.
        Returns the probe's measurements or None.
        """
        spec = self.spec
        opt = self.optimizer
        if self.step_count == 0 or probe:
            self.check_can_step()
        manual_every = spec.gradient.kind == "manual" and spec.gradient.when == "every_step"
        if self.task is not None:
            self._batch = self.task.next_batch()  # one batch a step (LBFGS's closure reuses it)
        closure = None
        if self.opt_class is torch.optim.LBFGS:
            closure = self._closure(manual_every)
        else:
            if spec.zero_grad_each_step:
                opt.zero_grad(set_to_none=spec.set_to_none)
            if manual_every:
                self._assign_manual_grads()
            elif self._objective_names or self.task is not None:
                loss = self._loss()
                loss.backward()
                self.loss = loss.detach()
        before = None
        if probe:
            before = [p.detach().clone() for p in self.param_list]
        try:
            ret = opt.step(closure) if closure is not None else opt.step()
        except (ValueError, RuntimeError) as e:
            raise StepError(f"{spec.optimizer}.step() failed: {e}") from e
        if closure is not None and (self._objective_names or self.task is not None) and ret is not None:
            self.loss = ret.detach()
        self.step_count += 1
        if self.loss is not None and not math.isfinite(float(self.loss)):
            raise NonFinite(f"The loss became {float(self.loss)} at step {self.step_count}")
        result = self._probe(before) if probe else None
        evaluated = self._after_step()
        if evaluated:
            result = {**(result or {}), **evaluated}
        return result

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

    def decision_grid(self, max_age: float = 0.1):
        """The 2-D classifier's decision grid, recomputed at most every ``max_age`` seconds."""
        if self.task is None or not self.task.has_decision_grid:
            return None
        now = time.perf_counter()
        if self._grid is None or (self._grid[0] != self.step_count and now - self._grid[1] >= max_age):
            self._grid = (self.step_count, now, self.task.decision_grid())
        return self._grid[2]

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

    def _probe(self, before) -> dict:
        """Gradient norm, update norm and a NaN/inf check, in as few passes as possible.

        Norms accumulate in float32 as torch does (one pass each, no float64 copy of a
        big tensor). Finiteness is read off each parameter's sum: any NaN/inf makes the
        sum non-finite; only then is the exact per-element check run.
        """
        params = self.param_list
        with torch.no_grad():
            gs = [(p.grad.coalesce().values() if p.grad.is_sparse else p.grad) for p in params if p.grad is not None]
            for b, p in zip(before, params):
                b.sub_(p.detach())
            stats = [torch.linalg.vector_norm(g).double() for g in gs] + [torch.linalg.vector_norm(b).double() for b in before] \
                + [p.detach().sum().double() for p in params]
            values = torch.stack(stats).cpu().tolist() if stats else []
        k = len(gs)
        grad_norm = math.sqrt(sum(v * v for v in values[:k])) if k else None
        update_norm = math.sqrt(sum(v * v for v in values[k:k + len(before)]))
        sums = values[k + len(before):]
        if not all(math.isfinite(v) for v in sums):
            bad = [n for n, p in self.params.items() if not bool(torch.isfinite(p).all())]
            if bad:
                raise NonFinite(f"{', '.join(bad)} became NaN or infinite at step {self.step_count}")
        return {"grad_norm": grad_norm, "update_norm": update_norm}

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

    def record(self, probe: dict | None) -> None:
        """Add a history row for the current step."""
        probe = probe or {}
        self.history.add(self.step_count, self.loss_value(), probe.get("grad_norm"),
                         probe.get("update_norm"), self.lrs(), self.xy(),
                         probe.get("val_loss"), probe.get("val_accuracy"))

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
            catalogue.validate_hparams(self.spec.optimizer, merged)
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
            catalogue.validate_hparams(self.spec.optimizer, current)
        except ValueError as e:
            raise SpecError(str(e)) from None
        group[action.name] = action.value
        gs = self.group_specs[action.group]
        self.group_specs[action.group] = GroupSpec(gs.tensors, {**gs.hparams, action.name: action.value})

    def _do_loadoptimizer(self, action: LoadOptimizer) -> None:
        from . import files
        sd = self.blobs.get(action.blob) if action.blob else files.read_optimizer_state(action.path)
        if sd is None:
            raise files.LoadError(f"The session has no stored state_dict named {action.blob!r}")
        self.load_optimizer_state(sd)

    def load_optimizer_state(self, sd: dict) -> None:
        """Validate against this session, then load (validation failure changes nothing)."""
        from . import files
        files.check_optimizer_state(self, sd)
        # torch keeps tensors that already fit; a copy keeps the caller's dict (a stored blob) unchanged
        self.optimizer.load_state_dict(files._copy_state(sd))
        for gi, g in enumerate(self.optimizer.param_groups):
            gs = self.group_specs[gi]
            self.group_specs[gi] = GroupSpec(gs.tensors, {**gs.hparams, **{
                k: v for k, v in g.items() if k != "params" and self.optimizer.defaults.get(k, object()) != v}})

    def _do_loadparams(self, action: LoadParams) -> None:
        from . import files
        sd = self.blobs.get(action.blob) if action.blob else files.read_params(action.path)
        if sd is None:
            raise files.LoadError(f"The session has no stored parameters named {action.blob!r}")
        self.load_params(sd)

    def load_params(self, sd: dict) -> None:
        from . import files
        files.check_params(self, sd)
        with torch.no_grad():
            for n, v in sd.items():
                self.params[n].copy_(v)

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
        self.device = action.device

    def _do_reset(self, action: Reset) -> None:
        self._build()

    def with_spec(self, **changes) -> SessionSpec:
        return replace(self.spec, **changes)
