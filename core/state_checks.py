"""Is this optimizer state_dict, or this parameters file, fit for this session?

torch's ``load_state_dict`` checks only the number and sizes of the groups and maps
everything else by position: ids stored as text map to nothing (the state is dropped
silently), an AdamW state_dict runs AdamW's maths in an Adam session, ``lr = -1`` or a
sparse momentum buffer load and then fail at some later step. Everything is checked
here first, key by key and value by value, then tried on copies; a refusal is one
sentence naming the group, parameter and key, and the session is never touched.
"""
from __future__ import annotations

import math
from itertools import chain

import torch

from . import catalogue, extra_optimizers
from .files import LoadError, _copy_state

# what param_groups hold besides the optimizer's own arguments: torch's names, and the numbers
# lr schedulers keep there (OneCycleLR and CyclicLR add the last four)
SCHEDULER_GROUP_KEYS = frozenset({"initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum"})
IGNORED_GROUP_KEYS = frozenset({"params", "param_names"}) | SCHEDULER_GROUP_KEYS
COUNT_LIMIT = 2 ** 63
# what each optimizer keeps per parameter (torch 2.13's optimizers):
# "like" a tensor shaped like the parameter, "step" a count, "scalar" a 0-d tensor,
# "ref" a tensor shaped as a fresh optimizer makes it (Adafactor's factored variances)
STATE_KINDS = {
    "Adadelta": {"step": "step", "square_avg": "like", "acc_delta": "like"},
    "Adafactor": {"step": "step", "row_var": "ref", "col_var": "ref", "variance": "ref"},
    "Adagrad": {"step": "step", "sum": "like"},
    "Adam": {"step": "step", "exp_avg": "like", "exp_avg_sq": "like", "max_exp_avg_sq": "like"},
    "AdamW": {"step": "step", "exp_avg": "like", "exp_avg_sq": "like", "max_exp_avg_sq": "like"},
    "Adamax": {"step": "step", "exp_avg": "like", "exp_inf": "like"},
    "ASGD": {"step": "step", "eta": "scalar", "mu": "scalar", "ax": "like"},
    "Muon": {"momentum_buffer": "like"},
    "NAdam": {"step": "step", "mu_product": "scalar", "exp_avg": "like", "exp_avg_sq": "like"},
    "RAdam": {"step": "step", "exp_avg": "like", "exp_avg_sq": "like"},
    "RMSprop": {"step": "step", "square_avg": "like", "momentum_buffer": "like", "grad_avg": "like"},
    "Rprop": {"step": "step", "prev": "like", "step_size": "like"},
    "SGD": {"momentum_buffer": "like?"},  # torch < 2.1 stored None when momentum was 0
    "SparseAdam": {"step": "step", "exp_avg": "like", "exp_avg_sq": "like"},
}
# LBFGS keeps one history for all parameters together, on the first parameter
LBFGS_KINDS = {"func_evals": "count", "n_iter": "count", "d": "flat", "t": "number",
               "old_dirs": "flats", "old_stps": "flats", "ro": "numbers", "H_diag": "number",
               "prev_flat_grad": "flat", "prev_loss": "number", "al": "numbers?"}
LBFGS_AFTER_FIRST = ("d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss")


def check_optimizer_state(session, sd) -> None:
    """Refuse (LoadError) a state_dict that does not fit the session; change nothing."""
    if not isinstance(sd, dict) or not isinstance(sd.get("state"), dict) or not isinstance(sd.get("param_groups"), list):
        raise LoadError("Not an optimizer state_dict: it needs 'state' (a dict) and 'param_groups' (a list)")
    saved = sd["param_groups"]
    for i, g in enumerate(saved):
        if not isinstance(g, dict) or not isinstance(g.get("params"), list):
            raise LoadError(f"param_group {i} of the state_dict needs a 'params' list")
        bad = next((k for k in g if not isinstance(k, str)), None)
        if bad is not None:
            raise LoadError(f"param_group {i} of the state_dict has a key {bad!r} that is not a name")
    check_kind(session, saved)
    live = session.optimizer.param_groups
    if len(saved) != len(live):
        raise LoadError(f"The state_dict has {len(saved)} parameter group(s); the session has {len(live)}")
    for i, (g, s) in enumerate(zip(live, saved)):
        if len(g["params"]) != len(s["params"]):
            raise LoadError(f"Group {i} of the state_dict has {len(s['params'])} parameter(s); "
                            f"the session's group {i} has {len(g['params'])}")
    for i, g in enumerate(saved):
        check_group_values(session, i, g)
    where = positions(saved, sd["state"])
    check_entries(session, saved, sd["state"], where)
    dry_run(session, sd)


