"""What rebuilds a comparison when the process holding it ends: its runner process (killed for
memory, a crash in native code) or the window's own.

Each run of a comparison is the same run alone, and steps are deterministic, so its
configurations (``RunSpec``: spec, the branch actions at their steps, the data they load) and
the step it stood at are enough: built again and stepped in lockstep to that step, the runs
have the values they had. ``recovery_runs`` gives them for any comparison (a run opened from
a file too: its journal's actions become its script). ``to_json`` writes them as one small JSON
document (``FORMAT``), ``read`` reads one back through the same checks as a ``.json`` session
(strict JSON, every spec checked, loads' data read with ``weights_only``); any problem is one
LoadError/SpecError naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from msgspec import Meta

from . import files, schema, session_file, spec as specmod
from .compare import MAX_RUNS, MIN_RUNS, Comparison, Run, RunSpec, check_same_problem
from .spec import SpecError, Step

FORMAT = "optimlab-comparison-recovery"
VERSION = 1


@dataclass(frozen=True)
class _RunDoc:
    label: schema.Text
    session: dict[schema.Word, Any]  # a .json session's document: the spec, no journal
    script: specmod.Entries = ()


@dataclass(frozen=True)
class _Doc:
    format: schema.Word
    version: Annotated[int, Meta(ge=1)]
    step: Annotated[int, Meta(ge=0, le=schema.MAX_STEPS)]
    runs: Annotated[tuple[_RunDoc, ...], Meta(min_length=MIN_RUNS, max_length=MAX_RUNS)]
    blobs: Annotated[dict[schema.Word, str], Meta(max_length=specmod.MAX_JOURNAL)] | None = None


def run_source(run: Run) -> RunSpec:
    """The configuration that rebuilds ``run`` from the runs' first step: what it was made from,
    or, for a run opened from a file, its branch (the journal's actions at their steps, as
    ``RunSpec.from_branch`` promotes one) followed by the actions it has still to replay."""
    if run.source is not None:
        return run.source
    s = run.session
    rs = RunSpec.from_branch(s, s.timeline.branch.id, run.label)
    later = tuple(run.script)
    used = {getattr(a, "blob", "") for _, a in later} - {""}
    blobs = {**rs.blobs, **{k: v for k, v in s.timeline.blobs.items() if k in used}}
    return RunSpec(run.label, rs.spec, rs.script + later, blobs)


def recovery_runs(c: Comparison) -> tuple[RunSpec, ...]:
    return tuple(r.source if r.source is not None else c.in_run(r.id, run_source) for r in c.runs)


def to_json(runs, step: int) -> bytes:
    """The recovery document of configurations ``runs`` standing at lockstep step ``step``; the
    data their loads and checkpoints refer to is stored once (base64 of torch.save)."""
    blobs: dict = {}
    docs = []
    for rs in runs:
        blobs.update(rs.blobs)
        docs.append({"label": rs.label, "session": specmod.document(rs.spec),
                     "script": [{"at": s0, **specmod.action_to_dict(a)} for s0, a in rs.script]})
    doc = {"format": FORMAT, "version": VERSION, "step": step, "runs": docs}
    if blobs:
        doc["blobs"] = session_file.encode_blobs(blobs)
    return (specmod.pretty_json(doc) + "\n").encode()


def read(path) -> tuple[list[RunSpec], int]:
    """The configurations and the step a recovery document holds."""
    name = Path(path).name
    with files.open_regular(path) as f:
        raw = session_file._read_json_capped(f, name)
    with schema.in_file(name, (SpecError, files.LoadError)):
        try:
            text = raw.decode()
        except UnicodeDecodeError as e:
            raise files.LoadError(f"it is not text ({e})") from None
        data = schema.parse_json(text, name)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise files.LoadError("it is not what optimlab keeps to recover a comparison")
        if isinstance(data.get("version"), int) and data["version"] > VERSION:
            raise files.LoadError(f"it was written by a newer optimlab (version {data['version']})")
        doc = schema.convert(data, _Doc, "")
        blobs = session_file.decode_blobs(doc.blobs or {})
        runs = []
        for i, rd in enumerate(doc.runs):
            spec, journal = specmod.from_document(rd.session, f"runs[{i}].session")
            if journal:
                raise files.LoadError(f"runs[{i}].session has a journal; a run's actions are its script")
            script = script_from(rd.script, f"runs[{i}]", spec.start_step)
            used = {getattr(a, "blob", "") for _, a in script} - {""}
            if spec.resume is not None:
                used.add(spec.resume.blob)
            missing = sorted(used - set(blobs))
            if missing:
                raise files.LoadError(f"runs[{i}] loads data it does not hold ({missing[0]!r})")
            runs.append(RunSpec(rd.label, spec, script, {k: blobs[k] for k in used}))
        if len({rs.label for rs in runs}) != len(runs):
            raise files.LoadError("two runs have the same label")
        for rs in runs[1:]:
            check_same_problem(runs[0].spec, rs.spec, rs.label)
        if doc.step < runs[0].spec.start_step:
            raise files.LoadError(f"its step {doc.step:,} is before the runs' first step")
    return runs, doc.step


def script_from(items, where: str, start: int = 0) -> tuple:
    """A run's script (``(step, action)``, edits only, in step order) from its JSON items."""
    script, last = [], start
    for i, item in enumerate(items):
        at = item.get("at") if isinstance(item, dict) else None
        if not isinstance(at, int) or isinstance(at, bool) or at < last:
            raise files.LoadError(f"{where}.script[{i}] has no valid step ('at') after the one before")
        a = specmod.action_from_dict({k: v for k, v in item.items() if k != "at"}, f"{where}.script[{i}]")
        if isinstance(a, Step):
            raise files.LoadError(f"{where}.script[{i}] is a step; a run's script holds edits only")
        script.append((at, a))
        last = at
    return tuple(script)


__all__ = ["FORMAT", "read", "recovery_runs", "run_source", "script_from", "to_json"]
