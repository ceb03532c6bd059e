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

from . import schema, spec as specmod, trust
from .breakpoints import parse as parse_breakpoint
from .distributions import Distributions
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
    if st.get("numpy_rng") is not None:  # numpy's tuple as tensors and numbers (weights_only reads them)
        kind, keys, pos, has_gauss, cached = st["numpy_rng"]
        out["numpy_rng"] = {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                            "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}
    return out


def _numpy_rng_from(d):
    """numpy's generator state from ``state_to_saveable``'s form, checked (a damaged one is refused)."""
    ok = (isinstance(d, dict) and d.get("kind") == "MT19937" and isinstance(d.get("keys"), torch.Tensor)
          and tuple(d["keys"].shape) == (624,) and isinstance(d.get("pos"), int) and 0 <= d["pos"] <= 624
          and isinstance(d.get("has_gauss"), int) and isinstance(d.get("cached"), float))
    if not ok or not bool(((d["keys"] >= 0) & (d["keys"] < 2 ** 32)).all()):
        raise DamagedTimeline("an engine state has a damaged numpy generator state")
    return ("MT19937", d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached"])


def state_from_saveable(d: dict) -> dict:
    need = {"step", "structure", "added", "groups", "params", "grads", "optimizer", "scheduler", "task", "grad_rng",
            "torch_rng", "loss", "last_eval"}
    if not isinstance(d, dict) or not need <= set(d):
        raise DamagedTimeline(f"an engine state lacks {', '.join(sorted(need - set(d or {})))}")
    st = dict(d)
    st["groups"] = [schema.convert(g, GroupSpec, f"groups[{i}]") for i, g in enumerate(d["groups"])]
    st["added"] = [specmod.tensor_from_dict(t, f"added[{i}]") for i, t in enumerate(d["added"])]
    names, groups, device = d["structure"]
    st["structure"] = (tuple(names), tuple(tuple(g) for g in groups), device)
    if not isinstance(st["step"], int) or st["step"] < 0:
        raise DamagedTimeline(f"an engine state has step {st['step']!r}")
    if d.get("numpy_rng") is not None:
        st["numpy_rng"] = _numpy_rng_from(d["numpy_rng"])
    return st


# ----- branches -----

def _journal_doc(j: Journal) -> list:
    return [{"at": s0, **specmod.action_to_dict(a)} for s0, a in j.entries]


def _journal_from(entries, where: str) -> Journal:
    out = []
    last = 0
    for i, item in enumerate(entries):
        at = item.get("at")
        if not isinstance(at, int) or isinstance(at, bool) or not 0 <= at <= 2 ** 53:
            raise DamagedTimeline(f"{where}[{i}] has no valid step ('at')")
        if at < last:
            raise DamagedTimeline(f"{where}[{i}]: the journal's steps go backwards")
        a = specmod.action_from_dict({k: v for k, v in item.items() if k != "at"}, f"{where}[{i}]")
        last = at + (a.n if isinstance(a, Step) else 0)
        out.append((at, a))
    return Journal(out)


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
        "distributions": {str(b.id): b.dists.to_saved() for b in tl.branches.values() if b.dists.n},
    }


def restore(doc: dict, ckpt: dict, base=None, source: str = ""):
    """A Session from a version 2 document and its tensors."""
    with schema.in_file(source, (SpecError, DamagedTimeline)):
        return _restore(doc, ckpt, base, source)


def _restore(doc: dict, ckpt: dict, base, source: str):
    from .session import Session
    d, _ = specmod.read_document(dict(doc, format=specmod.SPEC_FORMAT, version=specmod.SPEC_VERSION), source)
    t = d.timeline
    if t is None:
        raise DamagedTimeline("session.json has no timeline")
    tl = Timeline(t.branches[0].spec, t.budget)
    tl.clear()
    for i, bd in enumerate(t.branches):
        bd.spec.check()
        if bd.id != i:
            raise DamagedTimeline("the branches are not numbered in order")
        if bd.parent is not None and bd.parent >= bd.id:
            raise DamagedTimeline(f"branch {bd.id} names a parent {bd.parent} that comes later")
        b = tl.new_branch(trust.with_base(bd.spec, base), bd.parent, bd.fork_step, bd.inherits, bd.reason,
                          journal=_journal_from(bd.journal, f"timeline.branches[{i}].journal"))
        b.last_loss, b.threads = bd.last_loss, bd.threads
    series = ckpt.get("series") or {}
    for bid, b in tl.branches.items():
        arrays = series.get(str(bid))
        if arrays:
            b.series = SeriesSet.from_arrays({k: v.numpy() for k, v in arrays.items()})
    for bid, saved in (ckpt.get("distributions") or {}).items():
        if not str(bid).isdigit() or int(bid) not in tl.branches:
            raise DamagedTimeline(f"saved distributions belong to no branch ({bid})")
        tl.branches[int(bid)].dists = Distributions.from_saved(saved)
    tl.blobs.update(ckpt.get("blobs") or {})
    for key, st in (ckpt.get("checkpoints") or {}).items():
        bid, _, step = str(key).partition("/")
        if not (bid.isdigit() and step.isdigit()) or int(bid) not in tl.branches \
                or int(step) > tl.branches[int(bid)].end_step:
            raise DamagedTimeline(f"a checkpoint ({key}) belongs to no step of any branch")
        state = state_from_saveable(st)
        state["_check"] = True  # read from a file: checked against the engine when first used
        tl.checkpoints.add(int(bid), int(step), state, Engine.state_bytes(state), tl.heads())
    current = t.current
    if current not in tl.branches:
        raise DamagedTimeline(f"the current branch {current!r} does not exist")
    tl.current = current
    head = state_from_saveable(ckpt["head"])
    at_head = t.at_head
    end = tl.branch.end_step
    if head["step"] > end or (at_head and head["step"] != end):
        raise DamagedTimeline(f"the saved state is at step {head['step']}, but branch {current}'s journal "
                              f"ends at step {end}")
    index = t.index
    if not at_head and not (index is not None and index <= len(tl.branch.journal.entries)):
        raise DamagedTimeline("the saved position has no valid journal index")
    s = Session.from_timeline(tl, head, None if at_head else index)
    s.set_breakpoints([parse_breakpoint(text).with_enabled(on) for text, on in t.breakpoints])
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


def restore_v1(doc: dict, ckpt: dict, base=None, source: str = ""):
    """A Session from a version 1 file: its head state, its journal, its history."""
    from .session import Session
    d, journal = specmod.read_document(dict(doc, format=specmod.SPEC_FORMAT), source)
    spec = trust.with_base(d.spec, base)
    layout = d.layout or specmod.Layout()
    tl = Timeline(spec)
    tl.clear()
    parent = None
    for s, j in legacy_journal(journal, spec):
        b = tl.new_branch(s, parent, 0, False, "reset" if parent is not None else "", journal=j)
        parent = b.id
    tl.current = parent
    tl.blobs.update(ckpt.get("blobs") or {})
    engine = Engine(spec, tl.blobs)
    groups = list(layout.groups) or list(engine.group_specs)
    added = list(layout.added_tensors) if engine.task is None else []
    names = tuple(engine.names) + tuple(t.name for t in added)
    head = {"step": layout.step, "added": added, "groups": groups,
            "structure": (names, tuple(g.tensors for g in groups), layout.device or spec.device),
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
