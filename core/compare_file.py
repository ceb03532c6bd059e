"""A comparison on disk: one zip holding every run's session and a small JSON.

``NAME.optimlab-compare`` (version 2) holds ``comparison.json`` (the step, each run's id,
label, the step it joined at, why it halted, the branch actions it has still to replay), one
``run<id>.json`` per run (the session.json of ``core.session_file``: its whole timeline, so it
reopens where it stood and continues bit-identically), ``tensors.pt`` (every run's checkpoint
tensors, ``{"run<id>": ...}``, each distinct tensor stored once: the runs start from the same
tensors, and a comparison of a resumed checkpoint holds that checkpoint in every run) and
``cross.pt`` (the series between runs, plain tensors). Version 1 files (one whole
``run<id>.optimlab`` per run) still open. Reading goes through the same checks as a
session's: the zip's directory (``core.limits``), strict JSON (``core.schema``),
``torch.load(weights_only=True)``; any problem is one sentence naming the file, and nothing
is half-built.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from msgspec import Meta

from . import compare_recovery, files, limits, schema, session_file, timeline_file
from . import spec as specmod
from .compare import MAX_RUNS, MIN_RUNS, Comparison, Run, check_same_problem, draws_globally, global_rngs
from .compare_watch import CrossWatch, parse_column
from .series import SeriesSet
from .spec import SpecError
from .trees import map_tensors

FORMAT = "optimlab-comparison"
VERSION = 2
EXT = ".optimlab-compare"
MAX_MEMBERS = 16  # comparison.json, cross.pt, tensors.pt and one file per run (at most 6)
SHARE_MIN_BYTES = 1024  # smaller tensors are stored with each run (finding twins costs more than they take)
MAX_JSON_BYTES = 64_000_000
Steps = Annotated[int, Meta(ge=0, le=schema.MAX_STEPS)]


@dataclass(frozen=True)
class RunDoc:
    id: Annotated[int, Meta(ge=0, le=1_000_000)]
    label: schema.Text
    joined: Steps = 0
    halted: schema.Text = ""
    script: specmod.Entries = ()


@dataclass(frozen=True)
class ComparisonDoc:
    format: schema.Word
    version: Annotated[int, Meta(ge=1)]
    step: Steps
    next_id: Annotated[int, Meta(ge=0, le=1_000_000)]
    runs: Annotated[tuple[RunDoc, ...], Meta(min_length=MIN_RUNS, max_length=MAX_RUNS)]


def _member(run_id: int, version: int = VERSION) -> str:
    return f"run{run_id}.json" if version >= 2 else f"run{run_id}.optimlab"


def pack(c: Comparison, folder=None) -> bytes:
    """The bytes of a .optimlab-compare file (``folder``: where it goes, for relative script paths)."""
    c.flush()
    parts = {r.id: c.in_run(r.id, _run_parts, folder) for r in c.runs}
    doc = {"format": FORMAT, "version": VERSION, "step": c.step_count, "next_id": c._next_id, "runs": [
        {"id": r.id, "label": r.label, "joined": r.joined, "halted": r.halted, "script": parts[r.id][0]}
        for r in c.runs]}
    docs = {rid: p[1] for rid, p in parts.items()}
    tensors = {f"run{rid}": p[2] for rid, p in parts.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("comparison.json", specmod.pretty_json(doc).encode())
        for run_id, text in docs.items():
            z.writestr(_member(run_id), text)
        z.writestr("tensors.pt", files.to_bytes(share_twins(tensors)))
        cross = {k: torch.from_numpy(np.asarray(v)) for k, v in c.watch.series.to_arrays().items()}
        z.writestr("cross.pt", files.to_bytes(cross))
    return buf.getvalue()


def _run_parts(run: Run, folder) -> tuple:
    """(Where the run lives: Comparison.in_run.) Its script to replay, session document and
    timeline tensors."""
    script = [{"at": s0, **specmod.action_to_dict(a)} for s0, a in run.script]
    with run.own_rng():  # the run's head state carries its own global RNG state
        text = specmod.pretty_json(session_file.document(run.session, folder)).encode()
        tensors = timeline_file.timeline_tensors(run.session)
    return script, text, tensors


def share_twins(tree):
    """``tree`` (dicts, lists and tuples of tensors and plain values) with every tensor whose
    bytes, dtype, shape and strides equal an earlier one's replaced by that earlier one, so
    torch.save stores it once. Equal means the same bits (0.0 and -0.0 are not twins)."""
    first: dict = {}

    def twin(t: torch.Tensor) -> torch.Tensor:
        if t.layout != torch.strided or t.is_sparse or t.nbytes < SHARE_MIN_BYTES:
            return t
        flat = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        key = (t.dtype, tuple(t.shape), t.stride(), t.device.type, t.requires_grad,
               hashlib.blake2b(flat.numpy(), digest_size=16).digest())
        seen = first.get(key)
        if seen is not None and torch.equal(seen[1], flat):
            return seen[0]
        first.setdefault(key, (t, flat))
        return t
    return map_tensors(tree, twin)


def _unshared(tree, seen: set):
    """``tree`` with each tensor whose storage an earlier one holds (``seen``, updated) copied:
    runs stored as twins must not share their tensors once open."""
    def own(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr() if t.layout == torch.strided else 0
        if not ptr:
            return t
        if ptr in seen:
            return t.clone()
        seen.add(ptr)
        return t
    return map_tensors(tree, own)


def save(c: Comparison, path) -> None:
    """Write the comparison atomically (a crash mid-save leaves the old file)."""
    files.save_target(path)
    data = pack(c, Path(path).parent)
    files.atomic_write(path, lambda f: f.write(data))


def load(path) -> Comparison:
    name = Path(path).name
    with files.open_regular(path) as f:
        return unpack(f, name, Path(path).parent)


def unpack(source, name: str = "the comparison", base=None) -> Comparison:
    """The comparison in ``source`` (bytes or a binary file); one LoadError/SpecError naming ``name``."""
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    if not zipfile.is_zipfile(fp):
        raise files.LoadError(f"{name} is not an optimlab comparison (not a zip file)")
    with limits.open_zip(fp, name, MAX_MEMBERS, {"comparison.json": MAX_JSON_BYTES}, error=files.LoadError) as z:
        infos = {i.filename: i for i in z.infolist()}
        if "comparison.json" not in infos or "cross.pt" not in infos:
            raise files.LoadError(f"{name} is not an optimlab comparison (no comparison.json/cross.pt)")
        limits.check_bytes(sum(i.file_size for i in infos.values()), f"Opening {name}", error=files.LoadError)
        raw = limits.read_member(z, infos["comparison.json"], name, error=files.LoadError)
        with schema.in_file(name, (SpecError, files.LoadError)):
            doc = _read_doc(raw)
            members = {}
            for rd in doc.runs:
                info = infos.get(_member(rd.id, doc.version))
                if info is None:
                    raise files.LoadError(f"run {rd.id} ({rd.label}) has no {_member(rd.id, doc.version)}")
                if doc.version >= 2 and info.file_size > session_file.MAX_JSON_BYTES:
                    raise files.LoadError(f"{info.filename} is over {limits.human(session_file.MAX_JSON_BYTES)}")
                members[rd.id] = limits.read_member(z, info, name, error=files.LoadError)
            if doc.version >= 2 and "tensors.pt" not in infos:
                raise files.LoadError("it has no tensors.pt")
            tensor_bytes = limits.read_member(z, infos["tensors.pt"], name, error=files.LoadError) \
                if doc.version >= 2 else None
            cross_bytes = limits.read_member(z, infos["cross.pt"], name, error=files.LoadError)
    with schema.in_file(name, (SpecError, files.LoadError)):
        cross = files.torch_read(io.BytesIO(cross_bytes), name="cross.pt")
        watch = _watch(cross, {rd.id for rd in doc.runs})
        if tensor_bytes is None:  # version 1: each run a whole .optimlab
            runs = [_run(rd, session_file.unpack(members[rd.id], f"{name} ({rd.label})", base), doc.step)
                    for rd in doc.runs]
        else:
            runs = _runs_v2(doc, members, tensor_bytes, name, base)
        for r in runs[1:]:
            check_same_problem(runs[0].session.spec, r.session.spec, r.label)
        if doc.next_id <= max(r.id for r in runs):
            raise files.LoadError("its next run id is already taken")
    return Comparison.restore(runs, doc.step, watch, doc.next_id)


def _read_doc(raw: bytes) -> ComparisonDoc:
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        raise files.LoadError(f"comparison.json is not text ({e})") from None
    data = schema.parse_json(text, "comparison.json")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise files.LoadError("this is not an optimlab comparison")
    if isinstance(data.get("version"), int) and data["version"] > VERSION:
        raise files.LoadError(f"this comparison was written by a newer optimlab (version {data['version']})")
    doc = schema.convert(data, ComparisonDoc, "")
    ids = [rd.id for rd in doc.runs]
    if len(set(ids)) != len(ids) or len({rd.label for rd in doc.runs}) != len(ids):
        raise files.LoadError("two runs have the same id or label")
    return doc


def _runs_v2(doc: ComparisonDoc, members: dict, tensor_bytes: bytes, name: str, base) -> list[Run]:
    tensors = files.torch_read(io.BytesIO(tensor_bytes), name="tensors.pt")
    if not isinstance(tensors, dict) or set(tensors) != {f"run{rd.id}" for rd in doc.runs}:
        raise files.LoadError("tensors.pt does not hold the tensors of its runs")
    seen: set = set()
    runs = []
    for rd in doc.runs:
        try:
            text = members[rd.id].decode()
        except UnicodeDecodeError as e:
            raise files.LoadError(f"{_member(rd.id)} is not text ({e})") from None
        ckpt = _unshared(tensors[f"run{rd.id}"], seen)
        session = session_file.from_parts(text, lambda ckpt=ckpt: ckpt, f"{name} ({rd.label})", base,
                                          source=f"{name} ({_member(rd.id)})")
        runs.append(_run(rd, session, doc.step))
    return runs


def _run(rd: RunDoc, session, step: int) -> Run:
    rng = global_rngs() if draws_globally(session.spec) else None  # restore set them to the run's
    script = compare_recovery.script_from(rd.script, f"runs[{rd.label}]", session.step_count)
    stands = session.step_count
    if (stands != step and not rd.halted) or stands > step or rd.joined > step:
        raise files.LoadError(f"run {rd.label} stands at step {stands:,}, the comparison at step {step:,}")
    return Run(rd.id, rd.label, session, script, rd.joined, rd.halted, rng)


def _watch(cross, ids: set[int]) -> CrossWatch:
    if not isinstance(cross, dict) or "grid" not in cross:
        raise files.LoadError("cross.pt holds no series")
    arrays = {}
    for k, v in cross.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise files.LoadError("cross.pt holds something other than named tensors")
        col = k.partition("/")[0]
        if k != "grid":
            p = parse_column(col)
            if p is None or not {p[1], p[2]} <= ids:
                raise files.LoadError(f"cross.pt has a series {col!r} of no pair of its runs")
        arrays[k] = v.numpy()
    w = CrossWatch()
    try:
        w.series = SeriesSet.from_arrays(arrays)
    except (ValueError, TypeError) as e:
        raise files.LoadError(f"cross.pt: {e}") from None
    return w