# ----- what kind of optimizer wrote it -----

def check_kind(session, saved: list) -> None:
    """Refuse param_groups of another optimizer, by their keys or by the entries that
    tell classes with the same keys apart (AdamW's decoupled_weight_decay=True)."""
    name = session.spec.optimizer
    live = session.optimizer.param_groups
    for i, g in enumerate(saved):
        odd = next((k for k in g if not isinstance(k, str)), None)
        if odd is not None or None in g:
            raise LoadError(f"param_group {i} of the state_dict has a key {odd!r} that is not a name")
        got = frozenset(g) - IGNORED_GROUP_KEYS
        if not catalogue.is_torch(name):
            _check_kind_extra(name, i, got, g)
            continue
        writers = catalogue.identify(got, g)
        if name not in writers:
            others = [n for n in writers or catalogue.identify(got) if n != name]
            if others:
                raise LoadError(f"This state_dict is from {' or '.join(others)}, but the session uses {name}")
            want = catalogue.group_keys(name)
            extra, missing = sorted(got - want), sorted(want - got - catalogue.filled_keys(name))
            fixed = catalogue.fixed_group_values(name)
            parts = ([f"has {', '.join(extra)} that {name} does not know"] if extra else []) + \
                    ([f"lacks {', '.join(missing)}"] if missing else []) + \
                    [f"has {k} {g[k]!r}, which {name} always sets to {v!r}" for k, v in fixed.items()
                     if k in g and not catalogue.same_value(g[k], v)]
            raise LoadError(f"The state_dict's param_groups do not match {name}: it {' and '.join(parts)}")
        mine = live[min(i, len(live) - 1)]
        for other in writers:  # the file shows another class's fixed entries, the session's group not
            fixed = catalogue.fixed_group_values(other)
            if other != name and fixed and all(k in g for k in fixed) and \
                    not all(catalogue.same_value(mine.get(k), v) for k, v in fixed.items()):
                raise LoadError(f"This state_dict is from {other}, but the session uses {name}")


def _check_kind_extra(name: str, i: int, got: frozenset, group: dict) -> None:
    """A class from outside torch.optim: its fresh group's keys must all be there (keys it adds
    while stepping may be there too); a torch class whose keys fit exactly is named."""
    missing = sorted(catalogue.group_keys(name) - got - catalogue.filled_keys(name))
    if not missing:
        return
    others = catalogue.identify(got, group) or catalogue.identify(got)
    if others:
        raise LoadError(f"This state_dict is from {' or '.join(others)}, but the session uses {name}")
    raise LoadError(f"param_group {i} of the state_dict does not match {name}: it lacks {', '.join(missing)}")


# ----- hyperparameters -----

def check_group_values(session, i: int, g: dict) -> None:
    """A loaded group's hyperparameters pass the form's validation (torch's own sentences)."""
    name = session.spec.optimizer
    args = {h.name for h in catalogue.info(name).hparams}
    try:
        catalogue.validate_hparams(name, {k: v for k, v in g.items() if k in args}, device=session.device,
                                   dtypes=getattr(session, "engine", session).dtypes())
    except ValueError as e:
        raise LoadError(f"param_group {i} of the state_dict is refused: {e}") from None
    for k in SCHEDULER_GROUP_KEYS & set(g):
        if not _is_number(g[k]):
            raise LoadError(f"param_group {i} of the state_dict has {k} {g[k]!r}, not a number")
    names = g.get("param_names")
    if names is not None and (not isinstance(names, list) or len(names) != len(g["params"])
                              or not all(isinstance(n, str) for n in names)):
        raise LoadError(f"param_group {i} of the state_dict has param_names that are not one name per parameter")


