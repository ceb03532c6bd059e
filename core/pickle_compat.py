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
import warnings
import zipfile
from contextlib import contextmanager

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
    with warnings.catch_warnings():
        # torch's notes on what a file holds (TypedStorage deprecated, sparse CSR in beta)
        # would print under the one sentence the user gets; the checks say what matters
        warnings.simplefilter("ignore")
        return torch.load(source, weights_only=True, map_location="cpu")


def _protocol_3_to_5(source) -> bytes | None:
    """The file re-spelt in protocol 2, or None when it already is (or is no pickle at all)."""
    with _opened(source) as f:
        start = f.tell()
        head = f.read(2)
        f.seek(start)
        if head == b"PK":
            return _rewrite_zip(f)
        if head[:1] == b"\x80":
            return _rewrite_legacy(f)
    return None


@contextmanager
def _opened(source):
    """A binary file for ``source``; a file object given is put back where it was."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            yield f
        return
    pos = source.tell()
    try:
        yield source
    finally:
        source.seek(pos)


def _rewrite_zip(f) -> bytes | None:
    """torch.save's zip format: only ``<archive>/data.pkl`` is a pickle; the rest is copied
    only when that pickle needs re-spelling."""
    try:
        z = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # torch.load says what is wrong with it
    with z:
        infos = z.infolist()
        pkl = [i for i in infos if i.filename.endswith("data.pkl")]
        if len(pkl) != 1 or any(i.compress_type != zipfile.ZIP_STORED for i in infos):
            return None
        with z.open(pkl[0]) as member:
            head = member.read(2)
        if len(head) < 2 or head[0] != 0x80 or head[1] == SAFE_PROTOCOL:
            return None
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as w:
            for info in infos:
                body = z.read(info)
                w.writestr(info.filename, respell(body) if info is pkl[0] else body)
    return out.getvalue()


def _rewrite_legacy(f) -> bytes | None:
    """The pre-1.6 format: five pickles one after another, then raw storage bytes.

    Each pickle is checked, not only the first: a hand-made file may switch protocol.
    """
    parts = []
    for _ in range(_LEGACY_PICKLES):
        start = f.tell()
        if f.read(1) != b"\x80":
            f.seek(start)
            break  # a lone pickle (pickle.dump), or protocol 0/1: torch.load says what it is
        f.seek(start)
        end = _pickle_end(f)
        f.seek(start)
        parts.append(f.read(end - start))
    if all(p[1] == SAFE_PROTOCOL for p in parts):
        return None
    return b"".join(map(respell, parts)) + f.read()


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
        elif name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
            # protocol 2 spells bytes as _codecs.encode(text, "latin1"), which torch allows
            out.append(b"c_codecs\nencode\n" + _str_op(arg.decode("latin1")) + _str_op("latin1") + b"\x86R")
            is_str.append(None)
        elif name in _PASS or name == "STOP":
            out.append(raw)
            is_str.append(None)
        else:
            raise Unreadable(f"uses the pickle opcode {name}, which the safe loader cannot read")
    return b"".join(out)


def _push_str(out: list, is_str: list, s: str) -> None:
    out.append(_str_op(s))
    is_str.append(s)


def _str_op(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(b)) + b
