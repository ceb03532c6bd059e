"""``optimlab.watch``: stream a user's own optimizer to the app or ``optimlab listen``.

    w = optimlab.watch(optimizer, model=model)   # on every rank under torch.distributed
    for batch in data:
        loss = model(batch).loss
        loss.backward()
        w.report(loss=loss)          # optional: the loss of the step about to be taken
        optimizer.step()

Built on ``optimizer.register_step_post_hook``; ``optimlab.watch()`` with no optimizer
(``WatchFirst``) uses torch's global step hook and watches the first optimizer to step. After every step the hook (1) agrees with
the other ranks whether to hold there (pause/step from a listener), (2) when someone
listens and the frame budget allows it (at most ``max_hz`` frames a second and ``budget``
of the wall time), enqueues copies of the parameters, gradients and every state tensor
(``core.frames``), and (3) holds while paused. It never reads a device value (no
``.item()``, no sync) and never waits on the listener: the publisher thread builds and
sends frames, drops what a listener cannot take, and a listener that vanishes resumes the
run. With no one listening a step costs a counter and a look at two flags (no clock, no lock).

Under torch.distributed every rank calls ``watch``; rank ``rank`` (0 by default) publishes.
Every ``control_every`` steps the publishing rank broadcasts its pause decision on a
separate gloo group (host memory only, never the GPU stream), so every rank holds at the
same step instead of hanging in the next collective.
"""
from __future__ import annotations

import atexit
import os
import sys
import time
import weakref

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from . import channel
from .frames import Capture, LossBatch, grab, host_copy, plain_value
from .history import Budget

MAX_HZ = 10.0  # frames a second at most (a listener's eye needs no more)
BUDGET = 0.02  # share of the script's wall time the copies may take
LOSS_FLUSH = 512  # reported losses are stacked and copied this often even with no listener
HOLD_POLL = 1.0  # seconds between "still paused" broadcasts to the other ranks
# A frame carries the step's gradient norm, update norm and update/weight ratio per group (the
# curves' |grad|, |update| and ratio rows). The update needs the parameters before the step: when
# a frame is due, they are copied (on their device) and the frame is taken after the next step.
# Above this many parameter numbers the copy is not made (40 MB in float32: a run near its
# memory's end must not be pushed over it by a listener), nor after a copy failed for memory:
# frames then carry the gradient norm only.
UPDATE_LIMIT = 10_000_000


