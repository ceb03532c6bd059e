"""torch.save files in pickle protocols 3-5, rewritten as protocol 2 for torch's safe loader.

torch.load(weights_only=True) reads only protocol 2's opcodes: a legitimate state_dict
saved with ``pickle_protocol=4`` fails with "Unsupported operand 149" (and protocol 3
prints a three-line UserWarning). Protocols 3-5 add no new kind of object a state_dict
uses, only new spellings (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL...), so the
opcode stream is re-spelt in protocol 2 without running anything (pickletools only
parses) and handed to the same weights_only loader: every global still meets torch's
allowlist, so a malicious pickle is refused exactly as before.
"""
from __future__ import annotations

import io
import os
import pickletools
import struct
import zipfile

import torch

SAFE_PROTOCOL = 2
_LEGACY_PICKLES = 5  # magic number, protocol, sys info, the object, storage keys
# protocol-2 opcodes torch's weights_only unpickler reads, copied as they are
_PASS = frozenset({
    "NEWOBJ", "REDUCE", "BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "MARK", "TUPLE",
    "TUPLE1", "TUPLE2", "TUPLE3", "NONE", "NEWFALSE", "NEWTRUE", "EMPTY_TUPLE", "EMPTY_LIST",
    "EMPTY_DICT", "EMPTY_SET", "BININT", "BININT1", "BININT2", "BINFLOAT", "BINPERSID",
    "LONG1", "SHORT_BINSTRING", "GLOBAL"})
_STRINGS = frozenset({"BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"})


class Unreadable(ValueError):
    """The pickle uses something torch's safe loader cannot read (nothing was run)."""


def load(source):
    """``torch.load(source, weights_only=True, map_location="cpu")`` for any protocol 2-5."""
    data = _protocol_3_to_5(source)
    if data is not None:
        source = io.BytesIO(data)
    return torch.load(source, weights_only=True, map_location="cpu")


def _protocol_3_to_5(source) -> bytes | None:
    """The file re-spelt in protocol 2, or None when it already is (or is no pickle at all)."""
    head = _peek(source, 2)
    if head[:2] == b"PK":
        with _rewind(source):
            raw = _read_all(source)
        return _rewrite_zip(raw)
    if len(head) == 2 and head[0] == 0x80 and head[1] != SAFE_PROTOCOL:
        with _rewind(source):
            raw = _read_all(source)
        return _rewrite_legacy(raw)
    return None


def _peek(source, n: int) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return f.read(n)
    with _rewind(source):
        return source.read(n)


class _rewind:
    """Read a file object and put its position back (torch.load reads it next)."""

    def __init__(self, f):
        self.f = f
        self.pos = None if isinstance(f, (str, os.PathLike)) else f.tell()

    def __enter__(self):
        return self.f

    def __exit__(self, *exc):
        if self.pos is not None:
            self.f.seek(self.pos)


def _read_all(source) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return f.read()
    return source.read()


def _rewrite_zip(raw: bytes) -> bytes | None:
    """torch.save's zip format: only ``<archive>/data.pkl`` is a pickle."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        infos = z.infolist()
        pkl = [i for i in infos if i.filename.endswith("data.pkl")]
        if len(pkl) != 1 or any(i.compress_type != zipfile.ZIP_STORED for i in infos):
            return None  # not torch.save's layout: torch.load says what is wrong
        data = z.read(pkl[0])
        if len(data) < 2 or data[0] != 0x80 or data[1] == SAFE_PROTOCOL:
            return None
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as w:
            for info in infos:
                body = respell(data) if info is pkl[0] else z.read(info)
                w.writestr(info.filename, body)
    return out.getvalue()


def _rewrite_legacy(raw: bytes) -> bytes:
    """The pre-1.6 format: five pickles one after another, then raw storage bytes."""
    f = io.BytesIO(raw)
    parts = []
    for _ in range(_LEGACY_PICKLES):
        start = f.tell()
        if start == len(raw):
            break  # a lone pickle (pickle.dump): torch.load reads it and says what it is
        end = _pickle_end(f)
        parts.append(respell(raw[start:end]))
        f.seek(end)
    return b"".join(parts) + raw[f.tell():]


def _pickle_end(f) -> int:
    try:
        for op, _, pos in pickletools.genops(f):
            if op.name == "STOP":
                return pos + 1
    except (ValueError, EOFError, struct.error) as e:
        raise Unreadable(f"holds a damaged pickle ({e})") from None
    raise Unreadable("holds a pickle without an end")


def respell(data: bytes) -> bytes:
    """One pickle (protocol 2-5) in protocol 2's opcodes; nothing in it is run.

    Strings are kept as constants rather than memoised, so STACK_GLOBAL (module and
    name as the two strings just pushed) becomes GLOBAL ``module\\nname``, which torch
    checks against its allowlist.
    """
    out: list[bytes] = []
    is_str: list[str | None] = []  # the string an output chunk pushes, if it is one
    consts: dict[int, str] = {}  # memo slots holding strings
    memo_keys: set[int] = set()  # MEMOIZE stores at len(memo), as pickle does
    try:
        ops = list(pickletools.genops(data))
    except (ValueError, EOFError, struct.error) as e:
        raise Unreadable(f"holds a damaged pickle ({e})") from None
    for i, (op, arg, pos) in enumerate(ops):
        name = op.name
        raw = data[pos:ops[i + 1][2]] if i + 1 < len(ops) else data[pos:]
        if name == "PROTO":
            if arg < SAFE_PROTOCOL:
                raise Unreadable(f"uses pickle protocol {arg}, which the safe loader cannot read")
            out.append(b"\x80\x02")
            is_str.append(None)
        elif name == "FRAME":
            continue  # framing only groups opcodes for faster reads
        elif name in _STRINGS:
            _push_str(out, is_str, arg)
        elif name in ("MEMOIZE", "BINPUT", "LONG_BINPUT"):
            idx = len(memo_keys) if name == "MEMOIZE" else arg
            memo_keys.add(idx)
            if is_str and is_str[-1] is not None:
                consts[idx] = is_str[-1]
            else:
                consts.pop(idx, None)
                out.append(b"r" + struct.pack("<I", idx))
                is_str.append(None)
        elif name in ("BINGET", "LONG_BINGET"):
            if arg in consts:
                _push_str(out, is_str, consts[arg])
            else:
                out.append(b"j" + struct.pack("<I", arg))
                is_str.append(None)
        elif name == "STACK_GLOBAL":
            if len(is_str) < 2 or is_str[-1] is None or is_str[-2] is None:
                raise Unreadable("names a Python global it computes, which the safe loader refuses")
            module, qual = is_str[-2], is_str[-1]
            if "\n" in module or "\n" in qual:
                raise Unreadable("names a Python global with a line break in its name")
            del out[-2:], is_str[-2:]
            out.append(b"c" + module.encode() + b"\n" + qual.encode() + b"\n")
            is_str.append(None)
        elif name in ("BINBYTES", "SHORT_BINBYTES"):
            raise Unreadable("holds a bytes object, which no state_dict holds")
        elif name in _PASS or name == "STOP":
            out.append(raw)
            is_str.append(None)
        else:
            raise Unreadable(f"uses the pickle opcode {name}, which the safe loader cannot read")
    return b"".join(out)


def _push_str(out: list, is_str: list, s: str) -> None:
    b = s.encode("utf-8", "surrogatepass")
    out.append(b"X" + struct.pack("<I", len(b)) + b)
    is_str.append(s)
