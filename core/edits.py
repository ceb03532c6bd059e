"""What the window asks the runner to do, as plain module-level functions.

The runner may live in another process, so a request travels as a function and its
arguments (pickled by reference), never as a closure. Two kinds:

- session commands ``fn(session, *args) -> result``: run between steps by
  ``runner.call``;
- session builders ``fn(session, *args) -> Session``: run by ``runner.replace``,
  which swaps the new session in. Builders start from the session the runner
  holds *now*, so quick successive edits (lr, then momentum) each start from the
  one before, never from a stale copy in the window.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from . import catalogue, files, objectives, remeasure, session_file, trust
from . import spec as specmod
from .session import Session
from .spec import EditTensor, GradientSpec, GroupSpec, ManualGrad, SessionSpec, SpecError, TensorSpec
from .task_spec import TaskSpec

ARCHITECTURE = ("kind", "hidden", "n_features", "script", "activation")  # a change means a new model

# ----- session commands -----


def noop(session) -> None:
    """Nothing: its answer means every earlier request has been handled."""


def trust_scripts(session, agreements) -> None:
    """Record the user's agreement to run these scripts, ``[(path, sha256), ...]`` (core.trust)."""
    for path, digest in agreements:
        trust.trust(path, digest)


SMALL_SHOWN = 1024  # elements: such a tensor's values travel in every frame (a bias, the seed's 2x2)


def show_tensor(session, name: str) -> None:
    """The main window shows ``name``: while running, frames carry its values (and small
    tensors'), the other tensors as shapes and statistics (the state dict shows those, and
    every value once paused). Copying every tensor each frame was a large part of a frame."""
    from .observe import View
    session.view = View(frozenset({name}) if name else frozenset(), paused_all=True, small=SMALL_SHOWN)


def apply(session, action) -> None:
    session.apply(action)


def set_view(session, shown=None, histograms: bool = False) -> None:
    """Snapshots copy the values of these tensors only (names; None: all), and histograms of
    big tensors' previews only if asked: the rest travels as shape and statistics."""
    from .observe import View
    session.view = View(None if shown is None else frozenset(shown), histograms)


def landscape(session, objective: str, condition: float):
    """A contour grid (torch work belongs on the runner, not the GUI thread)."""
    return objectives.landscape(objective, condition)


def decay_groups(session):
    """The common recipe's groups: weights decay, biases and norms get weight_decay 0."""
    if session.task is None:
        raise ValueError("Regrouping by weights and biases needs a training task")
    return session.task.decay_groups()


def load_torch_file(session, path, kind: str | None = None) -> str:
    """Load an optimizer state_dict, parameters or both from a torch.save file.

    Both parts are checked before either is applied: a refusal changes nothing.
    Returns what was loaded ("optimizer state_dict", "parameters" or "checkpoint").
    """
    opt, params = files.split(files.torch_read(path))
    name = Path(path).name
    if kind == "optimizer" and opt is None:
        raise files.LoadError(f"{name} holds parameters, not an optimizer state_dict")
    if kind == "params" and params is None:
        raise files.LoadError(f"{name} holds an optimizer state_dict, not parameters")
    use_opt = kind != "params" and opt is not None
    use_params = kind != "optimizer" and params is not None
    with session.atomic():  # a checkpoint file's two parts load together or not at all
        if use_params:  # the cheap check first
            with files.about(path):
                files.check_params(session, params)
        if use_opt:
            session.load_optimizer_state(opt, path)
        if use_params:
            session.load_params(params, path)
    return "optimizer state_dict" if params is None else "parameters" if opt is None else "checkpoint"


def save_session(session, path) -> None:
    session_file.save_session(session, path)


# ----- session builders (for runner.replace) -----
# Opening or starting afresh makes a new session. Every other change that restarts the run
# starts a new branch of the same session from step 0 (``Session.rebuild``): the old branch
# stays, with everything done in it.


def build(session, spec: SessionSpec, journal=()) -> Session:
    """A fresh session from ``spec`` (and ``journal``, replayed)."""
    return Session(spec, journal)


