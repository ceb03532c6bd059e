"""Reading other programs' checkpoint files lazily, and without running anything they hold.

``load_torch`` is ``torch.load(weights_only=True, map_location="cpu", mmap=True)`` with one
addition: every Python global the file names that torch's safe loader does not allow
(a Lightning module's custom hyperparameters, a Trainer's arguments object, a malicious
``os.system``) is found first by reading the pickle's opcodes (nothing runs), and stands in
the loaded object as a :class:`NotLoaded` ("not loaded: needs class X"). The stand-in is
a plain class of ours that stores nothing and calls nothing; the named class is never
imported, so the rest of the file opens. ``mmap=True``: tensors are mapped, not read, so a
multi-GB file opens in the time its pickle takes; a tensor's bytes are read when it is shown.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

from . import limits, pickle_compat
from .paths import LoadError, open_regular

MAX_JSON_BYTES = 64 << 20


class NotLoaded:
    """An entry that needs a Python class torch's safe loader refuses; nothing of it was run."""

    needs = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __call__(self, *args, **kwargs):  # a refused function called by the pickle: nothing happens
        return self

    # torch's safe loader lets a pickle call only allowed globals, comparing with ==: an instance
    # made by a stand-in (getattr(Path, "touch"), then called) counts as its stand-in class, so a
    # chain of refused calls still ends in one inert NotLoaded instead of refusing the whole file
    def __eq__(self, other):
        return self is other or other is type(self)

    __hash__ = object.__hash__

    reason = ""

    def __str__(self) -> str:
        return f"not loaded: {self.reason}" if self.reason else f"not loaded: needs class {self.needs}"

    __repr__ = __str__


def not_loaded(needs: str, reason: str = "") -> NotLoaded:
    """A stand-in made here (not by a pickle): an entry needing ``needs``, or refused for ``reason``."""
    return type("NotLoaded", (NotLoaded,), {"needs": needs, "reason": reason})()


def _stand_ins(names) -> list:
    """(stand-in class, name) pairs for torch's safe_globals; Python 2 spellings as well, since a
    pickle may name ``__builtin__.getattr`` where torch reports ``builtins.getattr``."""
    out = []
    for name in names:
        cls = type("NotLoaded", (NotLoaded,), {"needs": name})
        out.append((cls, name))
        if name.startswith("builtins."):
            out.append((cls, "__builtin__." + name[len("builtins."):]))
    return out


def load_torch(path, mmap: bool = True):
    """A torch.save file as plain containers, tensors (memory-mapped) and NotLoaded stand-ins."""
    name = str(path)
    with open_regular(path) as f:
        is_zip = zipfile.is_zipfile(f)
        f.seek(0)
        if is_zip:
            with limits.open_zip(f, name, 1 << 17, error=LoadError):
                pass  # the directory is sane (members, methods, ratios) before torch reads it
        else:
            size = f.seek(0, os.SEEK_END)
            limits.check_bytes(size * limits.LOAD_FACTOR, f"Loading {name}", error=LoadError)
    if not is_zip:  # the legacy format: read whole, refused whole (no stand-ins)
        return _refusing(name, lambda: pickle_compat.load(path))
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in many ways
        if "Unsupported operand" not in str(e):
            raise LoadError(f"{name} is not a readable torch.save file ({_gist(e)})") from None
        # pickle protocols 3-5: re-spelt in protocol 2 (nothing runs), then read whole
        data = pickle_compat._protocol_3_to_5(path)
        return _refusing(name, lambda: load_torch_bytes(data, name))
    with warnings.catch_warnings(), torch.serialization.safe_globals(_stand_ins(unsafe)):
        warnings.simplefilter("ignore")
        return _refusing(name, lambda: torch.load(path, mmap=mmap, weights_only=True, map_location="cpu"))