# ----- which state belongs to which parameter -----

def positions(saved: list, state: dict) -> dict[int, int]:
    """File id -> position in the session (torch maps ids by position, in group order).

    Any distinct whole numbers map correctly (renumbered [1, 0] too); what torch would
    mis-map is refused: ids as text (state attached to nothing), repeated ids (one
    tensor's state given to another) and state for an id no group lists (kept loose).
    """
    ids = [pid for g in saved for pid in g["params"]]
    for pid in chain(ids, state):
        if isinstance(pid, str):
            raise LoadError(f"The state_dict numbers its parameters with text ({pid!r}); torch matches "
                            "state to parameters by whole numbers, so the state would be silently dropped")
        if type(pid) is not int:
            raise LoadError(f"The state_dict uses {pid!r} as a parameter id; ids are whole numbers")
    where = {}
    for pos, pid in enumerate(ids):
        if pid in where:
            raise LoadError(f"The state_dict lists parameter id {pid} twice; torch would give one "
                            "tensor's state to another")
        where[pid] = pos
    loose = next((k for k in state if k not in where), None)
    if loose is not None:
        raise LoadError(f"The state_dict has state for parameter {loose}, which no param_group lists")
    return where


def check_entries(session, saved: list, state: dict, where: dict[int, int]) -> None:
    """Every state value has the key, type, dtype and shape this optimizer keeps."""
    name = session.spec.optimizer
    params = session.param_list
    names = {i: n for n, i in session.index_of().items()}
    at_start, ref = reference_state(session, saved)
    for pid, entry in state.items():
        pos = where[pid]
        who = f"parameter {pid} ({names[pos]})"
        if not isinstance(entry, dict):
            raise LoadError(f"The state of {who} must be a dict of name -> value, not {type(entry).__name__}")
        bad = next((k for k in entry if not isinstance(k, str)), None)
        if bad is not None:
            raise LoadError(f"The state of {who} has a key {bad!r} that is not a name")
        if name == "LBFGS":
            _check_lbfgs(entry, pos, who, params, saved[0])
            continue
        if name not in STATE_KINDS:
            _check_unknown_entry(entry, who, ref.get(pos, {}))
            continue
        kinds = STATE_KINDS[name]
        for key, v in entry.items():
            if key not in kinds:
                raise LoadError(f"State {key!r} of {who} is not something {name} keeps "
                                f"(it keeps {', '.join(sorted(kinds))})")
            if kinds[key] == "ref" and pos in ref and key not in ref[pos]:
                raise LoadError(f"State {key!r} of {who} is not something {name} keeps for a parameter "
                                f"of shape {list(params[pos].shape)}")
            _check_value(v, kinds[key], f"State {key!r} of {who}", params[pos], ref.get(pos, {}).get(key), name)
        needed = set(ref.get(pos, {})) if entry or at_start.get(pos) else set()
        lacking = sorted(needed - set(entry))
        if lacking:
            raise LoadError(f"The state of {who} lacks {', '.join(map(repr, lacking))}, "
                            f"which {name} needs with these hyperparameters")
    # no state for a parameter is fine: torch's own state_dict has none for a parameter that
    # joined by add_param_group and has not stepped yet (Adagrad creates it then)


def _check_unknown_entry(entry: dict, who: str, expected: dict) -> None:
    """State of a class without a table here: every tensor in it plain and dense, and shaped as
    a fresh optimizer of the class shapes it after one step where that key is known; keys it
    makes only later are let through to the dry run, which loads and steps them."""
    for key, v in entry.items():
        what = f"State {key!r} of {who}"
        for t in _tensors_in(v):
            _check_tensor(t, what, floating=False)
        if isinstance(v, torch.Tensor) and isinstance(expected.get(key), torch.Size) and v.shape != expected[key]:
            raise LoadError(f"{what} has shape {list(v.shape)}; the session expects {list(expected[key])}")


