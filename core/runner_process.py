"""The runner in its own process, so the window's drawing never competes with the
optimizer for one interpreter lock.

``ProcessRunner`` has the thread Runner's interface (run, pause, step, cancel,
set_rate_limit, latest, call, apply, replace, stop, alive). The child process holds
the session and an ordinary Runner; the parent keeps only the latest snapshot.

Over one pipe each way, every message is ``pickle``d explicitly (never torch's
shared-memory reducers):

- parent -> child: ``("run"|"pause"|"cancel",)``, ``("step", n)``, ``("rate", x)``,
  ``("call"|"replace", token, payload)`` where payload pickles ``(fn, args)``
  (module-level functions, see ``core.edits``), and ``("stop",)``;
- child -> parent: ``b"h"`` + a History, ``b"s"`` + a Snapshot whose history is the last
  History sent, or ``b"m"`` + the token (8 bytes) + either
  ``("ok", token, result)`` or ``("err", token, exception-or-None, type, message, traceback)``
  (the token outside the pickle: an answer that cannot be read still fails its Future).

A snapshot published before a call's answer reaches the parent first, so when a
call's Future is done, ``latest()`` already shows its effect. A history is sent only
when it changed and snapshots refer to it (the same object on the parent's side), so
the curves are not redrawn for nothing and the pipe carries only what changed.

Children are forked from a fork server that has already imported torch: the first
start costs an interpreter and torch's import (about a second), later ones a few
milliseconds. The fork server is single-threaded, so forking it is safe; the GUI
process (with Qt's threads) is never forked.
"""
from __future__ import annotations

import io
import itertools
import multiprocessing as mp
import os
import pickle
import signal
import threading
import traceback
from concurrent.futures import Future
from dataclasses import replace

from . import trust
from .history import BUDGET
from .observe import make_snapshot
from .runner import RunnerCommands
from .session import SMALL_NUMEL
from .snapshot import RunError, Snapshot

_PROTO = pickle.HIGHEST_PROTOCOL
_ctx = None


# Imported once by the fork server, so a child has them from the start. torch._dynamo is
# what the first optimizer.step() imports lazily (about 2 s a child, more than everything
# else a start costs); importing it starts no thread, so forking after it stays safe.
PRELOAD = ["core.runner_process", "core.edits", "torch._dynamo"]


def context():
    """The multiprocessing context for runner processes (created once per process): a fork
    server preloaded with the engine, or plain spawn where there is no fork server (Windows):
    each child then imports torch itself, a slower start but the same runner."""
    global _ctx
    if _ctx is None:
        if "forkserver" in mp.get_all_start_methods():
            _ctx = mp.get_context("forkserver")
            _ctx.set_forkserver_preload(PRELOAD)
        else:
            _ctx = mp.get_context("spawn")
    return _ctx


class RemoteError(RuntimeError):
    """An exception raised in the runner process that could not travel as itself."""

    def __init__(self, type_name: str, message: str):
        super().__init__(message)
        self.type_name = type_name


# ----- snapshots over the pipe, with the history sent only when it changed -----

def _without_history(snap) -> bytes:
    """A frame pickled with its history left out (sent on its own when it changed). Not a
    pickler with ``persistent_id``: called from C for every object pickled, that Python method
    took half the pickling time (0.11 vs 0.05 ms for an MLP's snapshot)."""
    buf = io.BytesIO()
    buf.write(b"s")
    pickle.dump(replace(snap, history=None), buf, _PROTO)
    return buf.getvalue()


def _with_history(data, history):
    """The frame of ``_without_history``'s bytes (after the leading b"s") with ``history``."""
    if history is None:
        raise pickle.UnpicklingError("a frame came before its history")
    return replace(pickle.loads(data), history=history)


