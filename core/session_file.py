"""Whole sessions on disk: spec + journal (JSON) and a checkpoint (torch.save), in one zip.

``NAME.optimlab`` is a zip holding ``session.json`` (human-readable: spec, journal,
current group layout) and ``checkpoint.pt`` (tensors, gradients, optimizer state,
the gradient RNG state, history, stored state_dicts), read with weights_only=True.
A plain ``.json`` file holds only spec + journal and is replayed on open.
Reopening a saved session continues bit-identically to one that was never closed.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from . import files, limits, spec as specmod
from .history import HistoryRecorder
from .session import Session
from .spec import AddGroup, GroupSpec, SpecError

SESSION_FORMAT = "optimlab-session"
SESSION_VERSION = 1
SESSION_EXT = ".optimlab"
MAX_MEMBERS = 16  # a session holds two; room for what a later version may add
MAX_JSON_BYTES = 64_000_000  # session.json in a .optimlab: specs and journals (tensors are in checkpoint.pt)
MAX_JSON_SESSION_BYTES = 1_000_000_000  # a .json session may carry its loads' data (base64)
JSON_FACTOR = 4  # memory per byte of JSON: the bytes, the text decoded from them, the objects parsed


def _layout(session: Session) -> dict:
    added = session.tensor_specs[len(session.spec.tensors):]
    return {"device": session.device, "step": session.step_count,
            "groups": [specmod._drop_defaults(g) for g in session.group_specs],
            "added_tensors": [specmod._drop_defaults(t) for t in added]}


def save_session(session: Session, path) -> None:
    """Write the session atomically (JSON spec only if ``path`` ends in .json)."""
    files.save_target(path)  # a bad target is refused before the work of packing
    if Path(path).suffix.lower() == ".json":
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
    name = Path(path).name
    with files.open_regular(path) as f:
        if zipfile.is_zipfile(f):
            return unpack(f, name)
        data = _read_json_capped(f, name)
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise files.LoadError(f"{name} is neither an optimlab session nor JSON ({e})") from None
    spec, journal = specmod.loads(text)
    return Session(spec, journal)


def _read_json_capped(f, name: str) -> bytes:
    """A .json session's bytes: at most MAX_JSON_SESSION_BYTES, and only if memory allows
    parsing them; a file that grows while it is read still stops at the cap."""
    too_big = f"{name} is over {limits.human(MAX_JSON_SESSION_BYTES)}, the most a .json session may be"
    size = os.fstat(f.fileno()).st_size
    if size > MAX_JSON_SESSION_BYTES:
        raise files.LoadError(too_big)
    limits.check_bytes(size * JSON_FACTOR, f"Opening {name}", error=files.LoadError)
    f.seek(0)
    data = bytearray()
    while len(data) <= MAX_JSON_SESSION_BYTES:  # in chunks: read(n) would set n bytes aside first
        chunk = f.read(min(16 << 20, MAX_JSON_SESSION_BYTES + 1 - len(data)))
        if not chunk:
            return bytes(data)
        data += chunk
    raise files.LoadError(too_big)


def _read_zip(source, name: str) -> tuple[str, bytes]:
    """session.json's text and checkpoint.pt's bytes, after the zip's directory passed
    every check in core.limits (and the memory for them is there)."""
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with limits.open_zip(fp, name, MAX_MEMBERS, {"session.json": MAX_JSON_BYTES}, error=files.LoadError) as z:
        infos = {i.filename: i for i in z.infolist()}
        if "session.json" not in infos or "checkpoint.pt" not in infos:
            raise files.LoadError(f"{name} is not an optimlab session (no session.json/checkpoint.pt)")
        need = infos["session.json"].file_size + infos["checkpoint.pt"].file_size
        limits.check_bytes(need, f"Opening {name}", error=files.LoadError)
        raw = limits.read_member(z, infos["session.json"], name, error=files.LoadError)
        ckpt_bytes = limits.read_member(z, infos["checkpoint.pt"], name, error=files.LoadError)
    try:
        return raw.decode(), ckpt_bytes
    except UnicodeDecodeError as e:
        raise files.LoadError(f"{name} is damaged: {e}") from None


def unpack(data, name: str = "the session") -> Session:
    """The session in ``data`` (a .optimlab file's bytes, or the file open for binary
    reading); ``name`` is used in messages."""
    text, ckpt_bytes = _read_zip(data, name)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise files.LoadError(f"{name} has a damaged session.json: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != SESSION_FORMAT:
        raise files.LoadError(f"{name} is not an optimlab session")
    ckpt = files.torch_read(io.BytesIO(ckpt_bytes), name=f"The checkpoint in {name}")
    try:
        return restore(doc, ckpt)
    except (SpecError, files.LoadError):
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise files.LoadError(f"{name} is damaged: its session.json and checkpoint do not agree ({first})") from None


def restore(doc: dict, ckpt: dict) -> Session:
    """Rebuild a session from its checkpoint (no replay)."""
    doc = dict(doc, format=specmod.SPEC_FORMAT)
    spec, journal = specmod.from_document(doc)
    layout = doc.get("layout") or {}
    if not isinstance(ckpt, dict) or "params" not in ckpt or "optimizer" not in ckpt:
        raise files.LoadError("The session's checkpoint is incomplete (no params or optimizer state)")
    blobs = ckpt.get("blobs") or {}
    base_groups = [specmod._build(GroupSpec, g, "group") for g in layout.get("groups", [])]
    added = [specmod.tensor_from_dict(t) for t in layout.get("added_tensors", [])]
    # the spec's own groups as they are now (hyperparameters come back with the optimizer state)
    s = Session(spec, blobs=blobs)
    n_base = len(s.group_specs)
    by_name = {t.name: t for t in added}
    for g in base_groups[n_base:]:
        s._do_addgroup(AddGroup(tuple(by_name[n] for n in g.tensors), g.hparams))
    if layout.get("device", spec.device) != s.device:
        s._do_setdevice(specmod.SetDevice(layout["device"]))
    files.check_params(s, ckpt["params"])
    s.load_params(ckpt["params"])
    s.load_optimizer_state(ckpt["optimizer"])
    for n, p in s.params.items():
        g = ckpt.get("grads", {}).get(n)
        p.grad = None if g is None else g.to(p.device)
    if isinstance(ckpt.get("grad_rng"), torch.Tensor):
        s.grad_gen.set_state(ckpt["grad_rng"])
    loss = ckpt.get("loss")
    s.loss = loss.to(s.device) if isinstance(loss, torch.Tensor) else None
    s.step_count = int(layout.get("step", 0))
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


__all__ = ["save_session", "load_session", "pack", "unpack", "restore", "SESSION_EXT", "SpecError"]
