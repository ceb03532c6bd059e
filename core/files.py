"""Optimizer and parameter files in torch.save format, read safely and written atomically.

Reading always uses ``torch.load(weights_only=True, map_location="cpu")`` with no
fallback: a pickle that would run code is refused, never executed. A state_dict is
checked against the session before anything is applied, so a refused file leaves
the session exactly as it was.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile

import torch

from . import catalogue, limits
from .paths import LoadError, SaveError, atomic_write, open_regular, readable, save_target  # noqa: F401 (files.* API)

OPTIMIZER_KEYS = ("optimizer_state_dict", "optimizer", "optim", "opt")
PARAMS_KEYS = ("model_state_dict", "params", "model", "state_dict", "parameters")
EXTENSIONS = (".pt", ".pth", ".pkl")
_IGNORED_GROUP_KEYS = frozenset({"params", "param_names", "initial_lr"})


# ----- writing (atomic, to regular files only: see core.paths) -----

def torch_save(obj, path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def params_state(session) -> dict:
    """The parameters as ``{name: tensor}``, like ``module.state_dict()``."""
    return {n: p.detach().clone() for n, p in session.params.items()}


def save_optimizer(session, path) -> None:
    torch_save(session.optimizer.state_dict(), path)


def save_params(session, path) -> None:
    torch_save(params_state(session), path)


def save_checkpoint(session, path) -> None:
    """Both together, in the layout of PyTorch's "general checkpoint" recipe."""
    torch_save({"model_state_dict": params_state(session),
                "optimizer_state_dict": session.optimizer.state_dict(),
                "step": session.step_count}, path)


# ----- reading -----

_REFUSED_MARKS = ("GLOBAL", "allowlist", "Can only create new object", "Can only build")


TORCH_ZIP_MEMBERS = 1 << 17  # a torch.save zip holds one member per storage, plus a few


def torch_read(source, name: str | None = None):
    """torch.load with weights_only=True; every failure becomes one clear LoadError.

    ``source`` is a path or a seekable binary file. Before torch reads anything, the
    bytes the file will become are compared with the memory available, and a zip-format
    file's directory is checked (ratios, methods, encryption...; see core.limits).
    """
    if name is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else "The file"
    if isinstance(source, (str, os.PathLike)):
        with open_regular(source) as f:
            return _torch_load(f, name)
    return _torch_load(source, name)


