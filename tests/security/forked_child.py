"""Run a load in a forked child, under a memory cap, so a regression fails instead of
eating the machine. Forked, not spawned: torch is already imported (a fresh interpreter
takes seconds to import it), and the child shares nothing it could leave behind."""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import resource
import select
import signal
import sys
import time

import pytest

MB = 1_000_000


def vm_size() -> int:
    """This process's address space in bytes (what RLIMIT_AS counts)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def cap_memory(headroom: int) -> None:
    """Let this process grow by at most ``headroom`` bytes more (allocations beyond fail)."""
    limit = vm_size() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def in_child(fn, *args, headroom: int | None = None, timeout: float = 60.0):
    """``fn(*args)`` in a forked child, capped at ``headroom`` more bytes.

    Returns ("ok", value, stderr) or ("raised", exception type name, message, stderr);
    stderr is what the child printed there. A child that dies or hangs fails the caller.
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("forks and reads /proc/self/status (Linux)")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                if headroom is not None:
                    cap_memory(headroom)
                try:
                    out = ("ok", fn(*args))
                except BaseException as e:  # noqa: BLE001 - reported to the parent as data
                    out = ("raised", type(e).__name__, str(e))
            with os.fdopen(w, "wb") as f:
                f.write(pickle.dumps(out + (err.getvalue(),)))
        finally:
            os._exit(0)
    os.close(w)
    data = _read_all(r, pid, timeout)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"the child died: status {status}"
    assert data, "the child reported nothing"
    return pickle.loads(data)


def _read_all(fd: int, pid: int, timeout: float) -> bytes:
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"the child did not finish within {timeout} s")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)
