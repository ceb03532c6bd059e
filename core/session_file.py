"""Whole sessions on disk: spec + journal (JSON) and a checkpoint (torch.save), in one zip.

``NAME.optimlab`` is a zip holding ``session.json`` (human-readable: spec, journal,
current group layout) and ``checkpoint.pt`` (tensors, gradients, optimizer state,
the gradient RNG state, history, stored state_dicts), read with weights_only=True.
A plain ``.json`` file holds only spec + journal and is replayed on open.
Reopening a saved session continues bit-identically to one that was never closed.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from . import files, spec as specmod
from .history import HistoryRecorder
from .session import NonFinite, Session, StepError
from .spec import AddGroup, SpecError

SESSION_FORMAT = "optimlab-session"
SESSION_VERSION = 1
SESSION_EXT = ".optimlab"


def _layout(session: Session) -> dict:
    added = session.tensor_specs[len(session.spec.tensors):]
    return {"device": session.device, "step": session.step_count,
            "groups": [specmod._drop_defaults(g) for g in session.group_specs],
            "added_tensors": [specmod._drop_defaults(t) for t in added]}


def save_session(session: Session, path) -> None:
    """Write the session atomically (JSON spec only if ``path`` ends in .json)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        text = specmod.dumps(session.spec, session.journal)
        files.atomic_write(path, lambda f: f.write(text.encode()))
        return
    data = pack(session)
    files.atomic_write(path, lambda f: f.write(data))


def pack(session: Session) -> bytes:
    """The whole session as the bytes of a .optimlab file (also how a session travels
    to the runner process)."""
    doc = specmod.document(session.spec, session.journal)
    doc["format"] = SESSION_FORMAT
    doc["version"] = SESSION_VERSION
    doc["layout"] = _layout(session)
    ckpt = {
        "params": {n: p.detach() for n, p in session.params.items()},
        "grads": {n: p.grad for n, p in session.params.items() if p.grad is not None},
        "optimizer": session.optimizer.state_dict(),
        "grad_rng": session.grad_gen.get_state(),
        "loss": session.loss,
        "history": {k: torch.from_numpy(np.array(v)) for k, v in session.history.to_arrays().items()},
        "blobs": session.blobs,
        "task": session.task.state() if session.task is not None else None,
        "scheduler": session.scheduler.state_dict() if session.scheduler is not None else None,
        "last_eval": {k: float(v) for k, v in session.last_eval.items()},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("session.json", specmod.pretty_json(doc).encode())
        z.writestr("checkpoint.pt", files.to_bytes(ckpt))
    return buf.getvalue()


def load_session(path) -> Session:
    """Open a .optimlab or .json session; any problem is one LoadError/SpecError, nothing half-built."""
    path = Path(path)
    if not path.is_file():
        raise files.LoadError(f"No such file: {path}")
    if zipfile.is_zipfile(path):
        try:
            data = path.read_bytes()
        except OSError as e:
            raise files.LoadError(f"Cannot read {path.name}: {e}") from None
        return unpack(data, path.name)
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError) as e:
        raise files.LoadError(f"{path.name} is neither an optimlab session nor JSON ({e})") from None
    # the file's name in every refusal, and in a replayed step's failure
    with specmod.in_file(path.name, (SpecError, files.LoadError, StepError, NonFinite)):
        spec, journal = specmod.loads(text, path.name)
        return Session(spec, journal)