def _tensors_in(v):
    if isinstance(v, torch.Tensor):
        yield v
    elif isinstance(v, (list, tuple)):
        for x in v:
            yield from _tensors_in(x)
    elif isinstance(v, dict):
        for x in v.values():
            yield from _tensors_in(x)


def _check_value(v, kind: str, what: str, p: torch.Tensor, expected, name: str) -> None:
    if kind == "like?" and v is None:
        return
    if kind == "step":
        _check_count(v, what, tensor_ok=True)
        return
    if not isinstance(v, torch.Tensor):
        raise LoadError(f"{what} is {_a(v)}; {name} keeps a tensor there")
    _check_tensor(v, what, floating=True)
    if kind == "scalar" and v.dim() != 0:
        raise LoadError(f"{what} has shape {list(v.shape)}; {name} keeps a single number there")
    if kind in ("like", "like?") and v.shape != p.shape:
        raise LoadError(f"{what} has shape {list(v.shape)}; the parameter has shape {list(p.shape)}")
    if kind == "ref" and expected is not None and v.shape != expected:
        raise LoadError(f"{what} has shape {list(v.shape)}; the session expects {list(expected)}")


def _check_tensor(v: torch.Tensor, what: str, floating: bool) -> None:
    """A plain dense tensor with values: not sparse, meta, quantized, nested or complex."""
    if type(v) not in (torch.Tensor, torch.nn.Parameter):
        raise LoadError(f"{what} is a {type(v).__name__}, a tensor subclass that is not loaded")
    if v.is_nested:
        raise LoadError(f"{what} is a nested tensor; a plain dense tensor is needed")
    if v.layout != torch.strided:
        raise LoadError(f"{what} is a {str(v.layout)[6:].replace('_', ' ')} tensor; a plain dense tensor is needed")
    if v.is_meta:
        raise LoadError(f"{what} is a meta tensor (it holds no values)")
    if v.is_quantized:
        raise LoadError(f"{what} is a quantized tensor ({str(v.dtype)[6:]}); a plain dense tensor is needed")
    if floating and v.is_complex():
        raise LoadError(f"{what} is complex ({str(v.dtype)[6:]}) where real floating-point values are kept")
    if floating and not v.is_floating_point():
        raise LoadError(f"{what} is {str(v.dtype)[6:]} where floating-point values are kept")


def _check_count(v, what: str, tensor_ok: bool) -> None:
    """A step count: a whole number (or, for step, a 0-d real tensor) from 0 up."""
    if isinstance(v, torch.Tensor) and tensor_ok:
        _check_tensor(v, what, floating=False)
        if v.dim() != 0 or v.is_complex() or v.dtype == torch.bool:
            raise LoadError(f"{what} is a tensor of shape {list(v.shape)} ({str(v.dtype)[6:]}); "
                            "a step count is a single number")
        value = v.item()
    elif _is_number(v) and (tensor_ok or isinstance(v, int)):
        value = v
    else:
        raise LoadError(f"{what} is {_a(v)}; a step count is a whole number")
    if not math.isfinite(value) or value < 0 or value >= COUNT_LIMIT:
        raise LoadError(f"{what} is {value}; a step count is a number from 0 up")


def _is_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and \
        (not isinstance(v, int) or -COUNT_LIMIT <= v < COUNT_LIMIT)


def _a(v) -> str:
    text = " ".join(repr(v).split())
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(v).__name__} ({text})"