def _refusing(name: str, load):
    """``load()``, its failures as one LoadError sentence."""
    try:
        return load()
    except LoadError:
        raise
    except pickle.UnpicklingError as e:
        from .files import _REFUSED_MARKS, _first_line
        if not any(m in str(e) for m in _REFUSED_MARKS):  # damaged or not a pickle at all: no class involved
            raise LoadError(f"{name} is not a readable torch.save file ({_first_line(e)})") from None
        raise LoadError(f"Refused {name}: it holds Python objects other than tensors and plain values "
                        f"that cannot be set aside ({_refused_gist(e)}); nothing was executed") from None
    except Exception as e:  # noqa: BLE001
        raise LoadError(f"{name} is not a readable torch.save file ({_gist(e)})") from None


class SortedWeights(dict):
    """Weights whose saved order is lost (safetensors sorts its keys); see ``module_order``."""


def module_order(names) -> list[str]:
    """A likely ``state_dict`` order for sorted names: modules in natural order (layers.2 before
    layers.10), and in each module ``weight`` before ``bias`` as torch's layers register them."""
    import re

    def natural(s: str):
        return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s)]
    rank = {"weight": 0, "bias": 1}

    def key(name: str):
        module, _, leaf = name.rpartition(".")
        return natural(module), rank.get(leaf, 2), natural(leaf)
    return sorted(names, key=key)


def load_safetensors(path) -> dict:
    """{name: lazily read tensor} of a .safetensors file: the header only, until a tensor is asked for.
    The names come in ``module_order`` (the file keeps them sorted, not in the model's order)."""
    from safetensors import safe_open

    from .checkpoints import TensorRef
    with open_regular(path):
        pass
    try:
        f = safe_open(str(path), framework="pt", device="cpu")
        out = SortedWeights()
        for k in module_order(f.keys()):
            sl = f.get_slice(k)
            out[k] = TensorRef(tuple(sl.get_shape()), _st_dtype(sl.get_dtype()), _reader(f, k))
        return out
    except Exception as e:  # noqa: BLE001
        raise LoadError(f"{path} is not a readable safetensors file ({_gist(e)})") from None


def _reader(f, key):
    return lambda: f.get_tensor(key)


_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _st_dtype(code: str) -> str:
    return _ST_DTYPES.get(code, code.lower())


def load_json(path) -> object:
    with open_regular(path) as f:
        size = f.seek(0, os.SEEK_END)
        if size > MAX_JSON_BYTES:
            raise LoadError(f"{path} is {size:,} bytes, over the {MAX_JSON_BYTES:,}-byte limit for JSON")
        f.seek(0)
        try:
            return json.loads(f.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise LoadError(f"{path} is not readable JSON ({_gist(e)})") from None


def _refused_gist(e: BaseException) -> str:
    """What torch's weights-only unpickler refused, in a few words: the global it names (its
    message opens with advice to load with ``weights_only=False``, which is what must not be done)."""
    m = re.search(r"GLOBAL ([\w.]+)", str(e))
    if m:
        return f"it names {m.group(1)}"
    from .files import _REFUSED_MARKS
    lines = [ln.strip() for ln in str(e).splitlines() if any(k in ln for k in _REFUSED_MARKS)]
    return lines[0][:200] if lines else _gist(e)


def _gist(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]


def is_dcp(folder: Path) -> bool:
    return (folder / ".metadata").is_file()


def load_torch_bytes(data: bytes, name: str = "an entry"):
    """``load_torch`` for bytes in memory (a DCP entry): weights_only, stand-ins for refused globals."""
    import io
    if data[:2] == b"PK":
        # get_unsafe_globals_in_checkpoint takes a path or file; a BytesIO works in torch >= 2.5
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
        except Exception:  # noqa: BLE001
            unsafe = []
    else:
        unsafe = []
    with warnings.catch_warnings(), torch.serialization.safe_globals(_stand_ins(unsafe)):
        warnings.simplefilter("ignore")
        return _refusing(name, lambda: torch.load(io.BytesIO(data), weights_only=True, map_location="cpu"))
