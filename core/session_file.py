"""Whole sessions on disk.

``NAME.optimlab`` is a zip holding ``session.json`` (human-readable: the current branch's
spec and journal, and the whole timeline: every branch's spec, journal and lineage, where
the session stood, the breakpoints) and ``checkpoint.pt`` (the engine's state, the
checkpoints, the loads' data, every branch's curves; see ``core.timeline_file``), read
with weights_only=True. It reopens at the branch and step it was saved at, without
replay, and continues bit-identically to a session that was never closed.

A plain ``.json`` file holds the current branch's spec and journal, with the data of
its loads embedded, and is replayed on open.
"""
from __future__ import annotations

import base64
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from . import files, limits, spec as specmod, timeline_file, trust
from .session import NonFinite, Session, StepError, default_index
from .spec import LoadOptimizer, LoadParams, SpecError

SESSION_FORMAT = "optimlab-session"
SESSION_VERSION = 2
SESSION_EXT = ".optimlab"
MAX_MEMBERS = 16  # a session holds two; room for what a later version may add
MAX_JSON_BYTES = 64_000_000  # session.json in a .optimlab: specs and journals (tensors are in checkpoint.pt)
MAX_JSON_SESSION_BYTES = 1_000_000_000  # a .json session may carry its loads' data (base64)
JSON_FACTOR = 4  # memory per byte of JSON: the bytes, the text decoded from them, the objects parsed


def save_session(session: Session, path) -> None:
    """Write the session atomically: a .optimlab (the whole timeline), or, if ``path`` ends in
    .json, the current branch's spec and journal with the data of its loads embedded."""
    files.save_target(path)  # a bad target is refused before the work of packing
    path = Path(path)
    if path.suffix.lower() == ".json":
        text = specmod.pretty_json(json_document(session, path.parent)) + "\n"
        files.atomic_write(path, lambda f: f.write(text.encode()))
        return
    data = pack(session, path.parent)
    files.atomic_write(path, lambda f: f.write(data))


def json_document(session: Session, folder=None) -> dict:
    """Spec + journal of the current branch; the loads' data embedded (base64 of torch.save), so
    it always reopens; the step it stood at, so it reopens there."""
    spec = session.spec if folder is None else trust.relative_to(session.spec, folder)
    journal = session.journal
    used = {a.blob for a in journal if isinstance(a, (LoadOptimizer, LoadParams)) and a.blob}
    if session.spec.resume is not None:  # the checkpoint it resumes: the file reopens without it
        used.add(session.spec.resume.blob)
    return _json_doc(spec, journal, {k: session.blobs[k] for k in used},
                     None if session.at_head else session.step_count, between_index(session))


def between_index(session: Session) -> int | None:
    """The journal entries applied when an undo left the session between the actions of its
    step (``Session.goto``'s ``index``); None where reopening at the step stands there anyway."""
    branch, step, index = session.position()
    j = session.timeline.branches[branch].journal
    return None if index == default_index(j, step, j.end_step) else index


def _json_doc(spec, journal, blobs: dict, step: int | None, index: int | None = None) -> dict:
    """A .json session's document: spec, journal, the loads' data embedded (base64 of
    torch.save), and the step it stands at when rewound (None: its last; ``index``: the journal
    entries applied, when between the step's actions)."""
    doc = specmod.document(spec, journal)
    if blobs:
        doc["blobs"] = encode_blobs(blobs)
    if step is not None:
        doc["position"] = {"step": step} if index is None else {"step": step, "index": index}
    return doc


def encode_blobs(blobs: dict) -> dict:
    """Loads' data as a .json document embeds it: base64 of torch.save, by key."""
    return {k: base64.b64encode(files.to_bytes(blobs[k])).decode() for k in sorted(blobs)}


def decode_blobs(b64s: dict) -> dict:
    """``encode_blobs`` undone, each read with weights_only; a bad one is one LoadError."""
    blobs = {}
    for k, b64 in b64s.items():
        try:
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, TypeError):
            raise files.LoadError(f"the stored data {k!r} is not valid base64") from None
        blobs[k] = files.torch_read(io.BytesIO(raw), name=f"The stored data {k!r}")
    return blobs


CURVES_BLOB = "optimlab:recovery-curves"  # a recovery file's other branches' curves (never a session's data)


def recovery_json(spec, journal, blobs: dict, step: int | None = None, timeline: dict | None = None,
                  curves: dict | None = None, index: int | None = None) -> bytes:
    """A .json session (as ``json_document`` writes one) from the state a window keeps for
    recovery (``core.edits.recovery_state``): the branch's spec and journal, the loads' data
    embedded, the step it stands at when rewound (``step``; None: its last; ``index`` between
    its actions, ``between_index``). With ``timeline``
    (the state's document's) and ``curves`` (``{signature: (series arrays, distributions)}``)
    the other branches too: ``core.edits.reopen_recovery`` rebuilds them; opened as a plain
    .json session it is the current branch."""
    blobs = dict(blobs)
    if curves:
        blobs[CURVES_BLOB] = {str(sig[0]): {"series": {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()},
                                            "dists": dists} for sig, (arrays, dists) in curves.items()}
    doc = _json_doc(spec, journal, blobs, step, index)
    if timeline is not None:
        doc["timeline"] = timeline
    return (specmod.pretty_json(doc) + "\n").encode()


