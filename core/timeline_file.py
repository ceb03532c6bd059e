"""The timeline on disk: branches as JSON, engine states and curves as tensors.

A ``.optimlab`` (version 2) keeps the whole timeline: every branch's spec and journal
(with the step count before each action), the checkpoints within the memory bound,
the stored data of loads, every branch's curves, the breakpoints, and where the
session stood (branch, step, head or not), so it reopens exactly there. Version 1
files (one spec, one journal, one head state) still open: they become a timeline
whose branches have no checkpoints, and a ``reset`` in their journal starts a branch.
"""
from __future__ import annotations

import numpy as np
import torch

from . import spec as specmod, trust
from .breakpoints import parse as parse_breakpoint
from .engine import Engine
from .series import SeriesSet
from .spec import GroupSpec, Reset, SpecError, Step
from .timeline import Journal, Timeline


class DamagedTimeline(ValueError):
    """The saved timeline does not hold together (the message says where)."""


# ----- engine states -----

def state_to_saveable(st: dict) -> dict:
    """An engine state with its spec objects as plain data (torch.load(weights_only=True) reads it)."""
    out = dict(st)
    out["groups"] = [specmod._drop_defaults(g) for g in st["groups"]]
    out["added"] = [specmod._drop_defaults(t) for t in st["added"]]
    names, groups, device = st["structure"]
    out["structure"] = [list(names), [list(g) for g in groups], device]
    out["last_eval"] = {k: float(v) for k, v in st["last_eval"].items()}
    return out


def state_from_saveable(d: dict) -> dict:
    need = {"step", "structure", "added", "groups", "params", "grads", "optimizer", "scheduler", "task", "grad_rng",
            "torch_rng", "loss", "last_eval"}
    if not isinstance(d, dict) or not need <= set(d):
        raise DamagedTimeline(f"an engine state lacks {', '.join(sorted(need - set(d or {})))}")
    st = dict(d)
    st["groups"] = [specmod._build(GroupSpec, g, "group") for g in d["groups"]]
    st["added"] = [specmod.tensor_from_dict(t) for t in d["added"]]
    names, groups, device = d["structure"]
    st["structure"] = (tuple(names), tuple(tuple(g) for g in groups), device)
    if not isinstance(st["step"], int) or st["step"] < 0:
        raise DamagedTimeline(f"an engine state has step {st['step']!r}")
    return st


# ----- branches -----

def _journal_doc(j: Journal) -> list:
    return [{"at": s0, **specmod.action_to_dict(a)} for s0, a in j.entries]


def _journal_from(doc) -> Journal:
    entries = []
    last = 0
    for item in doc:
        if not isinstance(item, dict) or not isinstance(item.get("at"), int) or isinstance(item.get("at"), bool):
            raise DamagedTimeline("a journal entry has no step ('at')")
        d = dict(item)
        at = d.pop("at")
        if at < last:
            raise DamagedTimeline("a journal's steps go backwards")
        a = specmod.action_from_dict(d)
        if isinstance(a, Step) and a.n < 1:
            raise DamagedTimeline("a journal has an empty step")
        last = at + (a.n if isinstance(a, Step) else 0)
        entries.append((at, a))
    return Journal(entries)


def timeline_doc(session, folder=None) -> dict:
    """The JSON part: branches (spec, journal, lineage), position, breakpoints."""
    tl = session.timeline
    session.flush()
    branches = []
    for b in tl.branches.values():
        spec = b.spec if folder is None else trust.relative_to(b.spec, folder)
        branches.append({"id": b.id, "parent": b.parent, "fork_step": b.fork_step, "inherits": b.inherits,
                         "reason": b.reason, "last_loss": b.last_loss, "threads": b.threads,
                         "spec": specmod.spec_to_dict(spec), "journal": _journal_doc(b.journal)})
    return {"current": tl.current, "at_head": session.at_head, "step": session.step_count,
            "index": session.position()[2],
            "budget": tl.checkpoints.budget, "branches": branches,
            "breakpoints": [[bp.text, bp.enabled] for bp in session.breakpoints]}


def timeline_tensors(session) -> dict:
    """The torch part: the engine's state, the checkpoints, the loads' data and the curves."""
    tl = session.timeline
    return {
        "head": state_to_saveable(session.engine.state()),
        "checkpoints": {f"{b}/{c.step}": state_to_saveable(c.state)
                        for b, lst in tl.checkpoints.by_branch.items() for c in lst},
        "blobs": dict(tl.blobs),
        "series": {str(b.id): {k: torch.from_numpy(np.asarray(v)) for k, v in b.series.to_arrays().items()}
                   for b in tl.branches.values()},
    }