def _script_name() -> str:
    """The file name of the script this process runs (``train.py``), as the attach list shows
    it beside the run's name; empty for an interactive interpreter."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c") else "")
    return os.path.basename(path)


def _param_names(optimizer, model) -> dict[int, str]:
    """id(param) -> name: the model's named_parameters, else the optimizer's param_names."""
    names: dict[int, str] = {}
    if model is not None:
        for n, p in model.named_parameters(remove_duplicate=False):
            names.setdefault(id(p), n)
    for g in optimizer.param_groups:
        for p, n in zip(g["params"], g.get("param_names") or ()):
            names.setdefault(id(p), n)
    return names


def _dist():
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    return torch.distributed


def _check_options(max_hz: float = MAX_HZ, budget: float = BUDGET, control_every: int = 1) -> None:
    if not max_hz > 0:
        raise ValueError(f"Invalid max_hz: {max_hz}")
    if not 0 < budget <= 1:
        raise ValueError(f"Invalid budget: {budget}")
    if not (isinstance(control_every, int) and control_every >= 1):
        raise ValueError(f"Invalid control_every: {control_every}")


class Watch:
    """Watches one optimizer; ``close()`` (or the end of the process) removes the hook and sockets."""

    def __init__(self, optimizer, model=None, name: str | None = None, address: str | None = None,
                 rank: int | None = None, max_hz: float = MAX_HZ, budget: float = BUDGET,
                 control_every: int = 1):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"watch() needs a torch.optim.Optimizer, not {type(optimizer).__name__}")
        _check_options(max_hz, budget, control_every)
        self.optimizer = optimizer
        self.name = name or (type(model).__name__ if model is not None else type(optimizer).__name__)
        self.step = 0
        self._names = _param_names(optimizer, model)
        self._interval = 1.0 / max_hz
        self._budget = Budget(budget)
        self._next_time = 0.0
        self._before: list | None = None  # the parameters before the step whose frame is due
        self._no_update = False  # a copy failed for memory: no more (see UPDATE_LIMIT)
        self._pending_loss = None
        self._losses: list = []  # (step, loss tensor or float, {scalar: float})
        self._extra: dict = {}
        self._control_every = control_every
        d = _dist()
        self.world = d.get_world_size() if d else 1
        self.rank = d.get_rank() if d else 0
        self.source = 0 if rank is None else int(rank)
        if not 0 <= self.source < self.world:
            raise ValueError(f"Invalid rank: {rank} (the world has {self.world} ranks)")
        self._group = d.new_group(backend="gloo") if d and self.world > 1 else None  # collective: every rank
        self.publisher = None
        self.endpoint = None
        if self.rank == self.source:
            from .publisher import Publisher  # pyzmq is needed only where frames are sent
            self.endpoint = channel.endpoint_for(self.name if self.world == 1 else f"{self.name}-rank{self.rank}",
                                                 address)
            self.publisher = Publisher(self.endpoint, {"pid": os.getpid(), "name": self.name, "rank": self.rank,
                                                       "world": self.world, "started": time.time(),
                                                       "optimizer": type(optimizer).__name__,
                                                       "script": _script_name()},
                                       budget=self._budget)
            self.publisher.start()
        self._handle = optimizer.register_step_post_hook(self._post)
        ref = weakref.ref(self)
        self._atexit = lambda: (w := ref()) is not None and w.close()
        atexit.register(self._atexit)

    # ----- the script's side -----

    @property
    def address(self) -> str | None:
        """What a listener connects to (``optimlab listen ADDRESS``); None on ranks that do not publish."""
        return None if self.endpoint is None else str(self.endpoint.base)

    def report(self, loss=None, **scalars) -> None:
        """The loss (a tensor or a number) of the step about to be taken, and any other scalars
        (plain numbers). Nothing is read from the device here."""
        if loss is not None:
            self._pending_loss = loss.detach() if isinstance(loss, torch.Tensor) else float(loss)
        for k, v in scalars.items():
            if isinstance(v, torch.Tensor):
                raise TypeError(f"report({k}=...) takes a number; only loss may be a tensor")
            self._extra[k] = float(v)

    def close(self) -> None:
        """Stop watching: the hook is removed, the sockets closed, a paused script released."""
        if self._handle is None:
            return
        self._handle.remove()
        self._handle = None
        atexit.unregister(self._atexit)
        # the rank group is not kept to the interpreter's end: destroyed while Python finalizes,
        # after the script's destroy_process_group, gloo aborted the process about 1 exit in 10
        # ("terminate called without an active exception"; 0 in 30 since)
        self._group = None
        if self.publisher is not None:
            self.publisher.control.apply("resume")
            self.publisher.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----- inside optimizer.step -----

    def _post(self, optimizer, args, kwargs) -> None:
        self.step += 1
        if self._pending_loss is not None or self._extra:
            self._losses.append((self.step, self._pending_loss, self._extra))
            self._pending_loss = None
            if self._extra:
                self._extra = {}
        pub = self.publisher
        # one process, not paused (every step of most runs): no call, no lock
        hold = self._agree_hold() if self._group is not None or (pub is not None and pub.control.paused) else False
        if pub is not None:
            pub.step = self.step
            armed = self._before is not None
            now = time.perf_counter() if hold or armed or pub.listening else 0.0  # no clock while no one listens
            if hold or armed or (pub.listening and now >= self._next_time and self._budget.due(now)):
                if hold or armed or not self._arm():  # armed: the frame comes after the next step, with its update
                    if self._losses:  # first, in order: the curve must not lose a step
                        pub.offer_losses(self._loss_batch())
                    pub.offer(self._capture(paused=hold))
                    self._next_time = now + self._interval
                    if hold:
                        self._arm()  # a step from the pause shows its update too
                self._budget.charge(time.perf_counter() - now)
            elif len(self._losses) >= LOSS_FLUSH:
                pub.offer_losses(self._loss_batch())
        if hold:
            self._hold()

    def _agree_hold(self) -> bool:
        local = self.publisher.control.boundary() if self.publisher is not None else False
        if self._group is None or self.step % self._control_every:
            return local
        return self._broadcast(local)

    def _broadcast(self, flag: bool) -> bool:
        t = torch.tensor([1 if flag else 0], dtype=torch.int64)
        torch.distributed.broadcast(t, src=self.source, group=self._group)
        return bool(t[0])  # a CPU tensor: no device involved

    def _hold(self) -> None:
        """Block this step until released; other ranks follow the publisher's broadcasts."""
        ctl = self.publisher.control if self.publisher is not None else None
        if ctl is not None:
            ctl.held_at = self.step
        try:
            while True:
                released = ctl.wait(HOLD_POLL) if ctl is not None else False
                if self._group is None:
                    if released:
                        return
                    continue
                if not self._broadcast(not released):
                    return
        finally:
            if ctl is not None:
                ctl.held_at = None

    def _loss_batch(self) -> LossBatch:
        rows, self._losses = self._losses, []
        events: list = []
        tensors = [v for _, v, _ in rows if isinstance(v, torch.Tensor)]
        host = None
        if tensors:
            with torch.no_grad():
                flat = [t if t.dim() == 0 else t.reshape(()) for t in tensors]
                if len({(t.dtype, t.device) for t in flat}) == 1:  # one stack, one conversion (not 2 ops a loss)
                    stacked = torch.stack(flat).to(torch.float64)
                else:
                    stacked = torch.stack([t.to(torch.float64) for t in flat])
                host = host_copy(stacked, events)
        values = [None if isinstance(v, torch.Tensor) else v for _, v, _ in rows]
        return LossBatch([s for s, _, _ in rows], host, values, [e for _, _, e in rows], events)

    def _dense_params(self) -> list:
        return [p for g in self.optimizer.param_groups for p in g["params"] if not p.is_sparse]

    def _arm(self) -> bool:
        """Copy the parameters (on their device, no read) so that the next step's frame carries
        its update; False where that is not done (above UPDATE_LIMIT numbers)."""
        params = self._dense_params()
        if self._no_update or not params or sum(p.numel() for p in params) > UPDATE_LIMIT:
            return False
        try:
            with torch.no_grad():
                self._before = [p.detach().clone() for p in params]
        except RuntimeError:  # out of memory (torch.OutOfMemoryError): the script's step must not fail
            self._before = None
            self._no_update = True
            return False
        return True

    def _norms(self, events: list):
        """(host copy of [grad norm, update norm, ratio per group...], their series keys), the
        update ones only when the parameters before this step were copied (``_arm``). Computed on
        the device as the app's observer measures a step (``core.observer._norms_on_device``);
        nothing is read here."""
        from .observer import _norms_on_device
        before, self._before = self._before, None
        groups = [[p for p in g["params"] if not p.is_sparse] for g in self.optimizer.param_groups]
        params = [p for ps in groups for p in ps]
        grads = [p.grad for p in params if p.grad is not None and not p.grad.is_sparse]
        if before is not None and len(before) != len(params):  # a group was added meanwhile
            before = None
        try:
            with torch.no_grad():
                if before is not None:
                    detached = [p.detach() for p in params]
                    cur = _norms_on_device(torch._foreach_sub(detached, before), detached,
                                           [g.detach() for g in grads], [len(ps) for ps in groups])
                    cur.pop("max_abs", None)
                elif grads:
                    cur = {"grad_norm": torch.linalg.vector_norm(torch.stack(torch._foreach_norm(
                        [g.detach() for g in grads])))}
                else:
                    return None, ()
                cur = {k: v for k, v in cur.items() if v is not None}
                if not cur:
                    return None, ()
                values = torch.stack([v.double() for v in cur.values()])  # one device, or RuntimeError
                return host_copy(values, events), tuple(cur)
        except RuntimeError:  # parameters on several devices or of dtypes torch cannot combine
            return None, ()

    def _capture(self, paused: bool) -> Capture:
        opt = self.optimizer
        events: list = []
        first = next((p for g in opt.param_groups for p in g["params"]), None)
        cap = Capture(step=self.step, run=self.name, optimizer=type(opt).__name__,
                      device=str(first.device) if first is not None else "cpu", paused=paused, events=events)
        cap.norms, cap.norm_keys = self._norms(events)
        with torch.no_grad():
            index = 0
            for gi, g in enumerate(opt.param_groups):
                idx, names = [], []
                for p in g["params"]:
                    name = self._names.get(id(p), f"param{index}")
                    st = opt.state.get(p, {})
                    cap.tensors.append((name, index, gi, grab(p, paused, events),
                                        None if p.grad is None else grab(p.grad, paused, events),
                                        p.grad is not None and p.grad.is_sparse,
                                        {k: (grab(v, paused, events) if isinstance(v, torch.Tensor)
                                             else plain_value(v, events)) for k, v in st.items()}))
                    idx.append(index)
                    names.append(name)
                    index += 1
                hp = {k: plain_value(v, events) for k, v in g.items() if k not in ("params", "param_names")}
                cap.groups.append((gi, hp, tuple(idx), tuple(names)))
            cap.defaults = {k: plain_value(v, events) for k, v in opt.defaults.items()}
        return cap