def open_session(session, path) -> Session:
    return session_file.load_session(path)


def recovery_state(session, have=frozenset(), have_curves=frozenset()) -> dict:
    """What rebuilds the session where it stands, should the runner process die (the window keeps
    it: ``recover``): the current branch's spec and journal (every step and edit, as a .json
    session file holds them), the step it stands at, the timeline's document (every branch's
    spec and journal, the breakpoints: what a .optimlab file's session.json holds), the data
    of loads that the window does not ``have`` yet (``used`` names all it needs), and the other
    branches' curves and distributions whose signature the window does not have (``have_curves``;
    ``curve_sigs`` names those it needs: a branch's change only while it is the current one)."""
    used = set(session.timeline.blobs)  # every branch's loads, and the checkpoint a spec resumes
    tl = session.timeline
    sigs, curves = {}, {}
    for b in tl.branches.values():
        if b.id == tl.current:
            continue  # replayed: its curves come back with it
        sig = (b.id, len(b.journal.entries), b.series.n, b.series.last_step, b.dists.n)
        sigs[b.id] = sig
        if sig not in have_curves:
            curves[sig] = ({k: np.array(v, copy=True) for k, v in b.series.to_arrays().items()},
                           _copied(b.dists.to_saved()) if b.dists.n else None)
    return {"spec": session.spec, "journal": tuple(session.journal), "branch": tl.current,
            "step": session.step_count, "at_head": session.at_head, "branches": len(tl.branches),
            "index": session_file.between_index(session),
            "breakpoints": tuple((b.text, b.enabled) for b in session.breakpoints),
            "document": session_file.document(session),
            "used": frozenset(used), "blobs": {k: session.blobs[k] for k in used if k not in have},
            "curve_sigs": frozenset(sigs.values()), "curves": curves}


def reopen_recovery(current, path) -> Session:
    """The session a window's recovery file holds (``app.recovery_ui``): its current branch
    replayed to where it stood and, when the file has the timeline, the other branches from
    their journals with the curves it kept (as ``recover`` after a runner process died). Any
    problem is one LoadError/SpecError naming the file, as for a .json session."""
    import torch
    name = Path(path).name
    doc, read, journal, blobs = session_file.read_json_session(path)
    t = read.timeline
    if t is None or len(t.branches) < 2:
        return session_file.json_session(read, journal, blobs, name, Path(path).parent)
    with specmod.in_file(name, (SpecError, files.LoadError)):
        saved = blobs.pop(session_file.CURVES_BLOB, None) or {}
        curves = {}
        for k, v in saved.items() if isinstance(saved, dict) else ():
            if str(k).isdigit() and isinstance(v, dict) and isinstance(v.get("series"), dict) and all(
                    isinstance(a, torch.Tensor) for a in v["series"].values()):
                curves[(int(k),)] = (v["series"], v.get("dists"))
        document = {k: v for k, v in doc.items() if k not in ("blobs", "position")}
        state = {"spec": read.spec, "journal": journal, "branch": t.current, "step": t.step, "at_head": t.at_head,
                 "index": read.position.index if read.position is not None else None,
                 "branches": len(t.branches), "breakpoints": t.breakpoints,
                 "document": dict(document, format=session_file.SESSION_FORMAT, version=session_file.SESSION_VERSION),
                 "used": frozenset(blobs), "curve_sigs": frozenset(curves)}
        return recover(current, state, blobs, curves)


def _copied(saved: dict) -> dict:
    """Distributions' saved form with tensors of their own (the thread runner's window must not
    share the runner's buffers)."""
    import torch
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in saved.items()}