def restore(doc: dict, ckpt: dict, base=None):
    """A Session from a version 2 document and its tensors."""
    from .session import Session
    t = doc.get("timeline")
    if not isinstance(t, dict) or not isinstance(t.get("branches"), list) or not t["branches"]:
        raise DamagedTimeline("session.json has no timeline")
    tl = None
    for bd in t["branches"]:
        spec = trust.with_base(specmod.spec_from_dict(bd.get("spec")), base)
        if tl is None:
            tl = Timeline(spec, int(t.get("budget", 0)) or 512 * 2 ** 20)
            tl.clear()
        parent = bd.get("parent")
        if parent is not None and parent not in tl.branches:
            raise DamagedTimeline(f"branch {bd.get('id')} names a parent {parent} that comes later or not at all")
        b = tl.new_branch(spec, parent, int(bd.get("fork_step", 0)), bool(bd.get("inherits")),
                          str(bd.get("reason", "")), journal=_journal_from(bd.get("journal", [])))
        if b.id != bd.get("id"):
            raise DamagedTimeline("the branches are not numbered in order")
        b.last_loss = bd.get("last_loss")
        b.threads = int(bd.get("threads", 0))
    series = ckpt.get("series") or {}
    for bid, b in tl.branches.items():
        arrays = series.get(str(bid))
        if arrays:
            b.series = SeriesSet.from_arrays({k: v.numpy() for k, v in arrays.items()})
    tl.blobs.update(ckpt.get("blobs") or {})
    for key, st in (ckpt.get("checkpoints") or {}).items():
        bid, _, step = str(key).partition("/")
        if int(bid) not in tl.branches:
            raise DamagedTimeline(f"a checkpoint belongs to no branch ({key})")
        state = state_from_saveable(st)
        state["_check"] = True  # read from a file: checked against the engine when first used
        tl.checkpoints.add(int(bid), int(step), state, Engine.state_bytes(state), tl.heads())
    current = t.get("current")
    if current not in tl.branches:
        raise DamagedTimeline(f"the current branch {current!r} does not exist")
    tl.current = current
    head = state_from_saveable(ckpt["head"])
    at_head = bool(t.get("at_head", True))
    end = tl.branch.end_step
    if head["step"] > end or (at_head and head["step"] != end):
        raise DamagedTimeline(f"the saved state is at step {head['step']}, but branch {current}'s journal "
                              f"ends at step {end}")
    index = t.get("index")
    if not at_head and not (isinstance(index, int) and 0 <= index <= len(tl.branch.journal.entries)):
        raise DamagedTimeline("the saved position has no valid journal index")
    s = Session.from_timeline(tl, head, None if at_head else index)
    s.set_breakpoints([parse_breakpoint(text).with_enabled(bool(on)) for text, on in t.get("breakpoints", [])])
    return s


def legacy_journal(actions, spec):
    """Version 1 journals: (branches as (spec, Journal)), a ``reset`` ending one branch."""
    out = [(spec, Journal())]
    step = 0
    for a in actions:
        if isinstance(a, Reset):
            out.append((spec, Journal()))
            step = 0
            continue
        out[-1][1].record(step, a)
        if isinstance(a, Step):
            step += a.n
    return out


def restore_v1(doc: dict, ckpt: dict, base=None):
    """A Session from a version 1 file: its head state, its journal, its history."""
    from .session import Session
    spec, journal = specmod.from_document(dict(doc, format=specmod.SPEC_FORMAT))
    spec = trust.with_base(spec, base)
    layout = doc.get("layout") or {}
    tl = Timeline(spec)
    tl.clear()
    parent = None
    for s, j in legacy_journal(journal, spec):
        b = tl.new_branch(s, parent, 0, False, "reset" if parent is not None else "", journal=j)
        parent = b.id
    tl.current = parent
    tl.blobs.update(ckpt.get("blobs") or {})
    engine = Engine(spec, tl.blobs)
    groups = [specmod._build(GroupSpec, g, "group") for g in layout.get("groups", [])] or list(engine.group_specs)
    added = [specmod.tensor_from_dict(t) for t in layout.get("added_tensors", [])] if engine.task is None else []
    names = tuple(engine.names) + tuple(t.name for t in added)
    head = {"step": int(layout.get("step", 0)), "added": added, "groups": groups,
            "structure": (names, tuple(g.tensors for g in groups), layout.get("device", spec.device)),
            "params": ckpt["params"], "grads": ckpt.get("grads") or {}, "optimizer": ckpt["optimizer"],
            "scheduler": ckpt.get("scheduler"), "task": ckpt.get("task"),
            "grad_rng": ckpt.get("grad_rng") if isinstance(ckpt.get("grad_rng"), torch.Tensor)
            else engine.grad_gen.get_state(),
            "torch_rng": torch.random.get_rng_state(), "loss": ckpt.get("loss"),
            "last_eval": dict(ckpt.get("last_eval") or {})}
    s = Session.from_timeline(tl, head)
    hist = ckpt.get("history") or {}
    if "step" in hist:
        steps = hist["step"].numpy().astype(np.int64)
        rows = [{} for _ in steps]
        for k, v in hist.items():
            if k in ("loss", "grad_norm", "update_norm", "val_loss", "val_accuracy") or (k.startswith("lr") and
                                                                                         k[2:].isdigit()):
                for r, x in zip(rows, v.numpy().tolist()):
                    r[k] = x
        ok = steps > 0
        s.timeline.branch.series.add_many(steps[ok], [r for r, o in zip(rows, ok) if o])
    return s


__all__ = ["timeline_doc", "timeline_tensors", "restore", "restore_v1", "DamagedTimeline", "SpecError"]
