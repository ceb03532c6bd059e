"""Optimizer and parameter files in torch.save format, read safely and written atomically.

Reading always uses ``torch.load(weights_only=True, map_location="cpu")`` with no
fallback: a pickle that would run code is refused, never executed. A state_dict is
checked against the session before anything is applied, so a refused file leaves
the session exactly as it was.
"""
from __future__ import annotations

import io
import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from . import pickle_compat

OPTIMIZER_KEYS = ("optimizer_state_dict", "optimizer", "optim", "opt")
PARAMS_KEYS = ("model_state_dict", "params", "model", "state_dict", "parameters")
EXTENSIONS = (".pt", ".pth", ".pkl")


class LoadError(ValueError):
    """A file that cannot be loaded into this session; the message names why."""


# ----- writing -----

def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, then move it into place.

    flush + fsync before ``os.replace``: a crash mid-save leaves the old file (or
    nothing), never a truncated file under the final name.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def torch_save(obj, path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def params_state(session) -> dict:
    """The parameters as ``{name: tensor}``, like ``module.state_dict()``."""
    return {n: p.detach().clone() for n, p in session.params.items()}


def save_optimizer(session, path) -> None:
    torch_save(session.optimizer.state_dict(), path)


def save_params(session, path) -> None:
    torch_save(params_state(session), path)


def save_checkpoint(session, path) -> None:
    """Both together, in the layout of PyTorch's "general checkpoint" recipe."""
    torch_save({"model_state_dict": params_state(session),
                "optimizer_state_dict": session.optimizer.state_dict(),
                "step": session.step_count}, path)


# ----- reading -----

_REFUSED_MARKS = ("GLOBAL", "allowlist", "Can only create new object", "Can only build")


def torch_read(source, name: str | None = None):
    """torch.load with weights_only=True; every failure becomes one clear LoadError."""
    if name is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else "The file"
    if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise LoadError(f"No such file: {source}")
    try:
        return pickle_compat.load(source)  # torch.load(weights_only=True, map_location="cpu"), protocols 2-5
    except pickle.UnpicklingError as e:
        if any(m in str(e) for m in _REFUSED_MARKS):
            raise LoadError(f"Refused {name}: it holds Python objects other than tensors and plain values "
                            "(a pickle that could run code); it was not executed") from None
        raise LoadError(f"{name} is not a readable torch.save file ({_first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - garbage makes torch.load fail in many ways (KeyError, struct.error...)
        raise LoadError(f"{name} is not a readable torch.save file ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    """The gist of an exception in one line (torch's messages run to paragraphs)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    gist = next((ln for ln in lines if ln.startswith(("Unsupported operand", "WeightsUnpickler error"))), None)
    return (gist or (lines[0] if lines else type(e).__name__))[:200]


def split(obj) -> tuple[dict | None, dict | None]:
    """(optimizer state_dict, parameters) found in a loaded object; either may be None."""
    if not isinstance(obj, dict):
        raise LoadError(f"The file holds a {type(obj).__name__}, not a state_dict")
    if "state" in obj and "param_groups" in obj:
        return obj, None
    opt = next((obj[k] for k in OPTIMIZER_KEYS if isinstance(obj.get(k), dict)), None)
    params = next((obj[k] for k in PARAMS_KEYS if isinstance(obj.get(k), dict)), None)
    if opt is None and params is None and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        params = obj
    if opt is None and params is None:
        raise LoadError("The file holds neither an optimizer state_dict (state, param_groups) "
                        "nor parameters (name -> tensor)")
    return opt, params


def read_optimizer_state(path) -> dict:
    opt, _ = split(torch_read(path))
    if opt is None:
        raise LoadError(f"{path} holds parameters, not an optimizer state_dict")
    return opt


def read_params(path) -> dict:
    _, params = split(torch_read(path))
    if params is None:
        raise LoadError(f"{path} holds an optimizer state_dict, not parameters")
    return params


@contextmanager
def about(path):
    """Refusals inside name the file: "adam.pt: param_group 0 of the state_dict is refused: ..."."""
    try:
        yield
    except LoadError as e:
        if path is None:
            raise
        raise LoadError(f"{Path(path).name}: {e}") from None


# ----- checking against a session (the rules live in state_checks) -----

def check_optimizer_state(session, sd) -> None:
    """Refuse (LoadError) a state_dict that does not fit the session; change nothing."""
    from . import state_checks  # it imports LoadError from here
    state_checks.check_optimizer_state(session, sd)


def check_params(session, sd) -> None:
    """Refuse (LoadError) parameters whose names, types, shapes or dtypes do not fit."""
    from . import state_checks
    state_checks.check_params(session, sd)


def _copy_state(obj):
    """A copy of a state_dict whose tensors share no memory with the original."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _copy_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_copy_state(v) for v in obj)
    return obj


def to_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def content_id(obj) -> str:
    """A short id of a state_dict's contents (the same data gets the same id)."""
    import hashlib
    return hashlib.sha256(to_bytes(obj)).hexdigest()[:16]
