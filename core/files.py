"""Optimizer and parameter files in torch.save format, read safely and written atomically.

Reading always uses ``torch.load(weights_only=True, map_location="cpu")`` with no
fallback: a pickle that would run code is refused, never executed. A state_dict is
checked against the session before anything is applied, so a refused file leaves
the session exactly as it was.
"""
from __future__ import annotations

import errno
import io
import os
import pickle
import re
import secrets
import stat
import time
import zipfile
from pathlib import Path

import torch

from . import catalogue, limits

OPTIMIZER_KEYS = ("optimizer_state_dict", "optimizer", "optim", "opt")
PARAMS_KEYS = ("model_state_dict", "params", "model", "state_dict", "parameters")
EXTENSIONS = (".pt", ".pth", ".pkl")
_IGNORED_GROUP_KEYS = frozenset({"params", "param_names", "initial_lr"})


class LoadError(ValueError):
    """A file that cannot be loaded into this session; the message names why."""


# ----- writing -----

STALE_TEMP_SECONDS = 600  # a temp file untouched this long is a killed save's, whoever wrote it


class SaveError(OSError):
    """A file that cannot be written where asked; the message is one sentence."""


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return kind
    return "a special file"


def save_target(path) -> Path:
    """The regular file (or new name) a save to ``path`` writes, symlinks followed.

    Refuses, in one sentence naming ``path``: an empty name, a name ending in a slash,
    anything that exists and is not a regular file (device, FIFO, socket, folder), a
    symlink loop, a file the user may not write, and a missing or read-only folder.
    """
    text = os.fspath(path)
    if not text:
        raise SaveError("Cannot save: no file name was given")
    if text.endswith(("/", os.sep)):
        raise SaveError(f"Cannot save to {text}: a name ending in a slash is a folder, not a file")
    try:
        st = os.stat(text)  # follows symlinks: what a save would overwrite
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise SaveError(f"Cannot save to {text}: {_stat_problem(e)}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise SaveError(f"Cannot save to {text}: it is {_kind(st.st_mode)}, not a regular file")
    if st is not None and not os.access(text, os.W_OK):
        raise SaveError(f"Cannot save to {text}: the file is read-only")
    target = Path(os.path.realpath(text))
    folder = target.parent
    shown = folder if os.path.islink(text) else Path(text).parent  # the folder as the user named it
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise SaveError(f"Cannot save to {text}: the folder {shown} {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SaveError(f"Cannot save to {text}: the folder {shown} is read-only")
    return target


def _stat_problem(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "it is a symlink loop"
    if e.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return e.strerror or str(e)


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside the target, then move it into place.

    flush + fsync before ``os.replace``, fsync of the folder after it: a crash mid-save
    leaves the old file (or nothing), never a truncated file under the final name.
    A symlink stays a link and its target gets the new contents; an existing file keeps
    its mode (and owner where allowed), a new one follows the umask. Hard links to the
    old file keep the old contents: the save makes a new file (README, File formats).
    """
    target = save_target(path)
    folder = target.parent
    remove_stale_temps(folder, target.name)
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    tmp = folder / f".{_temp_stem(target.name)}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        # 0o666 and O_EXCL: the kernel applies the umask (mkstemp would make 0600)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        raise _save_error(path, e, folder) from None
    try:
        if old is not None:
            _keep_owner_and_mode(fd, old)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not isinstance(e, SaveError):
            raise _save_error(path, e, folder) from None
        raise
    _fsync_folder(folder, path)


def _save_error(path, e: OSError, folder: Path) -> SaveError:
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return SaveError(f"Cannot save to {os.fspath(path)}: the folder {folder} is read-only")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return SaveError(f"Cannot save to {os.fspath(path)}: the disk is full")
    return SaveError(f"Cannot save to {os.fspath(path)}: {e.strerror or e}")


def _keep_owner_and_mode(fd: int, old: os.stat_result) -> None:
    try:  # only root may give a file away; a user can still keep its group
        os.fchown(fd, old.st_uid, old.st_gid)
    except OSError:
        pass
    os.fchmod(fd, stat.S_IMODE(old.st_mode))  # after chown, which may clear setgid bits


def _fsync_folder(folder: Path, path) -> None:
    """Make the rename durable; filesystems that cannot sync a folder are skipped, I/O errors are not."""
    if os.name == "nt":
        return
    try:
        dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a folder we may write but not read (mode -wx): nothing to sync with
    try:
        os.fsync(dfd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise SaveError(f"Saved {os.fspath(path)}, but its folder could not be synced to disk: "
                            f"{e.strerror or e}") from None
    finally:
        os.close(dfd)


def _temp_stem(name: str) -> str:
    return name[:200]  # the temp name must stay under NAME_MAX (255)


def remove_stale_temps(folder: Path, name: str) -> list[str]:
    """Remove ``.NAME.*.tmp`` files that killed saves left: their writer (the pid in the
    name) is gone, or they have not been touched for STALE_TEMP_SECONDS. Returns their names."""
    prefix = f".{_temp_stem(name)}."
    removed = []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        middle = entry.name[len(prefix):-len(".tmp")]
        ours = _TEMP_MIDDLE.fullmatch(middle)
        if not ours and not _MKSTEMP_MIDDLE.fullmatch(middle):
            continue  # another name's temp (".a.b.…" for "a"), or not a temp at all
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if now - st.st_mtime > STALE_TEMP_SECONDS or (ours and not _alive(int(ours.group(1)))):
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except OSError:
                pass
    return removed


_TEMP_MIDDLE = re.compile(r"(\d{1,10})\.[0-9a-f]{8}")  # pid.random, written by atomic_write
_MKSTEMP_MIDDLE = re.compile(r"[a-z0-9_]{8}")  # tempfile.mkstemp's, from earlier versions


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill would end the process: age alone decides
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or we cannot tell: keep its file
    return True


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


def readable(path) -> os.stat_result:
    """Refuse, in one sentence naming ``path``, anything a load should not open: an empty
    name, a missing file, a folder, FIFO, socket or device, a symlink loop. The one place
    every reader (torch files, sessions, the CLI's --load-* options) checks a path."""
    text = os.fspath(path)
    if not text:
        raise LoadError("No file name was given")
    try:
        st = os.stat(text)
    except FileNotFoundError:
        raise LoadError(f"No such file: {text}") from None
    except OSError as e:
        raise LoadError(f"Cannot open {text}: {_stat_problem(e)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise LoadError(f"Cannot open {text}: it is {_kind(st.st_mode)}, not a regular file")
    return st


def open_regular(path):
    """``path`` opened for binary reading, after :func:`readable` accepted it.

    Opened non-blocking and checked again on the open descriptor, so a FIFO swapped in
    after the check can neither block the open nor be read.
    """
    readable(path)
    text = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(text, flags)
    except OSError as e:
        raise LoadError(f"Cannot open {text}: {_stat_problem(e)}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise LoadError(f"Cannot open {text}: it is {_kind(mode)}, not a regular file")
    return os.fdopen(fd, "rb")


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
