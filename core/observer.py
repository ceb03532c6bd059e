"""The observer: watches an optimizer step by step through torch's own step hooks.

It records, for every step, the loss (when there is one) and the learning rates and,
as often as a small share of the run's time allows (every step on most problems, and
always while a breakpoint needs them), the gradient norm, the update norm ||Δp||, the
update/weight ratio ||Δp|| / ||p|| per group and whether every parameter is finite.
After each step it evaluates the breakpoints.

Nothing here waits on the device per step: on a GPU the step's values stay tensors on
the device and are read back together every ``check_every`` steps (or before a
snapshot) in one transfer; a breakpoint found in such a batch names its step, and the
session takes the run back to it, so it stops exactly there anyway. On the CPU, where
reading is cheap, values are read at once and the breakpoints checked at every step.

The per-step path is kept short (a step of a tiny problem takes 15 µs): steps with
nothing but a loss go into two flat lists, learning rates are recorded when they can
change (with a scheduler, every step; else once per flush, for the steps since), and
everything becomes series in bulk at a flush.

Because it works through ``register_step_pre_hook``/``register_step_post_hook``, the
same observer can watch an optimizer that lives in someone else's training loop.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from . import distributions
from .breakpoints import DEFAULTS, Breakpoint, resolve_target, tensor_flag
from .distributions import Distributions
from .history import Budget
from .observe import state_items
from .series import SeriesSet

MEASURE_BUDGET = 0.01  # share of wall time spent measuring norms and histograms (every step when they cost less)
GPU_CHECK_EVERY = 32  # steps between readbacks on a GPU
MEASURE_AT_LEAST_EVERY = 64  # a floor under the time budget: curves never thinner than this, on any machine
FLOOR_DENSITY = 16  # early in a run the floor is closer: every step // 16 steps (see floor_every)
# ... and it yields while measuring has taken more than FLOOR_ALLOWANCE seconds + FLOOR_SHARE of the time
FLOOR_ALLOWANCE = 0.05
FLOOR_SHARE = 0.02


def floor_every(step: int) -> int:
    """The floor's spacing at ``step``: a short run's norm curves get points too (every step
    for the first 16, then about 11 a doubling: some 55 over 200 steps, where a floor of 64
    alone left 3 and a comparison's budget, split between its runs, little more), up to every
    ``MEASURE_AT_LEAST_EVERY`` steps from step 1,024 on. The early points are about 80
    measurements a branch: some 30-50 ms on small problems, which the time budget then pays
    back; where they would cost more, the floor yields (``Observer._floor_due``)."""
    return max(1, min(MEASURE_AT_LEAST_EVERY, step // FLOOR_DENSITY))


@dataclass(frozen=True)
class Hit:
    """A breakpoint that held: the first step where it did, and its text."""

    step: int
    text: str
    detail: str = ""  # what happened, when the condition alone does not say it

    @property
    def message(self) -> str:
        return f"Paused at step {self.step:,}: {self.detail or self.text}"


def floor_allowed(budget: Budget, now: float, step: int) -> bool:
    """Whether measuring so far (``budget.spent``) leaves room for the floor's point at ``step``
    (see floor_wait)."""
    return floor_wait(budget, now, step) <= 0


def floor_wait(budget: Budget, now: float, step: int) -> float:
    """Seconds until the floor may measure again (0 or less: it may now): while measuring has
    taken more than FLOOR_SHARE of the time, plus FLOOR_ALLOWANCE for the early points (before
    step 1,024, where they are closer than one in 64). The allowance is not for the later floor:
    a Run pressed late in a run spent it anew on points one in 64 steps apart, 50 ms of a 0.75 s
    run of a 2x2 tensor. A budget shared with other runs (a comparison's: a smaller fraction,
    its clock running while the others step too) gets the same share of the time, and the whole
    allowance (each run has its early points to measure).

    Past the early points, what they cost (up to the allowance) stays paid for: counted against
    the later floor, it had held a run's curves without a point for seconds after step 1,024 (a
    comparison's runs, each with half the share: 30 ms of early points waited 3 s, the last point
    at step 984 of a 3-second run). A budget reset past them (a Run pressed late) has none."""
    share = min(1.0, budget.fraction / MEASURE_BUDGET)
    if share <= 0:
        return math.inf
    if floor_every(step) < MEASURE_AT_LEAST_EVERY:
        allowance = FLOOR_ALLOWANCE
        budget.early = min(budget.spent, FLOOR_ALLOWANCE)  # what the early points took so far
    else:
        allowance = budget.early
    return (budget.spent - allowance) / (share * FLOOR_SHARE) - (now - budget.start)


class Observer:
    """Per-step series and breakpoints for one optimizer at a time."""

    def __init__(self, budget: float = MEASURE_BUDGET):
        self.series = SeriesSet()
        self.breakpoints: list[Breakpoint] = []
        self.recording = True  # off while the session replays steps that are already recorded
        self._skip = 0  # the next steps known to be unmeasured (see _plan): _pre's fast path
        self._force = False
        self.lr_each_step = False  # a scheduler changes the lr between steps: record it with each
        self.dists = Distributions()  # histograms over time (on measured steps), by (param index, what)
        self.histograms = True
        self.check_every = 1
        self._budget = Budget(budget)
        self._unmeasured = 0  # steps since the last measured one
        self._step = 0  # the last step ended (the floor's spacing grows with it)
        self._checked = (0.0, 0)  # (time, _unmeasured) at the last look at the clock
        self._handles = []
        self._measuring = False
        self._hist_now = False
        self._before: list[torch.Tensor] | None = None
        self._cur: dict | None = None
        self._steps: list[int] = []  # read: steps and their losses (the common case)
        self._loss: list = []
        self._rows: list = []  # read: steps with more (measurements, metrics, lrs, the path)
        self._raw: list = []  # not read yet (GPU): (step, loss, cur, lrs, metrics, xy, tensor flags)
        self._lr_from = 1  # first step whose lr is not recorded yet (no scheduler)
        self._losses: deque = deque(maxlen=1)
        self._cost = 0.0  # seconds the current measurement took so far (its hooks' share)
        self._needs: frozenset = frozenset()
        self._on: list[Breakpoint] = []
        self._scalar: list[Breakpoint] = []
        self._step_bps = False
        self._simple = True
        self._rising_on = False
        self.set_breakpoints(DEFAULTS)

    # ----- wiring -----

    def attach(self, optimizer) -> None:
        """Watch ``optimizer`` (a new one replaces the old: rebuilds make new optimizers)."""
        self.detach()
        self._handles = [optimizer.register_step_pre_hook(self._pre), optimizer.register_step_post_hook(self._post)]
        first = next((p for g in optimizer.param_groups for p in g["params"]), None)
        self.check_every = 1 if first is None or first.device.type == "cpu" else GPU_CHECK_EVERY

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def set_breakpoints(self, bps) -> None:
        self.breakpoints = list(bps)
        self._on = [b for b in self.breakpoints if b.enabled]
        self._needs = frozenset().union(*(b.needs for b in self._on)) if self._on else frozenset()
        self._scalar = [b for b in self._on if b.kind in ("loss", "step")]
        self._step_bps = any(b.kind == "step" for b in self._on)
        self._simple = not self._needs and not any(b.kind == "tensor" for b in self._on)
        self._skip = 0
        rising = [int(b.value) for b in self._on if b.kind == "loss" and b.op == "rising"]
        self._rising_on = bool(rising)
        self._losses = deque(self._losses, maxlen=max(rising, default=0) + 1)

    def reset_budget(self) -> None:
        self._budget.reset()
        self._skip = 0

    @property
    def force_next(self) -> bool:
        """Measure the next step whatever the budget (the last of a Step N)."""
        return self._force

    @force_next.setter
    def force_next(self, on: bool) -> None:
        self._force = on
        if on:
            self._skip = 0

    @property
    def every_step(self) -> bool:
        """Norms measured at every step whatever they cost (the user asked; the run slows)."""
        return self._budget.fraction >= 1.0

    @every_step.setter
    def every_step(self, on: bool) -> None:
        self._budget.fraction = 1.0 if on else MEASURE_BUDGET
        self._skip = 0

    # ----- the hooks (inside optimizer.step) -----

    def _pre(self, optimizer, args, kwargs) -> None:
        if self._skip:  # known unmeasured (see _plan): a tiny problem's step takes tens of µs
            self._skip -= 1
            self._unmeasured += 1
            self._measuring = False
            return
        if not self.recording:
            self._measuring = False
            return
        now = time.perf_counter()
        chosen = self._force or self.every_step or self._budget.due(now)
        self._measuring = chosen or bool(self._needs) or self._floor_due(now)
        # histograms cost most of a measurement on small problems: not on steps measured only for
        # the floor or for a breakpoint's norms (distributions are bucketed over steps anyway)
        self._hist_now = self.histograms and chosen
        self._force = False
        if not self._measuring:
            self._unmeasured += 1
            self._plan(now)
        else:
            self._unmeasured = 0
            with torch.no_grad():
                self._before = [p.detach().clone() for g in optimizer.param_groups for p in g["params"]]
            self._cost = time.perf_counter() - now  # the measurement's own time (not the step's)

    def _floor_due(self, now: float) -> bool:
        """The floor: a point every ``floor_every`` steps, but not while measuring (since the run
        or Step N began) has taken more than FLOOR_SHARE of the time (plus FLOOR_ALLOWANCE early).
        A 2x2 tensor's step takes 0.1 ms and a measurement 0.4 ms: a floor of 64 alone made
        measuring 5% of such a run, five times its budget (its curves now get a point every few
        hundred steps); a 4096x4096 Adam step takes 0.13 s and a measurement about half that:
        the early floor alone would measure 45 of its first 100 steps."""
        return (self._unmeasured >= floor_every(self._step + 1) - 1
                and floor_allowed(self._budget, now, self._step + 1))

    def _plan(self, now: float) -> None:
        """Skip the clock for steps that cannot be measured anyway: half the steps until the
        budget allows the next measurement (at the steps' recent pace), never past the floor.
        Whatever could want a step measured sooner (force_next, every_step, breakpoints, a
        budget reset) sets ``_skip`` back to 0."""
        t, u = self._checked
        self._checked = (now, self._unmeasured)
        steps = self._unmeasured - u
        if self._needs or steps <= 0 or now <= t:
            return
        b = self._budget
        rate = steps / (now - t)
        elapsed = now - b.start
        wait = b.spent / b.fraction - elapsed if b.fraction > 0 else math.inf
        ahead = int(0.5 * wait * rate) if math.isfinite(wait) else MEASURE_AT_LEAST_EVERY
        to_floor = max(floor_every(self._step + 1) - 1 - self._unmeasured,  # the floor waits while
                       int(0.5 * min(floor_wait(b, now, self._step + 1) * rate, 2 ** 62)))  # over its share
        self._skip = max(0, min(ahead, to_floor))

    def _post(self, optimizer, args, kwargs) -> None:
        if not self._measuring:
            return
        t0 = time.perf_counter()
        with torch.no_grad():
            groups = [g["params"] for g in optimizer.param_groups]
            grads = [p.grad for ps in groups for p in ps if p.grad is not None]
            grads = [g.coalesce().values() if g.is_sparse else g for g in grads]
            params = [p.detach() for ps in groups for p in ps]
            diffs = torch._foreach_sub(self._before, params)
            sizes = [len(ps) for ps in groups]
            if self.check_every == 1 and all(p.device.type == "cpu" for p in params):
                cur = _norms_on_host(diffs, params, grads, sizes)
            else:
                cur = _norms_on_device(diffs, params, grads, sizes)
            if self._hist_now:
                cur["hist"] = _histograms(optimizer, [p for ps in groups for p in ps])  # not detached: .grad, state
        self._before = None
        self._cur = cur
        self._cost += time.perf_counter() - t0

    # ----- after each step (called by whoever steps) -----

    def end_step(self, step: int, loss, metrics: dict, engine=None) -> Hit | None:
        """Record ``step``; returns the first breakpoint that held, once it is known."""
        self._step = step
        if not self.recording:
            return None
        t0 = time.perf_counter() if self._measuring else 0.0
        if self._measuring:
            cur, self._cur, self._measuring = self._cur, None, False
            if cur is not None and "hist" in cur:
                keys, h = cur["hist"]
                cur["hist"] = (step, keys, h)
        else:
            cur = None
            if self._simple and self.check_every == 1 and not metrics and not self.lr_each_step:
                # the common case on the CPU: a step and its loss
                lv = None if loss is None else float(loss)
                self._steps.append(step)
                self._loss.append(lv)
                if self._rising_on:
                    self._losses.append(lv)
                if lv is None and not self._step_bps:
                    return None  # the loss conditions need a loss (manual gradients have none)
                return self._scalar_hit(step, lv) if self._scalar else None
        lrs = engine.lrs() if self.lr_each_step and engine is not None else None
        xy = engine.xy_tensor() if cur is not None and engine is not None and engine.has_xy else None
        flags = []
        for bp in self._on:
            if bp.kind == "tensor" and engine is not None:
                name, which = resolve_target(bp.target, engine.params, lambda n: _state_keys(engine, n))
                flag = tensor_flag(engine.state_tensor(name, which), bp.op, bp.value)
                if flag is not None:
                    flags.append((bp, flag))
        self._raw.append((step, loss, cur, lrs, metrics, xy, flags))
        hit = self.resolve() if len(self._raw) >= self.check_every else None
        if cur is not None:  # reading the values back and storing the histograms belong to the measurement
            self._budget.charge(self._cost + time.perf_counter() - t0)
        return hit

    def resolve(self) -> Hit | None:
        """Read the pending measurements (one transfer) and return the first breakpoint that
        held, if any. Rows after a hit are dropped: for the user they never happened."""
        raw, self._raw = self._raw, []
        if not raw:
            return None
        hists = [cur.pop("hist") for _, _, cur, *_ in raw if cur and "hist" in cur]
        hit = self._resolve(raw)
        if hists:
            self._add_histograms([h for h in hists if hit is None or h[0] <= hit.step])
        return hit

    def _resolve(self, raw) -> Hit | None:
        tensors = []
        for _, loss, cur, _, _, xy, flags in raw:
            if isinstance(loss, torch.Tensor):
                tensors.append(loss)
            if cur:
                tensors.extend(v for v in cur.values() if isinstance(v, torch.Tensor))
            tensors.extend(f for _, f in flags)
            if xy is not None:
                tensors.extend((xy[0], xy[1]))
        values = iter(_read(tensors))
        for step, loss, cur, lrs, metrics, xy, flags in raw:
            got = {"loss": next(values) if isinstance(loss, torch.Tensor) else loss}
            if cur:
                for k, v in cur.items():
                    got[k] = next(values) if isinstance(v, torch.Tensor) else v
            held = {bp: bool(next(values)) for bp, _ in flags}
            if xy is not None:
                xy = (next(values), next(values))
            if self._rising_on:
                self._losses.append(got["loss"])
            hit = self._first_hit(step, got, held)
            got.pop("max_abs", None)
            if lrs is not None:
                for g, lr in enumerate(lrs):
                    got[f"lr{g}"] = lr
            got.update(metrics)
            self._rows.append((step, got, xy))
            if hit is not None:
                return hit
        return None

    def _add_histograms(self, hists) -> None:
        """Every measured step's histograms, read back in one transfer."""
        flat = torch.cat([h.reshape(-1) for _, _, h in hists])
        values = flat.cpu().numpy() if flat.device.type != "cpu" else flat.numpy()
        at = 0
        for step, keys, h in hists:
            n = h.numel()
            block = values[at:at + n].reshape(h.shape)
            at += n
            self.dists.add(step, dict(zip(keys, block)))

    def _scalar_hit(self, step: int, lv) -> Hit | None:
        """The loss and step conditions, for a step that measured nothing else."""
        for bp in self._scalar:
            if bp.kind == "step":
                if step == bp.value:
                    return Hit(step, bp.text)
            elif lv is not None:
                if bp.op == "nonfinite":
                    if not math.isfinite(lv):
                        return Hit(step, bp.text, f"the loss became {lv}")
                elif _compare(lv, bp.op, bp.value) if bp.op in ("<", ">") else self._rising(int(bp.value)):
                    return Hit(step, bp.text)
        return None

    def _first_hit(self, step: int, got: dict, held: dict) -> Hit | None:
        for bp in self._on:
            if held.get(bp) if bp.kind == "tensor" else self._holds(bp, step, got):
                detail = f"the loss became {got['loss']}" if bp.kind == "loss" and bp.op == "nonfinite" else ""
                return Hit(step, bp.text, detail)
        return None

    def _holds(self, bp: Breakpoint, step: int, got: dict) -> bool:
        kind, v = bp.kind, bp.value
        if kind == "step":
            return step == int(v)
        if kind == "loss":
            x = got.get("loss")
            if x is None:
                return False
            if bp.op == "nonfinite":
                return not math.isfinite(x)
            if bp.op in ("<", ">"):
                return _compare(x, bp.op, v)
            return self._rising(int(v))
        if kind == "params":
            x = got.get("max_abs")
            return x is not None and not math.isfinite(x)
        key = f"update_ratio{bp.group}" if kind == "update_ratio" else kind
        x = got.get(key)
        return x is not None and _compare(x, bp.op, v)

    def _rising(self, n: int) -> bool:
        last = list(self._losses)[-(n + 1):]
        return len(last) == n + 1 and all(a is not None and b is not None and b > a for a, b in zip(last, last[1:]))

    def flush_series(self, lrs=None, upto: int | None = None) -> None:
        """Add what was read to the series, in bulk. ``lrs``: the learning rates now, recorded
        for every step since the last flush when no scheduler changes them between steps."""
        s = self.series
        if self._steps:
            s.add_columns(self._steps, {"loss": self._loss})
            self._steps, self._loss = [], []
        if self._rows:
            rows, self._rows = self._rows, []
            s.add_many([r[0] for r in rows], [r[1] for r in rows])
            for step, _, xy in rows:
                if xy is not None:
                    s.add_xy(step, *xy)
        if lrs is not None and not self.lr_each_step and upto is not None and upto >= self._lr_from:
            s.add_constant(self._lr_from, upto, {f"lr{g}": lr for g, lr in enumerate(lrs)})
        if upto is not None:
            self._lr_from = upto + 1

    def pending(self) -> int:
        return len(self._raw)


def _compare(x: float, op: str, v: float) -> bool:
    """``x > v`` or ``x < v``; a NaN meets neither (the nonfinite conditions are for it)."""
    return x > v if op == ">" else x < v


def _norms_on_device(diffs, params, grads, sizes) -> dict:
    """The step's measurements as 0-d tensors on the device (read back later, in a batch)."""
    d_norms = torch._foreach_norm(diffs)
    p_norms = torch._foreach_norm(params)
    update_norm = torch.linalg.vector_norm(torch.stack(d_norms))
    # the largest |p| is NaN or infinite exactly when a parameter is (max propagates NaN)
    cur = {"update_norm": update_norm,
           "grad_norm": torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else None,
           "max_abs": torch.stack(torch._foreach_norm(params, ord=math.inf)).max()}
    one = sum(1 for n in sizes if n) == 1
    i = 0
    for gi, n in enumerate(sizes):
        if n:  # one group: its ||Δp|| is the update norm, the same expression
            dn = update_norm if one else torch.linalg.vector_norm(torch.stack(d_norms[i:i + n]))
            cur[f"update_ratio{gi}"] = dn / torch.linalg.vector_norm(torch.stack(p_norms[i:i + n]))
            i += n
    return cur


def _norms_on_host(diffs, params, grads, sizes) -> dict:
    """The same measurements as ``_norms_on_device``, for CPU tensors read at once: each tensor's
    norm by torch (two foreach calls, one read), their combinations here in float64, rounded to
    float32 as torch's float32 results are (on a tiny problem the dozen extra torch ops of the
    device path were most of a measured step's ~250 µs)."""
    k = len(params)
    t = torch.stack([*torch._foreach_norm([*diffs, *params, *grads]), *torch._foreach_norm(params, ord=math.inf)])
    n = t.tolist()
    d, p, g, inf = n[:k], n[k:2 * k], n[2 * k:len(n) - k], n[len(n) - k:]
    rounded = (lambda x: x) if t.dtype == torch.float64 else (lambda x: float(np.float32(x)))

    def total(xs) -> float:
        return rounded(math.sqrt(math.fsum(x * x for x in xs)))
    update_norm = total(d)
    # torch's max propagates a NaN; Python's max() skips one met after a number
    cur = {"update_norm": update_norm, "grad_norm": total(g) if grads else None,
           "max_abs": math.nan if any(x != x for x in inf) else max(inf)}
    one = sum(1 for m in sizes if m) == 1
    i = 0
    for gi, m in enumerate(sizes):
        if m:
            dn = update_norm if one else total(d[i:i + m])
            pn = total(p[i:i + m])
            cur[f"update_ratio{gi}"] = rounded(dn / pn) if pn else (math.nan if dn == 0 else math.inf)
            i += m
    return cur


def _histograms(optimizer, params) -> tuple[list, torch.Tensor]:
    """Keys ((param index, "value" | "grad" | state key)) and their counts, stacked, on the device."""
    keys, ts = [], []
    for i, p in enumerate(params):
        keys.append((i, "value"))
        ts.append(p)
        if p.grad is not None:
            keys.append((i, "grad"))
            ts.append(p.grad)
        for k, v in state_items(optimizer.state.get(p, {})):
            if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel() > 1:
                keys.append((i, k))
                ts.append(v)
    return keys, distributions.counts_many(ts)


def _state_keys(engine, name: str) -> set[str]:
    st = engine.optimizer.state.get(engine.params[name], {})
    return {k for k, v in state_items(st) if isinstance(v, torch.Tensor)}


def _read(tensors) -> list[float]:
    """Every tensor's value as a Python float: one transfer for a GPU's, none for the CPU's."""
    if not tensors:
        return []
    if all(t.device.type == "cpu" for t in tensors):
        return [float(t) for t in tensors]
    flat = torch.stack([t.detach().reshape(()).to(torch.float64) for t in tensors])
    return flat.cpu().tolist()
