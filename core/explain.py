"""Explain one update: an element of a tensor at a step, the optimizer's rule with its numbers.

``explain(session, "weight", (0, 1), step=12)`` replays the branch on a separate engine
to just before step 12's ``optimizer.step()`` (the nearest checkpoint, then the journal:
the session itself does not move), lets torch take the step with hooks that copy the
parameters, gradients and state before and after it, and recomputes the update with
this package's own formula code (``core.explain_rules``, ``core.explain_matrix``,
``core.explain_lbfgs``): once in the parameter's dtype, in the order torch's
implementation computes it, and once in float64 as a reference. Every term is read at
the element; the change torch really made is set beside the formula's, with their
distance in ULPs (units in the last place of the parameter's dtype). A distance beyond
``tolerance`` is a mismatch.

The result is a plain ``Explanation`` that the window and ``optimlab explain`` both render.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import explain_extras, explain_lbfgs, explain_matrix, explain_rules
from .engine import Engine, copy_state
from .replay import engine_before, generators_kept
from .spec import SpecError
from .timeline import branch_list

# Documented tolerance in ULPs of the parameter's dtype. The for-loop recomputation follows
# torch's op order on the same kernels, so it is exact; torch's foreach and fused kernels
# order a few operations differently (e.g. sqrt(v)/sqrt(bc2) vs sqrt(v/bc2)).
TOLERANCE = {"for-loop": 0, "foreach": 2, "fused": 2}  # measured on CPU: foreach 0, fused 0-1
FUSED_KINDS = {"Adam", "AdamW", "SGD", "Adagrad"}
FOR_LOOP_ONLY = {"LBFGS", "SparseAdam", "Muon"}
RULES = {**explain_rules.RULES, **explain_matrix.RULES, **explain_extras.RULES}


@dataclass(frozen=True)
class Term:
    """One quantity of the update at the element: recomputed in float64 and in the parameter's
    dtype; ``torch`` is what torch holds after the step (the parameter and state entries)."""

    name: str
    formula: str
    value: float | None
    value_dtype: float | None
    torch: float | None = None
    ulps: int | None = None


@dataclass(frozen=True)
class Explanation:
    """The update of ``tensor[index]`` at ``step`` (from step - 1 to step) of ``branch``."""

    optimizer: str
    tensor: str
    index: tuple[int, ...]
    step: int
    branch: int
    dtype: str
    device: str
    implementation: str
    group: int
    hparams: dict
    source: str
    terms: tuple[Term, ...]
    before: float
    torch_after: float
    formula_after: float
    reference_after: float
    ulps: int
    tolerance: int
    notes: tuple[str, ...] = ()

    @property
    def mismatch(self) -> bool:
        """The formula disagrees with torch beyond the tolerance (the parameter or a state entry)."""
        worst = max([t.ulps for t in self.terms if t.ulps is not None] + [self.ulps])
        return worst > self.tolerance

    @property
    def torch_change(self) -> float:
        return self.torch_after - self.before

    @property
    def formula_change(self) -> float:
        return self.formula_after - self.before


# ----- ULPs -----

_INTS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
         torch.bfloat16: torch.int16}


def ulp_distance(a: float, b: float, dtype: torch.dtype) -> int:
    """How many representable ``dtype`` numbers lie between ``a`` and ``b`` (both rounded to it);
    0 for equal values (+0 and -0 too), a huge number if one is NaN and the other not."""
    x = torch.tensor([a, b], dtype=torch.float64).to(dtype)
    if bool(torch.isnan(x).any()):
        return 0 if bool(torch.isnan(x).all()) else 2 ** 62
    magnitude = (1 << (torch.finfo(dtype).bits - 1)) - 1
    # sign-magnitude bits to one monotonic integer line: negative numbers count down from 0
    ordered = [-(v & magnitude) if v < 0 else v for v in x.view(_INTS[dtype]).tolist()]
    return abs(ordered[0] - ordered[1])


# ----- which implementation torch ran -----

def implementation(name: str, group: dict, params: list[torch.Tensor]) -> str:
    """"for-loop", "foreach" or "fused", as torch.optim's functional API chooses for this group."""
    if name in FOR_LOOP_ONLY:
        return "for-loop"
    foreach, fused = group.get("foreach"), group.get("fused")
    if name in FUSED_KINDS and fused:
        return "fused"
    if foreach is None and (name not in FUSED_KINDS or fused is None) and name != "Adafactor":
        from torch.optim.optimizer import _default_to_fused_or_foreach
        _, foreach = _default_to_fused_or_foreach(params, bool(group.get("differentiable", False)), use_fused=False)
        if foreach and name in ("Adam", "AdamW") and isinstance(group.get("lr"), torch.Tensor) \
                and not group.get("capturable", False):
            foreach = False
    return "foreach" if foreach else "for-loop"