def pack(session: Session, folder=None) -> bytes:
    """The whole session as the bytes of a .optimlab file (also how a session travels
    to the runner process). With ``folder`` (where the file goes), a script path inside
    it is written relative to it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("session.json", specmod.pretty_json(document(session, folder)).encode())
        z.writestr("checkpoint.pt", files.to_bytes(timeline_file.timeline_tensors(session)))
    return buf.getvalue()


def document(session: Session, folder=None) -> dict:
    """session.json of a .optimlab file: the current branch's spec and journal, the timeline."""
    spec = session.spec if folder is None else trust.relative_to(session.spec, folder)
    doc = specmod.document(spec, session.journal)
    doc["format"] = SESSION_FORMAT
    doc["version"] = SESSION_VERSION
    doc["timeline"] = timeline_file.timeline_doc(session, folder)
    return doc


def load_session(path) -> Session:
    """Open a .optimlab or .json session; any problem is one LoadError/SpecError, nothing half-built."""
    name = Path(path).name
    base = Path(path).parent
    with files.open_regular(path) as f:
        if zipfile.is_zipfile(f):
            return unpack(f, name, base)
        data = _read_json_capped(f, name)
    _, read, journal, blobs = _json_parts(data, name)
    return json_session(read, journal, blobs, name, base)


def read_json_session(path) -> tuple[dict, "specmod.Document", list, dict]:
    """A .json session file's parsed JSON, its checked document, journal and the data it embeds
    (a recovery file's curves among them, ``CURVES_BLOB``); one LoadError/SpecError naming it."""
    name = Path(path).name
    with files.open_regular(path) as f:
        data = _read_json_capped(f, name)
    return _json_parts(data, name)


def _json_parts(data: bytes, name: str):
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise files.LoadError(f"{name} is neither an optimlab session nor JSON ({e})") from None
    with specmod.in_file(name, (SpecError, files.LoadError)):
        doc = specmod.parse_json(text, name)
        read, journal = specmod.read_document(doc, name)
        return doc, read, journal, decode_blobs(read.blobs or {})


def json_session(read, journal, blobs: dict, name: str, base) -> Session:
    """The session a .json document describes, replayed to where it stood (``name`` in every
    refusal, and in a replayed step's failure)."""
    blobs = {k: v for k, v in blobs.items() if k != CURVES_BLOB}  # a recovery file's: not the session's data
    with specmod.in_file(name, (SpecError, files.LoadError, StepError, NonFinite)):
        s = Session(trust.with_base(read.spec, base), journal, blobs=blobs)
        if read.position is not None:
            s.goto(read.position.step, index=read.position.index)
        return s


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


def unpack(data, name: str = "the session", base=None) -> Session:
    """The session in ``data`` (a .optimlab file's bytes, or the file open for binary
    reading); ``name`` is used in messages; a relative script path is relative to ``base``
    (the file's folder)."""
    text, ckpt_bytes = _read_zip(data, name)
    return from_parts(text, lambda: files.torch_read(io.BytesIO(ckpt_bytes), name=f"The checkpoint in {name}"),
                      name, base)


def from_parts(text: str, read_ckpt, name: str, base=None, source: str | None = None) -> Session:
    """The session of a session.json's ``text`` and its checkpoint's tensors (``read_ckpt()``,
    called once the text passed: weights_only); every refusal is one LoadError/SpecError naming
    ``name``."""
    source = source or f"{name} (session.json)"
    doc = specmod.parse_json(text, source)
    if not isinstance(doc, dict) or doc.get("format") != SESSION_FORMAT:
        raise files.LoadError(f"{name} is not an optimlab session")
    ckpt = read_ckpt()
    try:
        with specmod.in_file(name, (SpecError, files.LoadError)):  # every refusal names the file
            return restore(doc, ckpt, base, source)
    except (SpecError, files.LoadError):
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise files.LoadError(f"{name} is damaged: its session.json and checkpoint do not agree ({first})") from None


def restore(doc: dict, ckpt: dict, base=None, source: str = "") -> Session:
    """Rebuild a session from its file (no replay); version 1 files too. ``source`` names
    session.json in messages."""
    if not isinstance(ckpt, dict):
        raise files.LoadError("The session's checkpoint is not a dict")
    version = doc.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        specmod.read_document(dict(doc, format=specmod.SPEC_FORMAT), source)  # says what is wrong with it
    if version > SESSION_VERSION:
        raise files.LoadError(f"This session was written by a newer optimlab (version {version})")
    if version >= 2:
        if "head" not in ckpt:
            raise files.LoadError("The session's checkpoint is incomplete (no head state)")
        return timeline_file.restore(doc, ckpt, base, source)
    if "params" not in ckpt or "optimizer" not in ckpt:
        raise files.LoadError("The session's checkpoint is incomplete (no params or optimizer state)")
    return timeline_file.restore_v1(doc, ckpt, base, source)


__all__ = ["save_session", "load_session", "pack", "unpack", "document", "from_parts", "restore", "SESSION_EXT",
           "SpecError"]
