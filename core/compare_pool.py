"""A comparison's runs in processes of their own, stepped in parallel (``Comparison`` with
``processes`` on).

Four runs stepped one after another on one core take four times one run's time; each run is
independent of the others (its own session, generators and data order), so on a machine
with several cores they can step at once. Python threads do not help (measured: two threads
stepping the digits MLP runs took twice as long as one, the interpreter lock passing at every
small torch op), so each run lives in a process of its own: a fork of the comparison's
process, made when the comparison first steps, holding that run's session from then on. The
session never travels: every question about it (a frame, a save, an explanation) is a
function sent to the process where it lives (``Pool.ask``), and the run's object in the
comparison's process keeps only what does not change (``Elsewhere``), so a question asked of
the wrong process fails loudly instead of answering from an old copy.

Forked, not spawned: the child starts with the run exactly as it stands (nothing pickled,
so nothing is lost that pickling would drop: gradients, hooks, a task script's classes).
Forking a process that has used torch is safe here because it only happens where the
comparison's process steps on the CPU with one torch thread (no OpenMP team to inherit, no
CUDA context: ``usable``). A worker ends with the comparison (``close``), when its
connection closes, or when the comparison's process dies (``PR_SET_PDEATHSIG``, and a check
of its parent every second).

The protocol is one request, one answer: ``(fn, args)`` pickled, ``fn(run, *args)`` run in
the worker, its result (or the error's sentence and traceback) pickled back. Functions go by
name, so they are module-level.
"""
from __future__ import annotations

import ctypes
import gc
import os
import pickle
import signal
import socket
import sys
import time
import traceback
from multiprocessing.connection import Connection

_PROTO = pickle.HIGHEST_PROTOCOL
NICE = 19  # the runs' processes yield to the window's. Measured (benchmarks/compare_window.py, 4
# runs on 2 cores): at the window's priority its drawing stalled 14-50 ms at the 99th percentile
# depending on the tab, at nice 10 6-21 ms, at nice 19 5-19.5 ms (the runs in one process: 3-14 ms)
_close_in_workers: set[int] = set()  # descriptors a worker must not keep open (the window's pipe)


def close_in_workers(fd: int) -> None:
    """A worker closes ``fd`` when it starts (so the process that reads the other end sees it
    close when the comparison's process ends, not when the last worker does)."""
    _close_in_workers.add(fd)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class WorkerError(RuntimeError):
    """A run's process failed to answer: its error, or that it ended."""


class Elsewhere:
    """What stands for a run's session in the comparison's process once the run lives in a worker:
    any use of it is a mistake (the live session is in the worker) and says so."""

    def __init__(self, label: str):
        self._label = label

    def __getattr__(self, name):
        raise WorkerError(f"{self._label}'s session lives in its own process; ask it there "
                          f"(Comparison.in_run), not .session.{name}")

    def __reduce__(self):
        raise TypeError(f"{self._label}'s session lives in its own process")


class Worker:
    """The comparison's end of one run's process."""

    def __init__(self, run, threads: int, others=()):
        ours, theirs = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                ours.close()
                for fd in list(_close_in_workers) + [w.fileno for w in others]:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                _serve(run, Connection(theirs.detach()), threads)
            except BaseException:  # noqa: BLE001 - nothing may escape a forked child
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        self.pid = pid
        self.label = run.label
        self.conn = Connection(ours.detach())
        self.fileno = self.conn.fileno()
        self.dead = ""

    def send(self, fn, args) -> None:
        if self.dead:
            raise WorkerError(self.dead)
        try:
            self.conn.send_bytes(pickle.dumps((fn, args), _PROTO))
        except (OSError, ValueError) as e:
            self._died(e)

    def receive(self):
        if self.dead:
            raise WorkerError(self.dead)
        try:
            answer = pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError) as e:
            self._died(e)
        if answer[0] == "ok":
            return answer[1]
        _, name, text, tb = answer
        raise WorkerError(f"{text}\n(in {self.label}'s process: {name})\n{tb}")

    def _died(self, e) -> None:
        self.dead = f"{self.label}'s process ended unexpectedly ({type(e).__name__}: {e or 'no answer'})"
        self.close()
        raise WorkerError(self.dead)

    def close(self) -> None:
        if self.pid is None:
            return
        try:
            self.conn.close()
        except OSError:
            pass
        try:  # it ends when its connection closes; a stuck one is ended
            for _ in range(200):
                pid, _status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.005)
            else:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        except (ChildProcessError, ProcessLookupError):
            pass
        self.pid = None


class Pool:
    """One worker per run id."""

    def __init__(self, threads: int):
        self.threads = threads
        self.workers: dict[int, Worker] = {}

    def start(self, run) -> None:
        self.workers[run.id] = Worker(run, self.threads, tuple(self.workers.values()))

    def stop(self, run_id: int) -> None:
        w = self.workers.pop(run_id, None)
        if w is not None:
            w.close()

    def ask(self, requests: dict, lost: bool = False):
        """{run id: (fn, args)} -> {run id: fn(run, *args)}, the runs answering in parallel (every
        request is sent before any answer is read). The first failure is raised once every
        answer is in; with ``lost``, the runs whose process ended are returned apart
        (answers, {run id: why}) and only other failures raise."""
        for rid, (fn, args) in requests.items():
            try:
                self.workers[rid].send(fn, args)
            except WorkerError:
                pass  # raised by receive below, in order
        out, gone, error = {}, {}, None
        for rid in requests:
            w = self.workers[rid]
            try:
                out[rid] = w.receive()
            except WorkerError as e:
                if lost and w.dead:
                    gone[rid] = w.dead
                else:
                    error = error or e
        if error is not None:
            raise error
        return (out, gone) if lost else out

    def one(self, run_id: int, fn, *args):
        return self.ask({run_id: (fn, args)})[run_id]

    def close(self) -> None:
        for w in self.workers.values():
            w.close()
        self.workers.clear()


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _serve(run, conn: Connection, threads: int) -> None:
    parent = os.getppid()
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # the window first: it needs a core for a moment at every frame, the runs all the rest
        os.nice(NICE)
    except (AttributeError, OSError):
        pass
    import torch
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    gc.freeze()  # what the fork brought: no collection walks (and copies) it
    while True:
        try:
            if not conn.poll(1.0):
                if os.getppid() != parent:
                    return
                continue
            fn, args = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            data = pickle.dumps(("ok", fn(run, *args)), _PROTO)
        except BaseException as e:  # noqa: BLE001 - delivered to the comparison's process
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            data = pickle.dumps(("err", type(e).__name__, " ".join(str(e).split()) or type(e).__name__, tb), _PROTO)
        try:
            conn.send_bytes(data)
        except (OSError, ValueError):
            return