class _Capture:
    """Copies of the parameters, gradients, state and groups right before and after optimizer.step()."""

    def __init__(self, optimizer):
        self.before = self.after = self.closure = None
        self._handles = [optimizer.register_step_pre_hook(self._pre), optimizer.register_step_post_hook(self._post)]

    def _pre(self, opt, args, kwargs):
        self.closure = args[1] if len(args) > 1 else kwargs.get("closure")  # args[0] is the optimizer
        self.before = _copy(opt)

    def _post(self, opt, args, kwargs):
        self.after = _copy(opt)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _copy(opt) -> dict:
    params = [p for g in opt.param_groups for p in g["params"]]
    return {"params": [p.detach().clone() for p in params],
            "grads": [None if p.grad is None else p.grad.detach().clone() for p in params],
            "state": [copy_state(dict(opt.state.get(p, {}))) for p in params],
            "groups": [{k: copy_state(v) for k, v in g.items() if k != "params"} for g in opt.param_groups]}


# ----- explaining -----

def _check_index(name: str, p: torch.Tensor, index) -> tuple[int, ...]:
    index = tuple(int(i) for i in (index or ()))
    shape = list(p.shape)
    if len(index) != p.dim() or any(not 0 <= i < s for i, s in zip(index, shape)):
        raise SpecError(f"Index {list(index)} is not an element of {name}, of shape {shape}: give "
                        f"{p.dim()} number(s), each from 0 to its size - 1")
    return index


def _where(session, tensor: str, step: int | None, branch: int | None) -> tuple[int, int]:
    session.flush()
    tl = session.timeline
    bid = tl.current if branch is None else branch
    if bid not in tl.branches:
        raise SpecError(f"There is no branch {bid}; {branch_list(tl.branches)}")
    first, end = tl.branches[bid].start_step + 1, tl.branches[bid].end_step  # a resumed branch: after its checkpoint
    if step is None:
        step = session.step_count if bid == tl.current else end
    if not first <= step <= end:
        raise SpecError(f"Branch {bid} has steps {first:,} to {end:,}; there is no update at step {step:,} to explain"
                        if end >= first else f"Branch {bid} has taken no step yet: there is no update to explain")
    return bid, step


def explain(session, tensor: str, index=(), step: int | None = None, branch: int | None = None) -> Explanation:
    """Explain the update of ``tensor[index]`` at ``step`` (default: the step the session stands at)
    of ``branch`` (default: the current one). The session does not move; nothing it holds changes.
    Refusals (no such tensor, index, step or branch) raise SpecError with one sentence."""
    bid, step = _where(session, tensor, step, branch)
    name = session.timeline.branches[bid].spec.optimizer
    if name != "LBFGS" and name not in RULES:
        raise SpecError(explain_extras.not_explained(name))
    with generators_kept():  # replaying restores generator states: keep the caller's
        eng = engine_before(session.timeline, bid, step)
        if tensor not in eng.params:
            raise SpecError(f"There is no tensor {tensor!r} at step {step:,}; there are {', '.join(eng.params)}")
        index = _check_index(tensor, eng.params[tensor], index)
        return _explain(eng, tensor, index, step, bid)