def _check_lbfgs(entry: dict, pos: int, who: str, params: list, group: dict) -> None:
    """LBFGS's history: counts, numbers and flat vectors over all parameters together."""
    if pos != 0 and entry:
        raise LoadError(f"The state_dict has state for {who}; LBFGS keeps its state on the first parameter only")
    total = sum(p.numel() for p in params)
    for key, v in entry.items():
        kind = LBFGS_KINDS.get(key)
        what = f"State {key!r} of {who}"
        if kind is None:
            raise LoadError(f"{what} is not something LBFGS keeps (it keeps {', '.join(sorted(LBFGS_KINDS))})")
        if kind == "count":
            _check_count(v, what, tensor_ok=False)
        elif kind == "number":
            _check_number(v, what)
        elif kind == "flat":
            _check_flat(v, what, total)
        else:
            if not isinstance(v, list):
                raise LoadError(f"{what} is {_a(v)}; LBFGS keeps a list there")
            for item in v:
                if kind == "flats":
                    _check_flat(item, what, total)
                elif not (item is None and kind == "numbers?"):
                    _check_number(item, what)
    if entry.get("n_iter", 0) >= 1:
        lacking = [k for k in LBFGS_AFTER_FIRST if k not in entry]
        if lacking:
            raise LoadError(f"The state of {who} has n_iter {entry['n_iter']} but lacks "
                            f"{', '.join(map(repr, lacking))}, which LBFGS needs after its first iteration")
    lengths = {k: len(entry[k]) for k in ("old_dirs", "old_stps", "ro") if k in entry}
    if len(set(lengths.values())) > 1:
        raise LoadError(f"The state of {who} has histories of different lengths "
                        f"({', '.join(f'{k} {n}' for k, n in lengths.items())})")
    size = group.get("history_size", 100)
    if lengths and max(lengths.values()) > size:
        raise LoadError(f"The state of {who} keeps {max(lengths.values())} history entries; history_size is {size}")
    if "al" in entry and len(entry["al"]) < size:
        raise LoadError(f"State 'al' of {who} has {len(entry['al'])} entries; history_size {size} needs {size}")


def _check_number(v, what: str) -> None:
    if isinstance(v, torch.Tensor):
        _check_tensor(v, what, floating=True)
        if v.dim() != 0:
            raise LoadError(f"{what} has shape {list(v.shape)}; LBFGS keeps a single number there")
    elif not _is_number(v):
        raise LoadError(f"{what} is {_a(v)}; LBFGS keeps a number there")


def _check_flat(v, what: str, total: int) -> None:
    if not isinstance(v, torch.Tensor):
        raise LoadError(f"{what} is {_a(v)}; LBFGS keeps a tensor there")
    _check_tensor(v, what, floating=True)
    if v.dim() != 1 or v.numel() != total:
        raise LoadError(f"{what} has shape {list(v.shape)}; the session expects flat vectors of {total} numbers")


# ----- trying it on copies -----

def clones(session) -> list[torch.Tensor]:
    out = []
    for p in session.param_list:
        c = p.detach().clone().requires_grad_(True)
        z = torch.zeros_like(c)
        c.grad = z.to_sparse() if session.spec.optimizer in catalogue.NEEDS_SPARSE else z
        out.append(c)
    return out


def fresh(session, saved_groups, copies):
    """An optimizer of the session's kind on ``copies``, with the file's hyperparameters."""
    desc = catalogue.info(session.spec.optimizer)
    groups, i = [], 0
    for g_live, g_saved in zip(session.optimizer.param_groups, saved_groups):
        n = len(g_live["params"])
        hp = {k: v for k, v in g_saved.items() if k in desc.defaults}
        groups.append({"params": copies[i:i + n], **hp})
        i += n
    try:
        with extra_optimizers.quiet():
            return session.opt_class(groups)
    except (ValueError, TypeError, RuntimeError, OverflowError, AssertionError) as e:
        raise LoadError(f"The state_dict's hyperparameters are refused by torch: {e}") from None


