"""The observer: watches an optimizer step by step through torch's own step hooks.

It records, for every step, the loss (when there is one) and the learning rates and,
as often as a small share of the run's time allows (every step on most problems, and
always while a breakpoint needs them), the gradient norm, the update norm ||Δp||, the
update/weight ratio ||Δp|| / ||p|| per group and whether every parameter is finite.
After each step it evaluates the breakpoints.

Nothing here waits on the device per step: measurements stay tensors on the
parameters' device and are read back together (``resolve``), at once on the CPU,
where reading is cheap, and every ``check_every`` steps (or before a snapshot) on a
GPU. A breakpoint found in such a batch names its step, and the session takes the run
back to it, so it stops exactly there anyway.

Because it works through ``register_step_pre_hook``/``register_step_post_hook``, the
same observer can watch an optimizer that lives in someone else's training loop.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import torch

from .breakpoints import DEFAULTS, Breakpoint, resolve_target, tensor_flag
from .history import Budget
from .series import SeriesSet

MEASURE_BUDGET = 0.02  # share of wall time spent measuring norms (every step when they cost less)
GPU_CHECK_EVERY = 32  # steps between readbacks on a GPU


@dataclass(frozen=True)
class Hit:
    """A breakpoint that held: the first step where it did, and its text."""

    step: int
    text: str
    detail: str = ""  # what happened, when the condition alone does not say it

    @property
    def message(self) -> str:
        return f"Paused at step {self.step:,}: {self.detail or self.text}"


class Observer:
    """Per-step series and breakpoints for one optimizer at a time."""

    def __init__(self, budget: float = MEASURE_BUDGET):
        self.series = SeriesSet()
        self.breakpoints: list[Breakpoint] = []
        self.recording = True  # off while the session replays steps that are already recorded
        self.force_next = False  # measure the next step whatever the budget (the last of a Step N)
        self.check_every = 1
        self._budget = Budget(budget)
        self._handles = []
        self._params: list[torch.Tensor] = []
        self._measuring = False
        self._before: list[torch.Tensor] | None = None
        self._cur: dict | None = None
        self._rows: list = []  # waiting to be read back (GPU)
        self._done: list = []  # read, waiting to be added to the series in bulk
        self._losses: deque = deque(maxlen=1)
        self._t0 = 0.0
        self._needs: frozenset = frozenset()
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
        on = [b for b in self.breakpoints if b.enabled]
        self._needs = frozenset().union(*(b.needs for b in on)) if on else frozenset()
        rising = [int(b.value) for b in on if b.kind == "loss" and b.op == "rising"]
        self._losses = deque(self._losses, maxlen=max(rising, default=0) + 1)

    def reset_budget(self) -> None:
        self._budget.reset()

    # ----- the hooks (inside optimizer.step) -----

    def _pre(self, optimizer, args, kwargs) -> None:
        if not self.recording:
            self._measuring = False
            return
        now = time.perf_counter()
        self._measuring = bool(self._needs) or self.force_next or self._budget.due(now)
        self.force_next = False
        if self._measuring:
            self._t0 = now
            with torch.no_grad():
                self._before = [p.detach().clone() for g in optimizer.param_groups for p in g["params"]]

    def _post(self, optimizer, args, kwargs) -> None:
        if not self._measuring:
            return
        with torch.no_grad():
            groups = [g["params"] for g in optimizer.param_groups]
            grads = [p.grad for ps in groups for p in ps if p.grad is not None]
            params = [p.detach() for ps in groups for p in ps]
            grads = [g.coalesce().values() if g.is_sparse else g for g in grads]
            d_norms = torch._foreach_norm(torch._foreach_sub(self._before, params))
            p_norms = torch._foreach_norm(params)
            cur = {"update_norm": torch.linalg.vector_norm(torch.stack(d_norms)),
                   "grad_norm": torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else None,
                   "finite": torch.isfinite(torch.stack(torch._foreach_norm(params, ord=math.inf))).all()}
            i = 0
            for gi, ps in enumerate(groups):
                if ps:
                    dn = torch.linalg.vector_norm(torch.stack(d_norms[i:i + len(ps)]))
                    pn = torch.linalg.vector_norm(torch.stack(p_norms[i:i + len(ps)]))
                    cur[f"update_ratio{gi}"] = dn / pn
                    i += len(ps)
        self._before = None
        self._cur = cur

    # ----- after each step (called by whoever steps) -----

    def end_step(self, step: int, loss, lrs, metrics: dict, engine=None) -> Hit | None:
        """Record ``step``; returns the first breakpoint that held, once it is known."""
        if not self.recording:
            return None
        cur, self._cur = (self._cur if self._measuring else None), None
        self._measuring = False
        tensor_flags = []
        for bp in self.breakpoints:
            if bp.enabled and bp.kind == "tensor" and engine is not None:
                name, which = resolve_target(bp.target, engine.params, lambda n: _state_keys(engine, n))
                flag = tensor_flag(engine.state_tensor(name, which), bp.op, bp.value)
                if flag is not None:
                    tensor_flags.append((bp, flag))
        xy = engine.xy() if cur is not None and engine is not None and engine.has_xy else None
        self._rows.append((step, loss, cur, lrs, metrics, xy, tensor_flags))
        if cur is not None:
            self._budget.charge(time.perf_counter() - self._t0)
        if len(self._rows) >= self.check_every:
            return self.resolve()
        return None

    def resolve(self) -> Hit | None:
        """Read the pending measurements (one transfer) and return the first breakpoint that
        held, if any. Rows after a hit are dropped: for the user they never happened."""
        rows, self._rows = self._rows, []
        if not rows:
            return None
        tensors = []
        for _, loss, cur, _, _, _, flags in rows:
            if isinstance(loss, torch.Tensor):
                tensors.append(loss)
            if cur:
                tensors.extend(v for v in cur.values() if isinstance(v, torch.Tensor))
            tensors.extend(f for _, f in flags)
        values = iter(_read(tensors))
        for step, loss, cur, lrs, metrics, xy, flags in rows:
            got = {"loss": next(values) if isinstance(loss, torch.Tensor) else loss}
            if cur:
                for k, v in cur.items():
                    got[k] = next(values) if isinstance(v, torch.Tensor) else v
            held = {bp: bool(next(values)) for bp, _ in flags}
            self._losses.append(got["loss"])
            hit = None
            for bp in self.breakpoints:
                if bp.enabled and (held.get(bp) if bp.kind == "tensor" else self._holds(bp, step, got)):
                    detail = f"the loss became {got['loss']}" if bp.kind == "loss" and bp.op == "nonfinite" else ""
                    hit = Hit(step, bp.text, detail)
                    break
            finite = got.pop("finite", None)
            if finite is not None and not finite and hit is None and any(
                    b.enabled and b.kind == "params" for b in self.breakpoints):
                hit = Hit(step, "params nonfinite")
            for g, lr in enumerate(lrs):
                got[f"lr{g}"] = lr
            got.update(metrics)
            self._done.append((step, got, xy))
            if hit is not None:
                return hit
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
            if bp.op == ">":
                return x > v
            return self._rising(int(v))
        key = f"update_ratio{bp.group}" if kind == "update_ratio" else kind
        x = got.get(key)
        return kind != "params" and x is not None and x > v

    def _rising(self, n: int) -> bool:
        last = list(self._losses)[-(n + 1):]
        return len(last) == n + 1 and all(a is not None and b is not None and b > a for a, b in zip(last, last[1:]))

    def flush_series(self) -> None:
        """Add what was read to the series (in bulk: cheaper than one step at a time)."""
        done, self._done = self._done, []
        if done:
            self.series.add_many([d[0] for d in done], [d[1] for d in done])
            for step, _, xy in done:
                if xy is not None:
                    self.series.add_xy(step, *xy)

    def pending(self) -> int:
        return len(self._rows)


def _state_keys(engine, name: str) -> set[str]:
    st = engine.optimizer.state.get(engine.params[name], {})
    return {k for k, v in st.items() if isinstance(v, torch.Tensor)}


def _read(tensors) -> list[float]:
    """Every tensor's value as a Python float: one transfer for a GPU's, none for the CPU's."""
    if not tensors:
        return []
    if all(t.device.type == "cpu" for t in tensors):
        return [float(t) for t in tensors]
    flat = torch.stack([t.detach().reshape(()).to(torch.float64) for t in tensors])
    return flat.cpu().tolist()