def recover(session, state: dict, blobs: dict, curves: dict | None = None) -> Session:
    """The session ``recovery_state`` described, standing where it stood: its current branch
    replayed from its journal (the steps are deterministic: the same values as before), then the
    timeline around it from the document, every branch with its journal (their values come
    back exactly when visited) and the curves and distributions ``curves`` holds for them
    (``recovery_state``'s, by signature). Should the timeline not rebuild, the current branch
    alone."""
    from .breakpoints import parse as parse_breakpoint
    blobs = {k: blobs[k] for k in state["used"]}
    s = Session(state["spec"], state["journal"], blobs=blobs)
    if not state["at_head"]:
        s.goto(state["step"], index=state.get("index"))
    others = state["branches"] - 1
    if others:
        try:
            return _with_timeline(s, state, blobs, others, curves or {})
        except Exception:  # noqa: BLE001 - the branch itself is what matters most: keep it
            pass
    s.set_breakpoints([parse_breakpoint(text).with_enabled(on) for text, on in state["breakpoints"]])
    lost = (f"; its other {others} branch{'es' if others > 1 else ''} ended with the process"
            if others else "")
    now = " (now branch 0)" if state["branch"] else ""
    s.notice = f"Recovered branch {state['branch']} at step {state['step']:,} from its journal{now}{lost}"
    return s


def _with_timeline(s: Session, state: dict, blobs: dict, others: int, curves: dict) -> Session:
    """``s`` (the current branch replayed) inside the timeline ``state``'s document describes."""
    import torch
    from . import timeline_file

    def tensors(arrays):
        return {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}
    series = {str(state["branch"]): tensors(s.timeline.branch.series.to_arrays())}
    dists = {str(state["branch"]): s.timeline.branch.dists.to_saved()} if s.timeline.branch.dists.n else {}
    kept = 0
    for sig in state.get("curve_sigs", ()):
        got = curves.get(sig)
        if got is not None:
            series[str(sig[0])] = tensors(got[0])
            if got[1] is not None:
                dists[str(sig[0])] = got[1]
            kept += 1
    ckpt = {"head": timeline_file.state_to_saveable(s.engine.state()), "blobs": blobs,
            "series": series, "distributions": dists}
    r = timeline_file.restore(state["document"], ckpt)
    if r.step_count != s.step_count or r.timeline.current != state["branch"]:
        raise ValueError("the rebuilt timeline does not stand where the session stood")
    what = (f"its other {others} branch{'es' if others > 1 else ''} from their journals")
    lost = others - kept
    tail = ("" if not lost else " (their curves ended with the process)" if lost == others
            else f" ({lost} of them without their curves: they ended with the process)")
    r.notice = f"Recovered branch {state['branch']} at step {state['step']:,} and {what}{tail}"
    return r


def resume_checkpoint(session, checkpoint: str, task: str, step: int | None = None) -> Session:
    """A session at the checkpoint's step (``core.resume``) for ``task`` (a session spec's JSON
    file naming a task, or a task script); the notes (where the step came from...) as its notice."""
    from . import resume
    base = resume.task_spec_for(task, checkpoint)
    r = resume.resume_spec(base, checkpoint, step=step)
    s = Session(r.spec, blobs=r.blobs)
    s.notice = "; ".join((f"Resumed {Path(checkpoint).name} at step {r.step:,} (from {r.step_from})",) + r.notes[1:])
    return s


def _rebuild(session, spec: SessionSpec, reason: str) -> Session:
    if spec != session.spec:
        session.rebuild(spec, reason)
    return session


def restart(session) -> Session:
    """Reset: the same spec from step 0, on a new branch."""
    session.rebuild(session.spec, "reset")
    return session


def set_fields(session, fields: dict, reason: str = "settings changed") -> Session:
    """The current spec with some fields replaced, e.g. ``{"groups": ()}``."""
    return _rebuild(session, replace(session.spec, **fields), reason)


def with_problem(session, spec: SessionSpec) -> Session:
    """The Problem dock's spec, keeping the optimizer and its arguments of the current one."""
    cur = session.spec
    spec = _checkpoint_if_same_model(cur, with_optimizer_spec(spec, cur.optimizer, cur.hparams))
    return _rebuild(session, spec, "problem changed")