def _torch_load(f, name: str):
    start = f.tell()
    if zipfile.is_zipfile(f):
        with limits.open_zip(f, name, TORCH_ZIP_MEMBERS, error=LoadError) as z:
            need = sum(i.file_size for i in z.infolist())
    else:
        need = f.seek(0, os.SEEK_END) - start
    limits.check_bytes(need * limits.LOAD_FACTOR, f"Loading {name}", error=LoadError)
    f.seek(start)
    try:
        return torch.load(f, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        if any(m in str(e) for m in _REFUSED_MARKS):
            raise LoadError(f"Refused {name}: it holds Python objects other than tensors and plain values "
                            "(a pickle that could run code); it was not executed") from None
        raise LoadError(f"{name} is not a readable torch.save file ({_first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - garbage makes torch.load fail in many ways (KeyError, struct.error...)
        raise LoadError(f"{name} is not a readable torch.save file ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    """The gist of an exception in one line (torch's messages run to paragraphs)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    gist = next((ln for ln in lines if ln.startswith(("Unsupported operand", "WeightsUnpickler error"))), None)
    return (gist or (lines[0] if lines else type(e).__name__))[:200]


def split(obj) -> tuple[dict | None, dict | None]:
    """(optimizer state_dict, parameters) found in a loaded object; either may be None."""
    if not isinstance(obj, dict):
        raise LoadError(f"The file holds a {type(obj).__name__}, not a state_dict")
    if "state" in obj and "param_groups" in obj:
        return obj, None
    opt = next((obj[k] for k in OPTIMIZER_KEYS if isinstance(obj.get(k), dict)), None)
    params = next((obj[k] for k in PARAMS_KEYS if isinstance(obj.get(k), dict)), None)
    if opt is None and params is None and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        params = obj
    if opt is None and params is None:
        raise LoadError("The file holds neither an optimizer state_dict (state, param_groups) "
                        "nor parameters (name -> tensor)")
    return opt, params


def read_optimizer_state(path) -> dict:
    opt, _ = split(torch_read(path))
    if opt is None:
        raise LoadError(f"{path} holds parameters, not an optimizer state_dict")
    return opt


def read_params(path) -> dict:
    _, params = split(torch_read(path))
    if params is None:
        raise LoadError(f"{path} holds an optimizer state_dict, not parameters")
    return params


# ----- checking against a session -----

def _group_keys(g: dict) -> set:
    return set(g) - _IGNORED_GROUP_KEYS


def check_optimizer_state(session, sd) -> None:
    """Refuse (LoadError) a state_dict that does not fit the session; change nothing."""
    if not isinstance(sd, dict) or not isinstance(sd.get("state"), dict) or not isinstance(sd.get("param_groups"), list):
        raise LoadError("Not an optimizer state_dict: it needs 'state' (a dict) and 'param_groups' (a list)")
    live = session.optimizer.param_groups
    saved = sd["param_groups"]
    name = session.spec.optimizer
    if not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in saved):
        raise LoadError("Every param_group in the state_dict needs a 'params' list")
    if saved:
        want, got = _group_keys(live[0]), _group_keys(saved[0])
        if want != got:
            kinds = [k for k in catalogue.identify(got) if k != name]
            if kinds:
                raise LoadError(f"This state_dict is from {' or '.join(kinds)}, but the session uses {name}")
            extra, missing = sorted(got - want), sorted(want - got)
            parts = []
            if extra:
                parts.append(f"has {', '.join(extra)} that {name} does not know")
            if missing:
                parts.append(f"lacks {', '.join(missing)}")
            raise LoadError(f"The state_dict's param_groups do not match {name}: it {' and '.join(parts)}")
    if len(saved) != len(live):
        raise LoadError(f"The state_dict has {len(saved)} parameter group(s); the session has {len(live)}")
    for i, (g, s) in enumerate(zip(live, saved)):
        if len(g["params"]) != len(s["params"]):
            raise LoadError(f"Group {i} of the state_dict has {len(s['params'])} parameter(s); "
                            f"the session's group {i} has {len(g['params'])}")
    params = session.param_list
    names = {i: n for n, i in session.index_of().items()}
    saved_ids = [pid for s in saved for pid in s["params"]]
    if sorted(map(_as_int, saved_ids)) != list(range(len(params))):
        raise LoadError(f"The state_dict's params are numbered {saved_ids}; expected 0..{len(params) - 1}")
    ref = _reference_state(session, saved)
    for key, entry in sd["state"].items():
        k = _as_int(key)
        if not 0 <= k < len(params) or not isinstance(entry, dict):
            raise LoadError(f"The state_dict has state for parameter {key!r}, which the session does not have")
        p = params[k]
        if name in catalogue.NEEDS_CLOSURE:
            _check_flat_state(entry, sum(q.numel() for q in params), k, names[k])
            continue
        expected = ref.get(k, {})
        for sk, v in entry.items():
            if not isinstance(v, torch.Tensor) or v.dim() == 0:
                continue
            e = expected.get(sk)
            if isinstance(e, torch.Size) and v.shape != e:
                raise LoadError(f"State {sk!r} of parameter {k} ({names[k]}) has shape {list(v.shape)}; "
                                f"the session expects {list(e)}")
            if e is None and v.numel() == p.numel() and v.shape != p.shape:
                raise LoadError(f"State {sk!r} of parameter {k} ({names[k]}) has shape {list(v.shape)}; "
                                f"the parameter has shape {list(p.shape)}")
            if v.is_floating_point() and p.is_floating_point() and e is None and v.numel() not in (1, p.numel()) \
                    and name not in catalogue.NEEDS_CLOSURE:
                raise LoadError(f"State {sk!r} of parameter {k} ({names[k]}) has shape {list(v.shape)}, "
                                f"which does not fit a parameter of shape {list(p.shape)}")
    _dry_run(session, sd)


def _check_flat_state(entry: dict, total: int, k: int, pname: str) -> None:
    """LBFGS keeps its history as flat vectors over all parameters together."""
    for sk, v in entry.items():
        for t in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(t, torch.Tensor) and t.dim() > 0 and (t.dim() != 1 or t.numel() != total):
                raise LoadError(f"State {sk!r} of parameter {k} ({pname}) has shape {list(t.shape)}; "
                                f"the session expects flat vectors of {total} numbers")


def _as_int(k) -> int:
    try:
        return int(k)
    except (TypeError, ValueError):
        raise LoadError(f"The state_dict uses {k!r} as a parameter index; indices are whole numbers") from None


def _clones(session):
    out = []
    for p in session.param_list:
        c = p.detach().clone().requires_grad_(True)
        z = torch.zeros_like(c)
        c.grad = z.to_sparse() if session.spec.optimizer in catalogue.NEEDS_SPARSE else z
        out.append(c)
    return out


def _fresh(session, saved_groups, clones):
    desc = catalogue.info(session.spec.optimizer)
    groups, i = [], 0
    for g_live, g_saved in zip(session.optimizer.param_groups, saved_groups):
        n = len(g_live["params"])
        hp = {k: v for k, v in g_saved.items() if k in desc.defaults}
        groups.append({"params": clones[i:i + n], **hp})
        i += n
    try:
        return session.opt_class(groups)
    except (ValueError, TypeError, RuntimeError) as e:
        raise LoadError(f"The state_dict's hyperparameters are refused by torch: {e}") from None


def _step(opt):
    if isinstance(opt, torch.optim.LBFGS):
        opt.step(lambda: torch.zeros(()))
    else:
        opt.step()


def _reference_state(session, saved_groups) -> dict[int, dict]:
    """Shapes of the state a fresh optimizer with the file's hyperparameters creates."""
    clones = _clones(session)
    opt = _fresh(session, saved_groups, clones)
    try:
        _step(opt)
    except Exception:  # noqa: BLE001 - a reference we cannot build checks nothing
        return {}
    out = {}
    for i, c in enumerate(clones):
        out[i] = {k: v.shape for k, v in opt.state.get(c, {}).items() if isinstance(v, torch.Tensor)}
    return out


def _dry_run(session, sd) -> None:
    """Load into a copy and take one step there: what breaks there never reaches the session."""
    clones = _clones(session)
    opt = _fresh(session, sd["param_groups"], clones)
    try:
        # torch's load_state_dict keeps the file's tensors when dtype and device already
        # match, and step() then updates them in place: dry-run on a copy, or the real
        # load would start one step ahead (momentum decayed once more, Adam's step + 1)
        opt.load_state_dict(_copy_state(sd))
        _step(opt)
    except Exception as e:  # noqa: BLE001 - any failure means the file does not fit
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise LoadError(f"The state_dict does not fit this session: {first}") from None


def _copy_state(obj):
    """A copy of a state_dict whose tensors share no memory with the original."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _copy_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_copy_state(v) for v in obj)
    return obj


def check_params(session, sd) -> None:
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise LoadError("Parameters must be a dict of name -> tensor")
    unknown = sorted(set(sd) - set(session.params))
    missing = sorted(set(session.params) - set(sd))
    if unknown:
        raise LoadError(f"The file has parameter(s) the session does not: {', '.join(map(str, unknown))}")
    if missing:
        raise LoadError(f"The file lacks parameter(s): {', '.join(missing)}")
    for n, v in sd.items():
        p = session.params[n]
        if v.shape != p.shape:
            raise LoadError(f"Parameter {n} in the file has shape {list(v.shape)}; the session's has {list(p.shape)}")
        if v.dtype != p.dtype:
            raise LoadError(f"Parameter {n} in the file is {str(v.dtype)[6:]}; the session's is {str(p.dtype)[6:]}")


def to_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()