def unpack(data: bytes, name: str = "the session") -> Session:
    """The session in ``data`` (a .optimlab file's bytes); ``name`` is used in messages."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = set(z.namelist())
            if "session.json" not in names or "checkpoint.pt" not in names:
                raise files.LoadError(f"{name} is not an optimlab session (no session.json/checkpoint.pt)")
            text = z.read("session.json").decode()
            ckpt_bytes = z.read("checkpoint.pt")
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError) as e:
        raise files.LoadError(f"{name} is damaged: {e}") from None
    source = f"{name} (session.json)"
    doc = specmod.parse_json(text, source)
    if not isinstance(doc, dict) or doc.get("format") != SESSION_FORMAT:
        raise files.LoadError(f"{name} is not an optimlab session")
    ckpt = files.torch_read(io.BytesIO(ckpt_bytes), name=f"The checkpoint in {name}")
    try:
        with specmod.in_file(name, (SpecError, files.LoadError)):  # every refusal names the file
            return restore(doc, ckpt, source)
    except (SpecError, files.LoadError):
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise files.LoadError(f"{name} is damaged: its session.json and checkpoint do not agree ({first})") from None


def restore(doc: dict, ckpt: dict, source: str = "") -> Session:
    """Rebuild a session from its checkpoint (no replay); ``source`` names session.json in messages."""
    doc = dict(doc, format=specmod.SPEC_FORMAT)
    read, journal = specmod.read_document(doc, source)
    spec, layout = read.spec, read.layout or specmod.Layout()
    if not isinstance(ckpt, dict) or "params" not in ckpt or "optimizer" not in ckpt:
        raise files.LoadError("The session's checkpoint is incomplete (no params or optimizer state)")
    blobs = ckpt.get("blobs") or {}
    base_groups = list(layout.groups)
    # the spec's own groups as they are now (hyperparameters come back with the optimizer state)
    s = Session(spec, blobs=blobs)
    n_base = len(s.group_specs)
    by_name = {t.name: t for t in layout.added_tensors}
    for i, g in enumerate(base_groups[n_base:], n_base):
        missing = [n for n in g.tensors if n not in by_name]
        if missing:
            raise SpecError(f"The session is damaged: layout.groups[{i}] names {missing[0]!r}, "
                            "which is not among layout.added_tensors")
        s._do_addgroup(AddGroup(tuple(by_name[n] for n in g.tensors), g.hparams))
    if layout.device is not None and layout.device != s.device:
        s._do_setdevice(specmod.SetDevice(layout.device))
    files.check_params(s, ckpt["params"])
    s.load_params(ckpt["params"])
    s.load_optimizer_state(ckpt["optimizer"])
    _keep_saved_dtypes(s.optimizer, ckpt["optimizer"])
    for n, p in s.params.items():
        g = ckpt.get("grads", {}).get(n)
        p.grad = None if g is None else g.to(p.device)
    if isinstance(ckpt.get("grad_rng"), torch.Tensor):
        s.grad_gen.set_state(ckpt["grad_rng"])
    loss = ckpt.get("loss")
    s.loss = loss.to(s.device) if isinstance(loss, torch.Tensor) else None
    s.step_count = layout.step
    try:
        if s.scheduler is not None and isinstance(ckpt.get("scheduler"), dict):
            s.scheduler.load_state_dict(ckpt["scheduler"])
        if s.task is not None and isinstance(ckpt.get("task"), dict):
            s.task.load_state(ckpt["task"])
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise files.LoadError(f"The session's task or scheduler state does not fit: {e}") from None
    s.last_eval = dict(ckpt.get("last_eval") or {})
    hist = ckpt.get("history") or {}
    s.history = HistoryRecorder.from_arrays({k: v.numpy() for k, v in hist.items()})
    s.group_specs = base_groups or s.group_specs
    s.journal = list(journal)
    return s


def _keep_saved_dtypes(optimizer: torch.optim.Optimizer, sd: dict) -> None:
    """Put back state that torch's load_state_dict cast to its parameter's dtype.

    torch casts floating state (lists of tensors too) to the dtype of the parameter it is
    keyed by: LBFGS's float64 direction and history over mixed float32/float64 tensors
    would come back as float32, ASGD's float32 eta of a float64 tensor as float64. A
    reopened session keeps what was saved, so it goes on bit for bit like the one never closed.
    """
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, saved in sd.get("state", {}).items():
        if not (isinstance(i, int) and 0 <= i < len(params) and params[i] in optimizer.state):
            continue
        live = optimizer.state[params[i]]
        for k, v in saved.items():
            if k in live and _dtypes(v) != _dtypes(live[k]):
                live[k] = _copy_to(v, params[i].device)


def _dtypes(v) -> list:
    if isinstance(v, torch.Tensor):
        return [v.dtype]
    if isinstance(v, (list, tuple)):
        return [d for x in v for d in _dtypes(x)]
    return []


def _copy_to(v, device):
    if isinstance(v, torch.Tensor):
        return v.to(device, copy=True)
    if isinstance(v, (list, tuple)):
        return type(v)(_copy_to(x, device) for x in v)
    return v


__all__ = ["save_session", "load_session", "pack", "unpack", "restore", "SESSION_EXT", "SpecError"]
