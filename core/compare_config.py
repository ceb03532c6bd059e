"""The configurations of a comparison: what each is (``RunSpec``), how it is made from the
problem's spec (``config_spec``, ``config_run``), labelled (``describe``), parsed from text
(``hparams_from_text``), and whether it is on the comparison's problem (``check_same_problem``).

On a resumed problem (``core.resume``) every configuration starts at the checkpoint's step N.
``config_run`` decides what a user would do in a plain script there: the checkpoint's optimizer
class (``checkpoint_class``) takes its optimizer and scheduler state, the arguments named set
per group at step N (journal edits, so the run is the resumed session with those edits);
another class starts fresh at N, and its label says so.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import PurePath

from . import catalogue
from .session import Session
from .spec import SchedulerSpec, SessionSpec, SetHparam, SpecError, Step

# what every run shares, and the words a refusal names it by
PROBLEM = {"tensors": "tensors", "gradient": "gradient source or task", "device": "device", "seed": "seed",
           "set_to_none": "zero_grad mode", "zero_grad_each_step": "zero_grad mode"}


def describe(spec: SessionSpec) -> str:
    """A short label: the optimizer, the arguments that differ from torch's defaults, the scheduler."""
    defaults = catalogue.info(spec.optimizer).defaults
    args = [f"{k}={_short(v)}" for k, v in spec.hparams.items() if k in defaults and not
            catalogue.same_value(v, defaults[k])]
    text = " ".join([spec.optimizer] + args)
    text = f"{text} · {spec.scheduler.name}" if spec.scheduler is not None else text
    return text + fresh_note(spec)


def fresh_note(spec: SessionSpec) -> str:
    """`` · fresh at step N`` for a resumed spec whose optimizer does not take the checkpoint's
    state (another class), as its label says; else nothing."""
    r = spec.resume
    return f" · fresh at step {r.step:,}" if r is not None and not r.optimizer_state else ""


def describe_scheduler(s: SchedulerSpec | None) -> str:
    if s is None:
        return "none"
    args = ", ".join(f"{k}={_short(v)}" for k, v in s.params.items())
    return f"{s.name} {args}" if args else s.name