class ProcessRunner(RunnerCommands):
    """Owns a child process that steps the session; the parent sees snapshots only."""

    def __init__(self, session, max_hz: float = 60.0, budget: float = BUDGET, shown: Snapshot | None = None):
        """``session`` travels to the child whole; ``None`` starts it on ``edits.blank`` (after a
        crash, or to build there with ``replace``), showing ``shown`` until its first snapshot
        arrives (without ``shown``, ``latest()`` waits for that snapshot)."""
        from . import session_file
        self._first = threading.Event()
        self._latest: Snapshot | None = None
        data = None
        if session is not None:
            self._latest = make_snapshot(session, 0)
            data = session_file.pack(session)
        elif shown is not None:
            self._latest = replace(shown, error=None, running=False, paused_reason=None)
        if self._latest is not None:
            self._first.set()
        ctx = context()
        self._conn, child_conn = ctx.Pipe(duplex=True)
        # the scripts the user agreed to run travel with the child (it may open a session that names one)
        self._proc = ctx.Process(target=_child_main, args=(child_conn, data, max_hz, budget, trust.trusted()),
                                 name="optimlab-runner", daemon=True)
        self._proc.start()
        child_conn.close()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._futures: dict[int, Future] = {}
        self._tokens = itertools.count()
        self._last_history = None
        self._stopping = False
        self._dead = False
        self._reader = threading.Thread(target=self._read, name="optimlab-runner-reader", daemon=True)
        self._reader.start()

    # ----- commands (any thread) -----

    def latest(self) -> Snapshot:
        self._first.wait(60)
        with self._lock:
            return self._latest

    def call(self, fn, *args) -> Future:
        """Run ``fn(session, *args)`` in the runner process; ``fn`` must be importable by name."""
        return self._request("call", fn, args)

    def replace(self, build, *args) -> Future:
        """Swap in ``build(session, *args)`` (built in the runner process); the Future gets its spec."""
        return self._request("replace", build, args)

    def stop(self, timeout: float = 10.0) -> None:
        """End the child (within one step) and wait for it; kill it if it does not answer."""
        self._stopping = True
        self._post(("stop",))
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(2)
        self._reader.join(timeout)
        self._conn.close()

    @property
    def alive(self) -> bool:
        return self._proc.is_alive() or self._reader.is_alive()

    @property
    def crashed(self) -> bool:
        """The child ended without being asked to (killed, out of memory, a crash in native code)."""
        with self._lock:
            return self._dead and not self._stopping

    # ----- plumbing -----

    def _request(self, kind: str, fn, args) -> Future:
        fut: Future = Future()
        try:
            payload = pickle.dumps((fn, args), _PROTO)
        except Exception as e:  # noqa: BLE001 - a closure cannot travel: a programming error, shown
            fut.set_exception(TypeError(f"{getattr(fn, '__qualname__', fn)} cannot be sent to the runner "
                                        f"process ({e}); use a module-level function"))
            return fut
        token = next(self._tokens)
        with self._lock:
            if self._dead:
                fut.set_exception(RuntimeError("The runner process has ended"))
                return fut
            self._futures[token] = fut
        self._post((kind, token, payload))
        return fut

    def _post(self, msg) -> None:
        data = pickle.dumps(msg, _PROTO)
        with self._send_lock:
            try:
                self._conn.send_bytes(data)
            except (OSError, ValueError):  # the child has gone: the reader reports it
                pass

    def _read(self) -> None:
        while True:
            try:
                data = self._conn.recv_bytes()
            except (EOFError, OSError):
                break
            try:
                self._handle(data)
            except Exception:  # noqa: BLE001 - one bad message must not end the reader
                traceback.print_exc()
        self._ended()

    def _handle(self, data: bytes) -> None:
        if data[:1] == b"h":
            self._last_history = pickle.loads(data[1:])
            return
        if data[:1] == b"s":
            snap = _with_history(memoryview(data)[1:], self._last_history)
            with self._lock:
                self._latest = snap
            self._first.set()
            return
        token = int.from_bytes(data[1:9], "little")
        with self._lock:
            fut = self._futures.pop(token, None)
        if fut is None:
            return
        try:
            msg = pickle.loads(data[9:])
        except Exception as e:  # noqa: BLE001 - the caller learns why instead of waiting for ever
            fut.set_exception(RemoteError(type(e).__name__, f"The runner's answer could not be read: {e}"))
            return
        if msg[0] == "ok":
            fut.set_result(msg[2])
            return
        _, _, exc, type_name, message, tb = msg
        if exc is None:
            exc = RemoteError(type_name, message)
        try:
            exc.remote_traceback = tb
        except AttributeError:
            exc = RemoteError(type_name, message)
            exc.remote_traceback = tb
        fut.set_exception(exc)

    def _ended(self) -> None:
        """The pipe closed: fail what is pending; if nobody asked, say the run stopped."""
        self._proc.join(5)
        self._first.set()
        with self._lock:
            self._dead = True
            pending, self._futures = self._futures, {}
            if not self._stopping:
                code = self._proc.exitcode
                err = RunError("RunnerCrashed", f"The runner process ended unexpectedly (exit code {code}); "
                               "open or reset the session to start a new one", "")
                if self._latest is not None:
                    self._latest = replace(self._latest, seq=self._latest.seq + 1, running=False, error=err,
                                           batch_done=0, batch_total=0)
        for fut in pending.values():
            fut.set_exception(RuntimeError("The runner process ended before answering"))


# ----- the child -----

