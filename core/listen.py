"""The listening side: frames from a watched script, and pause/step/resume sent to it.

``Listener`` owns its two sockets on one background thread (zmq sockets are not
thread-safe): frames arrive on a SUB socket with CONFLATE (only the newest frame is kept,
so a slow reader never makes a queue), and control requests from any thread travel
through a queue to a DEALER socket, their answers coming back as futures. ``latest()``
never blocks: the app polls it as it polls its own runner.

``optimlab listen [ADDRESS] [--frames N] [--json]`` prints one line per frame.
"""
from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import Future

import zmq

from . import channel, wire
from .snapshot import ArrayView, Snapshot

POLL_MS = 20
REPLY_SECONDS = 5.0


class Listener:
    """Connected to one watched script (``address``: its name, its path, or the newest running)."""

    def __init__(self, address: str | None = None):
        self.endpoint = channel.resolve(address)
        self._ctx = zmq.Context()
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.CONFLATE, 1)
        self._sub.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._ctl = self._ctx.socket(zmq.DEALER)
        self._ctl.setsockopt(zmq.LINGER, 0)
        self._ctl.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
        self._sub.connect(self.endpoint.frames)
        self._ctl.connect(self.endpoint.control)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._latest: Snapshot | None = None
        self._count = 0
        self._requests: queue.Queue = queue.Queue()
        self._waiting: list[Future] = []  # answered in order (one DEALER, one peer)
        self.error: str | None = None  # the last frame that could not be read, in one sentence
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optimlab-listener", daemon=True)
        self._thread.start()

    # ----- any thread -----

    def latest(self) -> Snapshot | None:
        with self._lock:
            return self._latest

    @property
    def frames_received(self) -> int:
        return self._count

    def next_frame(self, timeout: float | None = None, after: int | None = None) -> Snapshot | None:
        """Wait for a frame newer than the ``after``-th received (default: the latest now); None on timeout."""
        with self._cond:
            seen = self._count if after is None else after
            self._cond.wait_for(lambda: self._count > seen, timeout=timeout)
            return self._latest if self._count > seen else None

    def request(self, op: str, **args) -> Future:
        fut: Future = Future()
        self._requests.put((fut, wire.encode({"op": op, **args})))
        return fut

    def pause(self) -> dict:
        return self._answer(self.request("pause"))

    def resume(self) -> dict:
        return self._answer(self.request("resume"))

    def step(self, n: int = 1) -> dict:
        return self._answer(self.request("step", n=n))

    def status(self) -> dict:
        return self._answer(self.request("status"))

    def _answer(self, fut: Future) -> dict:
        try:
            reply = fut.result(REPLY_SECONDS)
        except TimeoutError:
            raise channel.ChannelError(f"{self.endpoint.name} did not answer within {REPLY_SECONDS:g} s "
                                       "(has the script ended?)") from None
        if not reply.get("ok"):
            raise channel.ChannelError(f"{self.endpoint.name} refused the request: {reply.get('error')}")
        return reply

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        for s in (self._sub, self._ctl):
            s.close(0)
        self._ctx.term()
        for fut in self._waiting:
            fut.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----- the socket thread -----

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sub, zmq.POLLIN)
        poller.register(self._ctl, zmq.POLLIN)
        while not self._stop.is_set():
            while True:
                try:
                    fut, data = self._requests.get_nowait()
                except queue.Empty:
                    break
                self._waiting.append(fut)
                self._ctl.send(data)
            events = dict(poller.poll(POLL_MS))
            if self._sub in events:
                self._frame()
            if self._ctl in events:
                self._reply()

    def _frame(self) -> None:
        try:
            data = self._sub.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        try:
            frame = wire.decode(data)
            if not isinstance(frame, Snapshot):
                raise wire.WireError("a message that is not a frame")
        except wire.WireError as e:
            self.error = f"A frame from {self.endpoint.name} was refused: {e}"
            return
        with self._cond:
            self._latest = frame
            self._count += 1
            self._cond.notify_all()

    def _reply(self) -> None:
        try:
            data = self._ctl.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        try:
            reply = wire.decode(data)
        except wire.WireError as e:
            reply = {"ok": False, "error": str(e)}
        if self._waiting:
            self._waiting.pop(0).set_result(reply if isinstance(reply, dict) else {"ok": False, "error": "bad reply"})


def frame_norms(f: Snapshot) -> dict:
    """The gradient norm, update norm and update/weight ratio per group measured at the frame's
    step ({} when its curves do not reach that step: a running frame's may lag)."""
    h = f.history
    if h is None or not len(h.step) or int(h.step[-1]) != f.step:
        return {}

    def num(col):
        x = float(col[-1]) if col is not None and len(col) else float("nan")
        return x if x == x else None
    out = {"grad_norm": num(h.grad_norm), "update_norm": num(h.update_norm),
           "update_ratio": [num(r) for r in (h.update_ratio or ())]}
    return out if out["grad_norm"] is not None or out["update_norm"] is not None else {}


def frame_summary(f: Snapshot) -> dict:
    """One frame as the JSON line ``optimlab listen --json`` prints."""
    def shape(v):
        return list(v.shape) if isinstance(v, ArrayView) else v
    norms = frame_norms(f)
    return {"run": f.run_id, "step": f.step, "loss": f.loss, "optimizer": f.optimizer, "device": f.device,
            "paused": not f.running,
            "lr": [g.hparams.get("lr") for g in f.groups],
            "grad_norm": norms.get("grad_norm"), "update_norm": norms.get("update_norm"),
            "update_ratio": norms.get("update_ratio"),
            "tensors": {t.name: {"shape": list(t.value.shape), "dtype": t.value.dtype,
                                 "norm": t.value.norm, "grad": None if t.grad is None else list(t.grad.shape),
                                 "state": {k: shape(v) for k, v in t.state.items()}} for t in f.tensors}}


def frame_line(f: Snapshot) -> str:
    loss = "" if f.loss is None else f" loss {f.loss:.6g}"
    n = frame_norms(f)
    norms = "".join(f"  {label} {n[k]:.4g}" for k, label in (("grad_norm", "|grad|"), ("update_norm", "|update|"))
                    if n.get(k) is not None)
    state = sorted({k for t in f.tensors for k in t.state})
    return (f"step {f.step:,}{loss}{norms}  {f.optimizer}  {len(f.tensors)} tensors  state: {', '.join(state) or '-'}"
            + ("  (paused)" if not f.running else ""))


def listen(address: str | None = None, frames: int = 0, as_json: bool = False, timeout: float = 0.0,
           out=None) -> int:
    """Print frames as they come (``frames`` of them, 0 = until interrupted); returns the exit status."""
    import sys
    import time
    out = out if out is not None else sys.stdout
    with Listener(address) as lst:
        deadline = time.monotonic() + timeout if timeout else None
        printed, seen = 0, 0
        while not frames or printed < frames:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                print(f"optimlab: no frame from {lst.endpoint.name} within {timeout:g} s", file=sys.stderr)
                return 124
            f = lst.next_frame(timeout=min(left, 0.5) if left is not None else 0.5, after=seen)
            if f is None:
                continue
            seen = lst.frames_received
            print(json.dumps(frame_summary(f)) if as_json else frame_line(f), file=out, flush=True)
            printed += 1
    return 0