def step(opt, copies=None, needs: frozenset = frozenset()) -> None:
    """One step; LBFGS gets a closure whose gradient is not zero, so its history is used.
    Other classes are stepped as the engine steps them (``needs``), on a zero gradient."""
    if needs and not isinstance(opt, torch.optim.LBFGS):
        params = [p for g in opt.param_groups for p in g["params"]]
        extra_optimizers.take_step(opt, params, needs, loss_fn=_zero_loss)
        return
    if isinstance(opt, torch.optim.LBFGS):
        def closure():
            for c in copies or ():
                c.grad = torch.ones_like(c)
            return torch.zeros(())
        opt.step(closure)
    else:
        opt.step()


def reference_state(session, saved_groups) -> tuple[dict[int, set], dict[int, dict]]:
    """What a fresh optimizer with the file's hyperparameters keeps: the keys it makes at
    construction (Adagrad makes them for every parameter) and the shapes after one step."""
    copies = clones(session)
    opt = fresh(session, saved_groups, copies)
    at_start = {i: set(opt.state.get(c, {})) for i, c in enumerate(copies)}
    try:
        with extra_optimizers.quiet():  # a step may draw random numbers: not from the session's
            step(opt, copies, _needs(session))
    except Exception:  # noqa: BLE001 - a reference we cannot build checks nothing; the dry run will say
        return at_start, {}
    out = {}
    for i, c in enumerate(copies):
        out[i] = {k: (v.shape if isinstance(v, torch.Tensor) else None) for k, v in opt.state.get(c, {}).items()}
    return at_start, out


def dry_run(session, sd) -> None:
    """Load into a copy and take one step there: what breaks there never reaches the session."""
    copies = clones(session)
    opt = fresh(session, sd["param_groups"], copies)
    try:
        # torch's load_state_dict keeps the file's tensors when dtype and device already
        # match, and step() then updates them in place: dry-run on a copy, or the real
        # load would start one step ahead (momentum decayed once more, Adam's step + 1)
        opt.load_state_dict(_copy_state(sd))
        if isinstance(opt, torch.optim.LBFGS):
            opt.param_groups[0]["max_iter"] = 1  # one iteration uses every piece of the history
        with extra_optimizers.quiet():
            step(opt, copies, _needs(session))
    except Exception as e:  # noqa: BLE001 - any failure means the file does not fit
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise LoadError(f"The state_dict does not fit this session: {first}") from None


def _needs(session) -> frozenset:
    """How the engine steps this session's class (empty for torch's, stepped as before)."""
    if catalogue.is_torch(session.spec.optimizer):
        return frozenset()
    need = getattr(session, "needs", None)  # an Engine, or a Session around one
    return need if need is not None else session.engine.needs


def _zero_loss(ps):
    """A loss whose gradient is zero but has a graph (a second-order step differentiates it)."""
    return sum((p * p).sum() for p in ps) * 0.0


# ----- parameters files -----

def check_params(session, sd) -> None:
    """A {name: tensor} file whose names, shapes and dtypes are the session's."""
    if not isinstance(sd, dict):
        raise LoadError("Parameters must be a dict of name -> tensor")
    for n, v in sd.items():
        if not isinstance(n, str):
            raise LoadError(f"The parameters file has a key {n!r} ({type(n).__name__}); parameters are named by text")
        if not isinstance(v, torch.Tensor):
            raise LoadError(f"Parameters must be a dict of name -> tensor; {n} is {_a(v)}")
    unknown = sorted(set(sd) - set(session.params))
    missing = sorted(set(session.params) - set(sd))
    if unknown:
        raise LoadError(f"The file has parameter(s) the session does not: {', '.join(unknown)}")
    if missing:
        raise LoadError(f"The file lacks parameter(s): {', '.join(missing)}")
    for n, v in sd.items():
        p = session.params[n]
        _check_tensor(v, f"Parameter {n} in the file", floating=False)
        if v.shape != p.shape:
            raise LoadError(f"Parameter {n} in the file has shape {list(v.shape)}; the session's has {list(p.shape)}")
        if v.dtype != p.dtype:
            raise LoadError(f"Parameter {n} in the file is {str(v.dtype)[6:]}; the session's is {str(p.dtype)[6:]}")