def _explain(eng: Engine, tensor: str, index, step: int, branch: int) -> Explanation:
    name = eng.spec.optimizer
    param = eng.params[tensor]
    order = [id(p) for p in eng.param_list]
    pos = order.index(id(param))
    gi = next(i for i, g in enumerate(eng.optimizer.param_groups) if any(p is param for p in g["params"]))
    st = eng.state()
    cap = _Capture(eng.optimizer)
    try:
        eng.step_once()
    finally:
        cap.remove()
    before, after = cap.before, cap.after
    group = before["groups"][gi]
    if name in explain_extras.RULES:
        refused = explain_extras.refusal(name, eng.optimizer, group)
        if refused:
            raise SpecError(refused)
        impl = explain_extras.implementation(name, eng.optimizer, gi)
    else:
        group_params = eng.optimizer.param_groups[gi]["params"]
        impl = implementation(name, group, [p for p in group_params if p.grad is not None] or group_params)
    runs, notes = [], []
    if name == "LBFGS":
        runs = _lbfgs_runs(eng, st, cap, pos, index, group)
    else:
        grad = before["grads"][pos]
        if grad is None:
            notes.append(f"{tensor} had no gradient at this step: torch skips a parameter whose .grad is None, "
                         "so nothing of it changed.")
        else:
            hparams = {**group, **explain_extras.options(name, eng.optimizer)}
            work = param.dtype
            if impl == "fused" and param.dtype in (torch.float16, torch.bfloat16):
                work = torch.float32  # a fused kernel's arithmetic (opmath); only what it stores is rounded
                notes.append(f"fused: torch's kernel computes in float32 and rounds to {str(param.dtype)[6:]} only "
                             "what it stores (the parameter, the state), so the formula does too.")
            for dtype, ref in ((work, False), (torch.float64, True)):
                r = explain_rules.Run(dtype, ref, before["params"][pos], grad, before["state"][pos], hparams, index,
                                      impl)
                r.context, r.pos, r.group_index = before, pos, gi
                r.layout = [len(g["params"]) for g in eng.optimizer.param_groups]
                RULES[name](r)
                runs.append(r)
    return _assemble(eng, name, tensor, index, step, branch, impl, gi, group, before, after, pos, runs, notes)


def _lbfgs_runs(eng: Engine, st: dict, cap: _Capture, pos: int, index, group: dict) -> list:
    params = list(eng.optimizer.param_groups[0]["params"])
    offset = sum(p.numel() for p in params[:pos])
    flat_index = offset + sum(i * math.prod(params[pos].shape[k + 1:]) for k, i in enumerate(index))
    runs = []
    for dtype, ref in ((params[pos].dtype, False), (torch.float64, True)):
        eng.restore(st)  # torch's step moved the parameters: start again from the state before it
        r = explain_rules.Run(dtype, ref, cap.before["params"][pos], torch.zeros_like(params[pos]), {}, group, index)
        explain_lbfgs.lbfgs(r, params, cap.closure, copy_state(cap.before["state"][0]), pos, flat_index)
        r.flat_index = flat_index
        runs.append(r)
    return runs


def _torch_value(name: str, key: str, after: dict, pos: int, index, run) -> tuple[float, torch.dtype] | None:
    """What torch holds after the step for a term's ``key``, and its dtype (for ULPs)."""
    if key == "param":
        p = after["params"][pos]
        return float(p[index]), p.dtype
    if key.startswith("group:"):  # what an extra keeps in its parameter group (schedule-free's k, Prodigy's d)
        v = after["groups"][run.group_index].get(key[6:])
        return None if v is None else (float(v), torch.float64)
    st = after["state"][0 if name == "LBFGS" else pos]
    v = st.get(key)
    if v is None:
        return None
    if name == "LBFGS" and key == "d":
        return float(v[run.flat_index]), v.dtype
    if isinstance(v, torch.Tensor):
        return run.element(v), v.dtype
    return float(v), torch.float64


def _assemble(eng, name, tensor, index, step, branch, impl, gi, group, before, after, pos, runs, notes):
    p_before = float(before["params"][pos][index])
    p_after = float(after["params"][pos][index])
    dtype = before["params"][pos].dtype
    tol = TOLERANCE[impl]
    if not runs:  # no gradient: nothing to recompute
        return Explanation(name, tensor, index, step, branch, str(dtype)[6:], str(after["params"][pos].device), impl,
                           gi, _plain(group), _source(name, impl), (), p_before, p_after, p_before, p_before,
                           ulp_distance(p_after, p_before, dtype), tol, tuple(notes))
    run, ref = runs
    ref_values: dict[str, list[float]] = {}
    for n, _, v, _ in ref.terms:
        ref_values.setdefault(n, []).append(v)
    terms = []
    for n, formula, v, key in run.terms:
        r64 = ref_values.get(n, [])
        t_val = _torch_value(name, key, after, pos, index, run) if key else None
        ulps = None if t_val is None else ulp_distance(v, t_val[0], t_val[1])
        terms.append(Term(n, formula, r64.pop(0) if r64 else None, v, None if t_val is None else t_val[0], ulps))
    formula_after = float(run.p[index].to(dtype))  # a fused half run's float32 result, stored as torch does
    return Explanation(name, tensor, index, step, branch, str(dtype)[6:], str(after["params"][pos].device), impl, gi,
                       _plain(group), _source(name, impl), tuple(terms), p_before, p_after, formula_after,
                       float(ref.p[index]), ulp_distance(p_after, formula_after, dtype), tol,
                       tuple(notes + run.notes))


