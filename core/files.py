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
import zipfile
from contextlib import contextmanager
from pathlib import Path

import torch

from . import limits, pickle_compat
from .trees import map_tensors
from .paths import LoadError, SaveError, atomic_write, open_regular, readable, save_target  # noqa: F401 (files.* API)

OPTIMIZER_KEYS = ("optimizer_state_dict", "optimizer", "optim", "opt")
PARAMS_KEYS = ("model_state_dict", "params", "model", "state_dict", "parameters")
EXTENSIONS = (".pt", ".pth", ".pkl")


# ----- writing (atomic, to regular files only: see core.paths) -----

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


TORCH_ZIP_MEMBERS = 1 << 17  # a torch.save zip holds one member per storage, plus a few


def torch_read(source, name: str | None = None):
    """torch.load with weights_only=True; every failure becomes one clear LoadError.

    ``source`` is a path or a seekable binary file. Before torch reads anything, the
    bytes the file will become are compared with the memory available, and a zip-format
    file's directory is checked (ratios, methods, encryption...; see core.limits).
    """
    if name is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else "The file"
    if isinstance(source, (str, os.PathLike)):
        with open_regular(source) as f:
            return _torch_load(f, name)
    return _torch_load(source, name)


def _torch_load(f, name: str):
    start = f.tell()
    if zipfile.is_zipfile(f):
        with limits.open_zip(f, name, TORCH_ZIP_MEMBERS, error=LoadError) as z:
            need = sum(i.file_size for i in z.infolist())
    else:
        need = f.seek(0, os.SEEK_END) - start
    limits.check_bytes(need * limits.LOAD_FACTOR, f"Loading {name}", error=LoadError)
    f.seek(start)
    try:
        return pickle_compat.load(f)  # torch.load(weights_only=True, map_location="cpu"), protocols 2-5
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
    return map_tensors(obj, lambda t: t.detach().clone())


def to_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def content_id(obj) -> str:
    """A short id of a state_dict's contents (the same data gets the same id)."""
    import hashlib
    return hashlib.sha256(to_bytes(obj)).hexdigest()[:16]
