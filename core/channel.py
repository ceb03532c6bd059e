"""Where a watched script and its listeners meet: Unix sockets in a folder only the user can enter.

A watched script binds two sockets under ``<runtime>/NAME``: ``NAME.frames`` (its frames,
latest only) and ``NAME.ctl`` (pause, step, resume), and writes ``NAME.json`` (pid, name,
rank) so listeners can find it. ``<runtime>`` is ``$XDG_RUNTIME_DIR/optimlab`` (or
``~/.cache/optimlab/run``), created with mode 0700 and refused when another user owns it or
can enter it: the folder's permissions are the authentication. Connecting to a Unix socket
needs search permission on its folder, so no other local user can read the frames (your
weights) or pause your run. There is no TCP transport, by design: nothing listens on a port.
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_PATH = 100  # a Unix socket's path must fit in sun_path (108 bytes on Linux), with its suffix


class ChannelError(ValueError):
    """An address that cannot be used safely or found; the message is one sentence."""


def runtime_dir(create: bool = True) -> Path:
    """The user-only folder for sockets; created 0700 and checked (owner, mode) every time."""
    base = os.environ.get("OPTIMLAB_RUNTIME_DIR")
    if base:
        d = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR") and Path(os.environ["XDG_RUNTIME_DIR"]).is_dir():
        d = Path(os.environ["XDG_RUNTIME_DIR"]) / "optimlab"
    else:
        d = Path.home() / ".cache" / "optimlab" / "run"
    if create:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(d)
    return d


def check_private(d: Path) -> None:
    """Refuse a folder another user owns or may enter: its sockets would not be ours alone."""
    try:
        st = os.stat(d)
    except FileNotFoundError:
        raise ChannelError(f"No watched script has run here yet ({d} does not exist)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ChannelError(f"Cannot use {d} for sockets: it is not a folder")
    if st.st_uid != os.getuid():
        raise ChannelError(f"Cannot use {d} for sockets: it belongs to another user")
    if st.st_mode & 0o077:
        raise ChannelError(f"Cannot use {d} for sockets: other users may enter it "
                           f"(mode {stat.S_IMODE(st.st_mode):o}; it must be 700)")


@dataclass(frozen=True)
class Endpoint:
    """One watched script's sockets."""

    base: Path  # <folder>/<name>; the sockets and the info file add a suffix

    @property
    def frames(self) -> str:
        return f"ipc://{self.base}.frames"

    @property
    def control(self) -> str:
        return f"ipc://{self.base}.ctl"

    @property
    def info(self) -> Path:
        return self.base.with_name(self.base.name + ".json")

    @property
    def name(self) -> str:
        return self.base.name


def _clean(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:48] or "run"


def endpoint_for(name: str | None, address: str | None = None) -> Endpoint:
    """The endpoint a script binds: ``address`` (a path, or ``ipc://path``) or ``<runtime>/<name>-<pid>``."""
    if address:
        path = Path(address[len("ipc://"):] if address.startswith("ipc://") else address).expanduser()
        if "://" in address and not address.startswith("ipc://"):
            raise ChannelError(f"Cannot watch on {address}: only local Unix sockets (a path or ipc://path) "
                               "are offered, so that only you can connect")
        check_private(path.parent.resolve())
        base = path.resolve()
    else:
        base = runtime_dir() / f"{_clean(name or 'run')}-{os.getpid()}"
    if len(str(base)) + 7 > MAX_PATH:
        raise ChannelError(f"Cannot watch on {base}: the path is too long for a Unix socket")
    return Endpoint(base)


def write_info(ep: Endpoint, **info) -> None:
    tmp = ep.info.with_name(f".{ep.info.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(tmp, ep.info)


def remove(ep: Endpoint) -> None:
    for p in (ep.info, Path(f"{ep.base}.frames"), Path(f"{ep.base}.ctl")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(ep: Endpoint) -> bool:
    """Is the script behind ``ep`` still there? (Its info file is removed when it closes; a
    crashed one leaves the file behind, with the pid of a process that is gone.)"""
    try:
        return _alive(int(json.loads(ep.info.read_text())["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def running() -> list[tuple[Endpoint, dict]]:
    """The watched scripts still running, newest first (stale files of dead ones are removed)."""
    try:
        d = runtime_dir(create=False)
    except ChannelError:
        return []
    found = []
    for p in d.glob("*.json"):
        try:
            info = json.loads(p.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        ep = Endpoint(p.with_suffix(""))
        if _alive(pid):
            found.append((ep, info))
        else:
            remove(ep)
    found.sort(key=lambda e: e[1].get("started", 0), reverse=True)
    return found


def resolve(address: str | None) -> Endpoint:
    """The endpoint a listener connects to: a name in the runtime folder, a path, or the newest
    running script when ``address`` is empty."""
    if not address:
        found = running()
        if not found:
            raise ChannelError("No watched script is running (start one that calls optimlab.watch(...), "
                               "or give its address)")
        return found[0][0]
    if "://" in address and not address.startswith("ipc://"):
        raise ChannelError(f"Cannot listen on {address}: only local Unix sockets (a path or ipc://path) are offered")
    raw = address[len("ipc://"):] if address.startswith("ipc://") else address
    for suffix in (".frames", ".ctl", ".json"):
        if raw.endswith(suffix):
            raw = raw[:-len(suffix)]
    path = Path(raw).expanduser()
    if "/" not in raw:
        path = runtime_dir(create=False) / raw
    check_private(path.parent.resolve())
    return Endpoint(path.resolve())
