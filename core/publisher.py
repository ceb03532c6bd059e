"""The watched script's background thread: builds frames from captured copies and publishes them.

The training thread only hands over a capture (copies it made inside the optimizer's step
hook) and never waits on this thread: the hand-over slot holds the latest capture, a newer
one replaces an unsent one, and a frame a slow or vanished listener cannot take is dropped
(zmq's high-water mark of 2, sends that never block). Frames go out on an XPUB socket, so
this thread also learns whether anyone listens (the training thread captures nothing while
no one does), and control requests (pause, step, resume) arrive on a ROUTER socket.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections import deque

import zmq

from . import channel, wire
from .frames import build_frame
from .series import SeriesSet

POLL_MS = 20


class Control:
    """Pause/step/resume as the training thread sees it (shared with the publisher thread)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.paused = False
        self.budget = 0  # steps allowed before holding again (a "step N" while paused)
        self.held_at: int | None = None  # the step the script is holding at, if it is

    def boundary(self) -> bool:
        """Called after each step: hold here?"""
        if not self.paused:  # the common case, without the lock (a pause is seen at the next step)
            return False
        with self.cond:
            if not self.paused:
                return False
            if self.budget > 0:
                self.budget -= 1
                return self.budget == 0
            return True

    def released(self) -> bool:
        with self.cond:
            return not self.paused or self.budget > 0

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a release; True when released."""
        with self.cond:
            self.cond.wait_for(lambda: not self.paused or self.budget > 0, timeout=seconds)
            return not self.paused or self.budget > 0

    def apply(self, op: str, n: int = 1) -> None:
        with self.cond:
            if op == "pause":
                self.paused, self.budget = True, 0
            elif op == "resume":
                self.paused, self.budget = False, 0
            elif op == "step":
                self.paused, self.budget = True, max(1, int(n))
            self.cond.notify_all()


class Publisher(threading.Thread):
    """Owns the sockets (bound here, on the training thread, then used only by this thread)."""

    def __init__(self, endpoint: channel.Endpoint, info: dict, budget=None):
        super().__init__(name="optimlab-publisher", daemon=True)
        self.endpoint = endpoint
        self.budget = budget  # the watch's time budget: building and sending frames is charged to it too
        self.control = Control()
        self.listening = False
        self.frames_sent = 0
        self.frames_dropped = 0
        self.error: str | None = None
        self._ctx = zmq.Context()
        self._pub = self._ctx.socket(zmq.XPUB)
        self._pub.setsockopt(zmq.SNDHWM, 2)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # every new subscriber is told of (and sent the last frame)
        self._ctl = self._ctx.socket(zmq.ROUTER)
        self._ctl.setsockopt(zmq.LINGER, 0)
        self._ctl.setsockopt(zmq.MAXMSGSIZE, 1 << 16)
        try:
            self._pub.bind(endpoint.frames)
            self._ctl.bind(endpoint.control)
        except zmq.ZMQError as e:
            self._close_sockets()
            raise channel.ChannelError(f"Cannot watch on {endpoint.base}: {e}") from None
        channel.write_info(endpoint, **info)
        self._lock = threading.Lock()
        self._slot = None  # the latest capture not yet published
        self._losses: deque = deque()  # loss-only batches (kept even with no listener: the curve)
        self._halt = threading.Event()
        self.series = SeriesSet()
        self.last_frame: bytes | None = None
        self.step = 0
        self._seq = 0
        self._t_rate = (time.perf_counter(), 0)
        self.steps_per_second = 0.0

    # ----- called from the training thread (never blocks on this thread's work) -----

    def offer(self, capture) -> None:
        """The latest capture (an unsent older one is dropped; its losses went ahead on their own)."""
        with self._lock:
            self._slot = capture

    def offer_losses(self, batch) -> None:
        self._losses.append(batch)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(5.0)
        self._close_sockets()
        channel.remove(self.endpoint)

    def _close_sockets(self) -> None:
        for s in (self._pub, self._ctl):
            s.close(0)
        self._ctx.term()

    # ----- this thread -----

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._pub, zmq.POLLIN)
        poller.register(self._ctl, zmq.POLLIN)
        while not self._halt.is_set():
            try:
                events = dict(poller.poll(POLL_MS))
                if self._pub in events:
                    self._subscriptions()
                if self._ctl in events:
                    self._requests()
                self._drain_losses()
                with self._lock:
                    cap, self._slot = self._slot, None
                if cap is not None:
                    self._publish(cap)
            except zmq.ZMQError:
                if self._halt.is_set():
                    break
                raise
            except Exception:  # noqa: BLE001 - a bug here must never reach the training script
                self.error = traceback.format_exc()
        self._drain_losses()

    def _subscriptions(self) -> None:
        while True:
            try:
                msg = self._pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                self.listening = True
                if self.last_frame is not None:
                    self._send(self.last_frame)
            elif msg[:1] == b"\x00":  # the last subscriber left (or crashed): never stay paused for no one
                self.listening = False
                self.control.apply("resume")

    def _requests(self) -> None:
        while True:
            try:
                parts = self._ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            envelope, payload = parts[:-1], parts[-1]
            try:
                req = wire.decode(payload)
                op = req.get("op") if isinstance(req, dict) else None
                if op not in ("pause", "resume", "step", "status"):
                    raise wire.WireError(f"unknown request {op!r}")
                n = req.get("n", 1)
                if op == "step" and not (isinstance(n, int) and 1 <= n <= 1_000_000_000):
                    raise wire.WireError("step needs a count n from 1")
                if op != "status":
                    self.control.apply(op, n)
                reply = {"ok": True, "op": op, "step": self.step, "paused": self.control.paused,
                         "held_at": self.control.held_at, "listening": self.listening}
            except wire.WireError as e:
                reply = {"ok": False, "error": str(e)}
            try:
                self._ctl.send_multipart([*envelope, wire.encode(reply)], zmq.NOBLOCK)
            except zmq.Again:
                pass

    def _drain_losses(self) -> None:
        while self._losses:
            steps, values, extra = self._losses.popleft().resolve()
            self.series.add_many(steps, [{"loss": v, **e} for v, e in zip(values, extra)])

    def _publish(self, cap) -> None:
        t0 = time.perf_counter()
        try:
            self._frame(cap)
        finally:
            if self.budget is not None:  # this thread shares the script's cores (and interpreter lock)
                self.budget.charge(time.perf_counter() - t0)

    def _frame(self, cap) -> None:
        self._drain_losses()
        now = time.perf_counter()
        t0, s0 = self._t_rate
        if now - t0 >= 1.0:
            self.steps_per_second = (cap.step - s0) / (now - t0)
            self._t_rate = (now, cap.step)
        self._seq += 1
        frame = build_frame(cap, self._seq, self.series, self.steps_per_second)
        self.last_frame = wire.encode(frame)
        self._send(self.last_frame)

    def _send(self, data: bytes) -> None:
        try:
            self._pub.send(data, zmq.NOBLOCK)
            self.frames_sent += 1
        except zmq.Again:
            self.frames_dropped += 1