def _source(name: str, impl: str) -> str:
    if name in explain_extras.RULES:
        return explain_extras.source(name, impl)
    module = {"Adafactor": "_adafactor", "Muon": "_muon", "SparseAdam": "sparse_adam"}.get(name, name.lower())
    return (f"torch.optim.{name}: the algorithm of its docstring (torch/optim/{module}.py), each term computed "
            f"as torch's {impl} implementation orders it")


def _plain(group: dict) -> dict:
    return {k: (float(v) if isinstance(v, torch.Tensor) and v.numel() == 1 else v) for k, v in group.items()}


# ----- rendering (the CLI prints this; the window shows the same terms) -----

def _num(v: float | None, dtype: str) -> str:
    if v is None:
        return ""
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.17g}" if dtype == "float64" else f"{v:.9g}"


def render(e: Explanation) -> str:
    """The explanation as text; its last line is ``torch: X  formula: Y  diff: N ulp`` (X and Y the
    change to the element, N the distance between the new values in ULPs of its dtype)."""
    idx = ",".join(map(str, e.index))
    lines = [f"{e.optimizer}, step {e.step:,} of branch {e.branch}: {e.tensor}[{idx}] ({e.dtype}, {e.device}), "
             f"{e.implementation} implementation",
             e.source,
             f"group {e.group}: " + ", ".join(f"{k}={v}" for k, v in e.hparams.items()),
             "",
             f"  {'term':<24} {'float64':>24} {e.dtype:>24} {'torch':>24} {'ulp':>4}  formula"]
    for t in e.terms:
        ulps = "" if t.ulps is None else str(t.ulps)
        lines.append(f"  {t.name:<24} {_num(t.value, 'float64'):>24} {_num(t.value_dtype, e.dtype):>24} "
                     f"{_num(t.torch, e.dtype):>24} {ulps:>4}  {t.formula}")
    lines.append("")
    lines.append(f"theta before: {_num(e.before, e.dtype)}; after: torch {_num(e.torch_after, e.dtype)}, formula "
                 f"{_num(e.formula_after, e.dtype)} ({e.dtype}), {_num(e.reference_after, 'float64')} (float64)")
    lines += [f"note: {n}" for n in e.notes]
    if e.mismatch:
        worst = max([(t.ulps, t.name) for t in e.terms if t.ulps is not None] + [(e.ulps, "theta_t")])
        lines.append(f"MISMATCH: {worst[1]} differs from torch by {worst[0]} ulp, beyond the {e.tolerance} ulp "
                     f"tolerance of the {e.implementation} implementation")
    lines.append(f"torch: {_num(e.torch_change, e.dtype)}  formula: {_num(e.formula_change, e.dtype)}  "
                 f"diff: {e.ulps} ulp")
    return "\n".join(lines)


# ----- `optimlab explain` -----

def parse_index(text: str) -> tuple[int, ...]:
    """"1,2" -> (1, 2); "" -> () (a scalar). One sentence if it is not a list of whole numbers."""
    text = (text or "").strip()
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SpecError(f"--index must be whole numbers separated by commas, like 0,1, not {text!r}") from None


def command(args) -> int:
    """``optimlab explain``: print the explanation; exit 1 if the formula and torch disagree."""
    import contextlib
    import sys
    from .cli_open import open_session
    with contextlib.redirect_stdout(sys.stderr):  # what a class prints when built (prodigyopt does) is not output
        session = open_session(args.session, args.trust_script)
        e = explain(session, args.tensor, parse_index(args.index), args.step, args.branch)
    print(render(e))
    return 1 if e.mismatch else 0
