"""Consent before a session runs a user's Python script.

A session whose training task names a script (``{"kind": "script", "script": PATH}``)
would run that file's code when it is opened. Nothing runs until the user agreed
to this exact file: its real path and the SHA-256 of its bytes. The window asks
and remembers the answer per (path, hash), so a changed file asks again; the CLI
needs ``--trust-script``. The shipped examples' scripts are trusted.

A script is only ever a plain ``.py`` text file on disk: never a zip (``runpy``
would run a zip's ``__main__.py``, so a ``.optimlab`` naming itself as its script
ran its payload), a folder, or a member of a session file. ``read_script`` returns
the exact bytes that were hashed, so what runs is what was agreed to.
"""
from __future__ import annotations

import hashlib
import os
import stat
import threading
from dataclasses import replace
from pathlib import Path

from . import optimizer_names
from .spec import SpecError

EXAMPLES = Path(__file__).resolve().parents[1] / "resources" / "examples"
MAX_SCRIPT_BYTES = 4 * 1024 * 1024
SHORT = 12  # hex digits of the hash shown to the user

_lock = threading.Lock()
_trusted: set[tuple[str, str]] = set()
_trust_all = False


class UntrustedScript(SpecError):
    """The session names a script the user has not agreed to run (nothing was run)."""

    def __init__(self, path: str, digest: str, what: str = "task script"):
        self.path, self.digest, self.what = path, digest, what  # what: "task script" or "optimizer file"
        super().__init__(f"This session runs the Python script {path} (sha256 {digest[:SHORT]}); "
                         "it was not run because you have not trusted it")

    def __reduce__(self):  # travels from the runner process as itself
        return (type(self), (self.path, self.digest, self.what))


def resolve(script: str, base: str | os.PathLike | None) -> str:
    """The absolute path of ``script``; a relative one is relative to ``base`` (the session
    file's folder), not to the current directory."""
    p = Path(os.path.expanduser(script))
    if not p.is_absolute():
        p = Path(base if base is not None else os.getcwd()) / p
    return os.path.abspath(p)


def read_script(path: str, what: str = "task script") -> tuple[bytes, str]:
    """(bytes, sha256 hex) of a script file (``what``: "task script", "optimizer file"),
    refusing anything but a plain Python text file."""
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as e:
        raise SpecError(f"The {what} {path} cannot be read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"The {what} {path} is not a regular file")
    if p.suffix != ".py":
        raise SpecError(f"The {what} {path} is not a .py file")
    if st.st_size > MAX_SCRIPT_BYTES:
        raise SpecError(f"The {what} {path} is {st.st_size:,} bytes; scripts up to "
                        f"{MAX_SCRIPT_BYTES // 2**20} MB are accepted")
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_SCRIPT_BYTES + 1)
    except OSError as e:
        raise SpecError(f"The {what} {path} cannot be read: {e.strerror or e}") from None
    if data[:2] == b"PK" or b"\x00" in data:
        raise SpecError(f"The {what} {path} is not Python source text (it looks like an archive "
                        "or a binary file)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"The {what} {path} is not UTF-8 Python source text") from None
    return data, hashlib.sha256(data).hexdigest()


def digest(path: str) -> str:
    """The SHA-256 of a script, as the consent question shows it."""
    return read_script(path)[1]


def is_shipped(path: str) -> bool:
    return Path(os.path.realpath(path)).parent == Path(os.path.realpath(EXAMPLES))


def trust(path: str, digest_hex: str) -> None:
    """Record the user's agreement to run this file with these contents."""
    with _lock:
        _trusted.add((os.path.realpath(path), digest_hex))


def trust_file(path: str) -> str:
    """Trust the file as it is now (the user chose it); returns its digest."""
    d = digest(path)
    trust(path, d)
    return d


def trust_all(on: bool = True) -> None:
    """Trust every script (the CLI's ``--trust-script``)."""
    global _trust_all
    _trust_all = on


def trusted() -> list[tuple[str, str]]:
    """The agreements recorded in this process (passed on to a runner process)."""
    with _lock:
        return sorted(_trusted)


def forget() -> None:
    """Drop every agreement (tests)."""
    global _trust_all
    with _lock:
        _trusted.clear()
    _trust_all = False


def checked_source(path: str, what: str = "task script") -> bytes:
    """The script's bytes if the user trusts them; UntrustedScript (nothing run) if not."""
    data, d = read_script(path, what)
    with _lock:
        ok = _trust_all or (os.path.realpath(path), d) in _trusted
    if not ok and not is_shipped(path):
        raise UntrustedScript(os.path.abspath(path), d, what)
    return data


# ----- script paths in specs: absolute while open, relative to the file when saved -----

def with_base(spec, base):
    """``spec`` with a script task's path, and an optimizer file's, made absolute against
    ``base`` (a session file's folder)."""
    spec = _optimizer_path(spec, lambda p: resolve(p, base))
    task = spec.gradient.task
    if spec.gradient.kind != "task" or task is None or task.kind != "script" or not task.script:
        return spec
    return replace(spec, gradient=replace(spec.gradient, task=replace(task, script=resolve(task.script, base))))


def relative_to(spec, folder):
    """``spec`` with a script path (and an optimizer file's) written relative to ``folder``
    when the file lies inside it."""
    spec = _optimizer_path(spec, lambda p: _relative(p, folder))
    task = spec.gradient.task
    if spec.gradient.kind != "task" or task is None or task.kind != "script" or not task.script:
        return spec
    return replace(spec, gradient=replace(spec.gradient, task=replace(task, script=_relative(task.script, folder))))


def _relative(path: str, folder) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(folder).resolve()))
    except ValueError:
        return path


def _optimizer_path(spec, change):
    """``spec`` with its ``file:PATH:Class`` optimizer's PATH changed by ``change``."""
    if not spec.optimizer.startswith(optimizer_names.FILE_PREFIX):
        return spec
    try:
        name = optimizer_names.parse(spec.optimizer)
    except ValueError:
        return spec  # the spec's own check says what is wrong with it
    return replace(spec, optimizer=optimizer_names.file_name(change(name.path), name.cls))