def _short(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def config_spec(base: SessionSpec, optimizer: str, hparams: dict, scheduler: SchedulerSpec | None) -> SessionSpec:
    """``base``'s problem with another optimizer, its arguments and a scheduler (group overrides
    the optimizer does not take are dropped)."""
    from .edits import with_optimizer_spec
    return replace(with_optimizer_spec(base, optimizer, hparams), scheduler=scheduler)


def config_run(base: SessionSpec, optimizer: str, hparams: dict, scheduler: SchedulerSpec | None,
               blobs: dict | None = None) -> "RunSpec":
    """A configuration on ``base``'s problem: ``config_spec``, and on a resumed problem what a
    user would do in a plain script. Another optimizer class starts fresh at the checkpoint's step
    (its label says so). The checkpoint's own class (``checkpoint_class``; ``blobs``: the data
    that tells it when ``base`` starts fresh) takes its optimizer state, whose param_groups
    hold the checkpoint's values; the arguments named here are then set in every group (but
    those a group of the problem overrides) at the checkpoint's step, before its first step, as
    ``g[k] = v`` after ``load_state_dict`` would (a journal edit, so the run is the resumed
    session with that edit). Such a configuration takes the checkpoint's scheduler state too: its
    scheduler must be the session's or none, and an lr it would overwrite is refused."""
    spec = config_spec(base, optimizer, hparams, scheduler)
    r = spec.resume
    if r is None or optimizer != checkpoint_class(base, blobs):
        return RunSpec("", spec)
    spec = replace(spec, resume=replace(r, optimizer_state=True))
    label = " ".join([optimizer] + [f"{k}={_short(v)}" for k, v in spec.hparams.items()])
    label = f"{label} · {scheduler.name}" if scheduler is not None else label
    if scheduler is not None and not base.resume.optimizer_state:
        raise SpecError(f"{label}: with the checkpoint's {optimizer} state it would take the checkpoint's scheduler "
                        f"state, which this comparison's {base.optimizer} started without; give it no scheduler")
    if scheduler is not None and scheduler != base.scheduler:
        was = describe_scheduler(base.scheduler)
        raise SpecError(f"{label}: with the checkpoint's {optimizer} state it goes on with the session's "
                        f"scheduler ({was}), not another; give that or none (another optimizer class starts "
                        f"both fresh at step {r.step:,})")
    if scheduler is not None and "lr" in spec.hparams:
        raise SpecError(f"{label}: the session's {scheduler.name} sets the lr of the checkpoint's {optimizer} state "
                        "itself; drop lr=, or the scheduler")
    groups = spec.effective_groups()
    script = tuple((r.step, SetHparam(i, k, v)) for k, v in spec.hparams.items()
                   for i, g in enumerate(groups) if k not in g.hparams)
    return RunSpec(f"{label} · from the checkpoint's state", spec, script)


def checkpoint_class(spec: SessionSpec, blobs: dict | None = None) -> str | None:
    """The optimizer class whose state the checkpoint ``spec`` resumes holds: the spec's own when
    it takes that state; else the torch.optim class its param_groups show (read from ``blobs``),
    None when they do not tell one."""
    r = spec.resume
    if r is None:
        return None
    if r.optimizer_state:
        return spec.optimizer
    data = (blobs or {}).get(r.blob)
    groups = data.get("optimizer", {}).get("param_groups") if isinstance(data, dict) else None
    if not groups or not isinstance(groups[0], dict):
        return None
    got = catalogue.identify(groups[0].keys(), groups[0])
    # AdamW over Adam: the class whose fixed entries the group shows (as core.resume tells them)
    specific = [n for n in got if catalogue.fixed_group_values(n)
                and all(k in groups[0] for k in catalogue.fixed_group_values(n))]
    got = specific if len(specific) == 1 else got
    return got[0] if len(got) == 1 else None


def hparams_from_text(optimizer: str, text: str, info=None) -> dict:
    """``"lr=0.01, momentum=0.9"`` as ``optimizer``'s arguments, each parsed like its form field;
    one sentence (SpecError) naming the first word that is not one. ``info``: the description
    to read them with (default the catalogue's; a scheduler's from ``core.schedulers``)."""
    known = {h.name: h for h in (info or catalogue.info(optimizer)).hparams}
    out = {}
    for word in filter(None, (w.strip() for w in _top_level_split(text.replace(";", ",")))):
        name, eq, value = (x.strip() for x in word.partition("="))
        if not eq or not name:
            raise SpecError(f"Arguments: {word!r} is not name=value")
        if name not in known:
            raise SpecError(f"Arguments: {optimizer} takes no argument {name!r}")
        try:
            out[name] = known[name].parse(value)
        except ValueError as e:
            raise SpecError(f"Arguments: {e}") from None
    return out


_NEXT_NAME = re.compile(r"\s+[A-Za-z_]\w*\s*=(?!=)")


def _top_level_split(text: str) -> list[str]:
    """Split at commas outside brackets (``betas=(0.9, 0.99)`` stays one word), and at spaces
    outside brackets that come before the next ``name=`` (``lr=0.1 momentum=0.9``, as one
    writes arguments on a command line, is two words like ``lr=0.1, momentum=0.9``)."""
    words, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if depth:
            continue
        if ch == "," or (ch.isspace() and not text[i - 1].isspace() and "=" in text[start:i]
                         and _NEXT_NAME.match(text, i)):
            words.append(text[start:i])
            start = i + 1
    return words + [text[start:]]


def check_same_problem(base: SessionSpec, spec: SessionSpec, label: str) -> None:
    for name, words in PROBLEM.items():
        if getattr(base, name) != getattr(spec, name):
            raise SpecError(f"{label} is not on the comparison's problem: its {words} differs")
    if start_point(base) != start_point(spec):
        raise SpecError(f"{label} is not on the comparison's problem: it starts {_where(spec)}, "
                        f"the comparison {_where(base)}")


def start_point(spec: SessionSpec) -> tuple:
    """Where a run starts: step 0, or a checkpoint's data (its stored blob) at its step."""
    return (0, "") if spec.resume is None else (spec.resume.step, spec.resume.blob)


def _where(spec: SessionSpec) -> str:
    r = spec.resume
    if r is None:
        return "from step 0"
    name = PurePath(r.path).name if r.path else r.blob
    return f"from a checkpoint at step {r.step:,} ({name})"


@dataclass(frozen=True)
class RunSpec:
    """One configuration: a label, a whole spec and, for a promoted branch, the journal's
    actions (``(step before, action)``, steps left out) replayed at their steps, with the
    data its loads refer to."""

    label: str
    spec: SessionSpec
    script: tuple = ()
    blobs: dict = field(default_factory=dict)

    @classmethod
    def from_spec(cls, session: Session) -> "RunSpec":
        """``session``'s current spec from its first step (its edits left out), with the
        checkpoint data the spec resumes, if it does."""
        r = session.spec.resume
        blobs = {r.blob: session.timeline.blobs[r.blob]} if r is not None and r.blob in session.timeline.blobs else {}
        return cls("", session.spec, blobs=blobs)

    @classmethod
    def from_branch(cls, session: Session, branch: int, label: str = "") -> "RunSpec":
        """Branch ``branch`` of ``session``'s timeline as a configuration."""
        session.flush()
        b = session.timeline.branches.get(branch)
        if b is None:
            raise SpecError(f"There is no branch {branch}")
        script = tuple((s0, a) for s0, a in b.journal.entries if not isinstance(a, Step))
        used = {getattr(a, "blob", "") for _, a in script} - {""}
        if b.spec.resume is not None:
            used.add(b.spec.resume.blob)  # the checkpoint's data the branch starts from
        blobs = {k: v for k, v in session.timeline.blobs.items() if k in used}
        return cls(label or f"branch {b.id}: {describe(b.spec)}", b.spec, script, blobs)