class WatchFirst:
    """``watch()`` with no optimizer at hand: the first optimizer to step anywhere in the process
    is watched from that step on (torch's global ``register_optimizer_step_post_hook``), as if
    ``Watch(optimizer, **options)`` had been called just before it.

    A loss reported before that first step is handed on. The global hook stays registered (a
    check of one attribute per step of any optimizer) until ``close()``: torch iterates its
    global hooks while calling them, so the hook cannot remove itself.
    """

    def __init__(self, model=None, **options):
        _check_options(**{k: v for k, v in options.items() if k in ("max_hz", "budget", "control_every")})
        self._options = dict(model=model, **options)
        self.watch: Watch | None = None
        self._early: tuple | None = None  # report() before the first step
        self._closed = False
        self._handle = register_optimizer_step_post_hook(self._first)

    @property
    def address(self) -> str | None:
        return None if self.watch is None else self.watch.address

    @property
    def step(self) -> int:
        return 0 if self.watch is None else self.watch.step

    def report(self, loss=None, **scalars) -> None:
        if self.watch is not None:
            self.watch.report(loss, **scalars)
        elif not self._closed:
            self._early = (loss.detach() if isinstance(loss, torch.Tensor) else loss, scalars)

    def _first(self, optimizer, args, kwargs) -> None:
        if self.watch is not None or self._closed:
            return
        w = Watch(optimizer, **self._options)  # its own hook runs from the next step
        if self._early is not None:
            w.report(self._early[0], **self._early[1])
            self._early = None
        self.watch = w
        w._post(optimizer, args, kwargs)  # this step is its step 1

    def close(self) -> None:
        self._closed = True
        self._handle.remove()
        if self.watch is not None:
            self.watch.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