def _checkpoint_if_same_model(cur: SessionSpec, spec: SessionSpec) -> SessionSpec:
    """A resumed checkpoint fits only its model and data: another model, data or seed (anything
    but the batch size, shuffling and evaluation interval) starts from step 0 without it."""
    if spec.resume is None:
        return spec
    a, b = cur.gradient.task, spec.gradient.task
    if spec.gradient.kind == "task" and cur.gradient.kind == "task" and \
            replace(a, batch_size=b.batch_size, shuffle=b.shuffle, eval_every=b.eval_every) == b:
        return spec
    return replace(spec, resume=None)


def with_optimizer(session, name: str) -> Session:
    cur = session.spec
    return _rebuild(session, with_optimizer_spec(cur, name, cur.hparams), f"optimizer changed to {name}")


def with_default(session, name: str, value) -> Session:
    """One constructor argument changed (the run restarts, as a new optimizer would)."""
    cur = session.spec
    return _rebuild(session, _fresh_optimizer(replace(cur, hparams={**cur.hparams, name: value})), f"{name} changed")


def _fresh_optimizer(spec: SessionSpec) -> SessionSpec:
    """A resumed spec whose optimizer is built anew (another class, or other constructor arguments:
    the run restarts, as it does from step 0 otherwise): the checkpoint's weights, data position and
    generator at its step, without its optimizer and scheduler state. Other specs are unchanged."""
    if spec.resume is None or not spec.resume.optimizer_state:
        return spec
    return replace(spec, resume=replace(spec.resume, optimizer_state=False))


def with_start_point(session, x: float, y: float) -> Session:
    """The run restarted from (x, y) on a 2-number objective: the objective's tensors
    start from these values (in order), as if typed into their explicit values."""
    spec = session.spec
    names = spec.gradient.tensors or tuple(t.name for t in spec.tensors)
    chosen = [t for t in spec.tensors if t.name in names]
    if spec.gradient.kind != "objective" or sum(t.numel for t in chosen) != 2:
        raise ValueError("A start point can be set only for an objective of 2 numbers")
    flat, tensors = [float(x), float(y)], []
    for t in spec.tensors:
        if t.name in names:
            values, flat = np.asarray(flat[:t.numel]).reshape(t.shape).tolist(), flat[t.numel:]
            t = replace(t, init="values", values=values)
        tensors.append(t)
    return _rebuild(session, replace(spec, tensors=tuple(tensors)), "start point changed")


def one_group(session) -> Session:
    """Every parameter in one param_group (what LBFGS needs), in the optimizer's order."""
    return _rebuild(session, replace(session.spec, groups=(GroupSpec(tuple(session.names)),)), "one group")


def with_task(session, task: TaskSpec) -> Session:
    """A training task; the groups stay unless the model's architecture changed."""
    cur = session.spec
    old = cur.gradient.task
    same_model = old is not None and all(getattr(old, f) == getattr(task, f) for f in ARCHITECTURE)
    return _rebuild(session, replace(cur, gradient=replace(cur.gradient, kind="task", task=task),
                                     groups=cur.groups if same_model else ()), "task changed")


def task_mode(session, task: TaskSpec | None = None) -> Session:
    """Switch the problem to a training task (the default one unless ``task`` is given)."""
    return _rebuild(session, replace(session.spec, tensors=(), groups=(), zero_grad_each_step=True,
                                     gradient=GradientSpec("task", task=task or TaskSpec())), "training task")


def tensor_mode(session) -> Session:
    """Switch the problem back to one hand-made 2x2 tensor with a manual gradient."""
    t = TensorSpec("weight", (2, 2), grad=ManualGrad())
    return _rebuild(session, replace(session.spec, tensors=(t,), groups=(), gradient=GradientSpec()),
                    "hand-made tensors")


def blank_spec() -> SessionSpec:
    """The simplest problem: one 2x2 tensor with a manual gradient of ones, SGD (File > New)."""
    return SessionSpec(tensors=(TensorSpec("weight", (2, 2), grad=ManualGrad()),))


def blank(session=None) -> Session:
    """The simplest session (``blank_spec``): where a new runner starts before a rebuild."""
    return Session(blank_spec())


# ----- the timeline (session commands) -----


def goto(session, step, branch=None) -> int:
    """Stand at ``step`` of ``branch`` (None: the head); returns the step."""
    session.goto(step, branch)
    return session.step_count