class _Sender:
    """Child side: sends answers in order and the newest snapshot, from one thread.

    Snapshots are pickled on the runner thread as they are published (their cost counts in
    the runner's snapshot budget; the sender thread only writes bytes, which needs the
    interpreter lock for a moment). A snapshot refers to its history, which is pickled
    only when it changed; both wait in one-deep slots, so a parent that reads slowly gets
    the newest snapshot after the history it refers to, never a backlog.
    """

    def __init__(self, conn):
        self._conn = conn
        self._cond = threading.Condition()
        self._history: bytes | None = None
        self._snap: bytes | None = None
        self._answers: list[bytes] = []
        self._closed = False
        self._pickled_history = None
        self._thread = threading.Thread(target=self._loop, name="optimlab-sender", daemon=True)
        self._thread.start()

    def offer(self, snap) -> None:  # runner thread, at each publish
        history = None
        if snap.history is not self._pickled_history:
            history = b"h" + pickle.dumps(snap.history, _PROTO)
            self._pickled_history = snap.history
        data = _without_history(snap)
        with self._cond:
            if history is not None:
                self._history = history
            self._snap = data
            self._cond.notify()

    def answer(self, token: int, fut: Future) -> None:  # runner thread, when a call is done
        exc = fut.exception()
        if exc is None:
            try:
                data = pickle.dumps(("ok", token, fut.result()), _PROTO)
            except Exception as e:  # noqa: BLE001 - the answer cannot travel: say so
                exc = TypeError(f"The answer cannot be sent back: {e}")
        if exc is not None:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            msg = str(exc) or type(exc).__name__
            try:
                data = pickle.dumps(("err", token, exc, type(exc).__name__, msg, tb), _PROTO)
                pickle.loads(data)  # an exception that cannot be rebuilt travels as RemoteError
            except Exception:  # noqa: BLE001
                data = pickle.dumps(("err", token, None, type(exc).__name__, msg, tb), _PROTO)
        with self._cond:
            self._answers.append(b"m" + token.to_bytes(8, "little") + data)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._snap is None and not self._answers and not self._closed:
                    self._cond.wait()
                history, self._history = self._history, None
                snap, self._snap = self._snap, None
                answers, self._answers = self._answers, []
                closed = self._closed
            try:
                # the history before the snapshot that refers to it; the snapshot before the
                # answers (they were given after it was published)
                for data in ([history] if history else []) + ([snap] if snap else []) + answers:
                    self._conn.send_bytes(data)
            except (OSError, ValueError):
                return  # the parent has gone
            if closed:
                return


def threads_for(session) -> int:
    """torch threads for the runner process: ``OPTIMLAB_THREADS`` if set; else, for a small
    problem, every core but one (the window keeps one), and for a big one every core.

    A parallel op waits for its slowest thread, so a small op's intra-op team that shares
    its cores with the window's drawing loses far more than the drawing's share: on 2 cores
    the MLP-sized case ran at 0.59x the bare loop with 2 threads and 0.88x with 1. A big
    tensor's ops are long enough that all cores win despite the window.

    A small problem's comparison whose runs step in processes of their own (``core.compare_pool``)
    gets one thread: its cores go to the runs side by side, and a forked process may only use
    one OpenMP thread. Each run records the count it ran with (``Branch.threads``).
    """
    env = os.environ.get("OPTIMLAB_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    cores = os.cpu_count() or 1
    if cores > 1 and session.numel() <= SMALL_NUMEL and getattr(session, "processes", False):
        return 1
    return cores if session.numel() > SMALL_NUMEL else max(1, cores - 1)


def _set_threads(session) -> None:
    """Step ``session`` with ``threads_for``'s count of torch threads (the CLI's child uses the
    same rule). The session records the count with the steps it takes (``Branch.threads``)."""
    import torch
    n = threads_for(session)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _child_main(conn, data: bytes, max_hz: float, budget: float, trusted=()) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the window's to handle
    for path, digest in trusted:
        trust.trust(path, digest)
    from . import gc_policy, session_file
    from .runner import Runner
    from .edits import blank
    gc_policy.freeze_loaded()  # torch's objects (the fork server's preload): no full collection walks them
    from . import compare, compare_pool
    compare.PROCESSES_AUTO = True  # a comparison here steps its runs in processes of their own
    compare_pool.close_in_workers(conn.fileno())  # those see the window's pipe close with this process
    sender = _Sender(conn)
    # the session is unpacked on the runner thread, which steps it (see Runner)
    runner = Runner((lambda: session_file.unpack(data, "the session")) if data is not None else blank,
                    max_hz, budget, on_publish=sender.offer, fallback=blank, on_session=_set_threads)
    try:
        while True:
            try:
                msg = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "stop":
                break
            if kind in ("run", "pause", "cancel"):
                getattr(runner, kind)()
            elif kind == "step":
                runner.step(msg[1])
            elif kind == "rate":
                runner.set_rate_limit(msg[1])
            elif kind in ("call", "replace"):
                _, token, payload = msg
                try:
                    fn, args = pickle.loads(payload)
                except Exception as e:  # noqa: BLE001 - answered as an error
                    fut: Future = Future()
                    fut.set_exception(e)
                else:
                    fut = (runner.call if kind == "call" else runner.replace)(fn, *args)
                fut.add_done_callback(lambda f, t=token: sender.answer(t, f))
    finally:
        runner.stop()
        sender.close()
        conn.close()