def current_spec(session) -> SessionSpec:
    """The spec of the branch the session stands on now (goto, undo and redo can change it)."""
    return session.spec


def position(session) -> tuple[int, int]:
    """(branch, step) the session stands on."""
    branch, step, _ = session.position()
    return branch, step


def undo(session) -> bool:
    return session.undo()


def redo(session) -> bool:
    return session.redo()


def set_breakpoints(session, texts_and_flags) -> None:
    """``[(condition, enabled), ...]``: replaces the breakpoints (each checked first)."""
    from .breakpoints import parse
    session.set_breakpoints([parse(t).with_enabled(on) for t, on in texts_and_flags])


def edit_tensor(session, name: str, which: str, index, value: float) -> None:
    """Edit while paused: one element (or all, ``index`` None) of a tensor, journaled."""
    session.apply(EditTensor(name, which, None if index is None else tuple(index), float(value)))


def branches(session):
    return session.branches()


def explain_update(session, tensor: str, index, step=None):
    """The update of ``tensor[index]`` at ``step`` (default: the last one taken) explained
    (``core.explain``): replayed on an engine of its own, the session does not move."""
    from .explain import explain  # its formula modules are needed only when asked
    return explain(session, tensor, tuple(index), step)


def export_script(session, path) -> list[str]:
    """Write the current branch as a plain PyTorch script (``core.export``), atomically;
    returns the files written (the script, then any stored state_dict beside it)."""
    from .export import write_script
    return [str(p) for p in write_script(session, path)]
def branch_history(session, branch: int):
    """The curves of another branch (plain data), to overlay on the current one's."""
    b = session.timeline.branches.get(branch)
    if b is None:
        raise ValueError(f"There is no branch {branch}")
    session.flush()
    return b.series.view()


def distribution(session, name: str, which: str = "value"):
    """A tensor's (or its gradient's or a state entry's) histograms over the steps, plain numpy:
    (steps, bin values, counts per step) or None (see core.distributions)."""
    return session.distribution(name, which)


def distributions(session, name: str, whichs) -> dict:
    """Several entries of one tensor (``"value"``, ``"grad"``, state keys) at once:
    ``which -> distribution(...)``; the tensor panel's "over time" view asks in one message."""
    return {w: session.distribution(name, w) for w in whichs}


def measure_skipped(session, seconds: float | None = None) -> tuple[bool, int, int, int]:
    """Replay the current branch's steps that the run left unmeasured (histograms, norms) and
    fill them in (core.remeasure), for about ``seconds`` (None: all); the session stays where it
    stands. Returns (done, first step replayed (0: none was missing), last, the branch's end)."""
    r = remeasure.measure_skipped(session, seconds)
    return r.done, r.first, r.last, r.end


def set_checkpoint_budget(session, nbytes: int) -> int:
    """The memory the timeline's checkpoints may use (thinned at once if over); returns what they use."""
    if not 16 * 2 ** 20 <= nbytes <= 2 ** 45:
        raise ValueError(f"Checkpoint memory must be between 16 MB and 32 TB, not {nbytes:,} bytes")
    tl = session.timeline
    tl.checkpoints.set_budget(int(nbytes), tl.heads())
    return tl.checkpoints.used


def set_norms_every_step(session, on: bool) -> bool:
    """Measure grad/update norms and ratios at every step (``on``), or within their share of the
    run's time (at least every 64th step; the default, so tiny problems run near a bare loop)."""
    session.observer.every_step = bool(on)
    return session.observer.every_step


def with_optimizer_spec(spec: SessionSpec, name: str, hparams: dict) -> SessionSpec:
    """``spec`` for optimizer ``name``: arguments and group overrides it does not take are dropped."""
    known = catalogue.info(name).defaults
    groups = tuple(replace(g, hparams={k: v for k, v in g.hparams.items() if k in known}) for g in spec.groups)
    out = replace(spec, optimizer=name, hparams={k: v for k, v in hparams.items() if k in known}, groups=groups)
    return _fresh_optimizer(out) if name != spec.optimizer else out
