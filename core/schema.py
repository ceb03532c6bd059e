"""The one validation layer for session JSON: text and JSON-shaped data to typed dataclasses.

msgspec (``msgspec.convert(..., strict=True)``) checks every field against the
dataclasses' annotations: no "22" for a shape, no 2.7 for a size, no "5" for a
step count, limits written as ``Annotated[..., Meta(...)]``. This module adds what
msgspec leaves to us: unknown fields of dataclasses, nesting depth, overlong numbers,
and one sentence per refusal that names the field as a path and the file when known
(``run.json: spec.tensors[0].shape[1] must be a whole number, not 2.7``).
Checks that need more than one field (names, groups, shapes of explicit values) stay
in the dataclasses' ``check()`` methods, which forms use too.
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
import typing
from contextlib import contextmanager
from functools import lru_cache
from typing import Annotated, Union

import msgspec
import numpy as np
from msgspec import Meta

# generous but sane bounds on what one session document may hold
MAX_DEPTH = 32  # nesting of JSON arrays/objects (a spec needs about 10)
MAX_NUMBER_CHARS = 100  # digits of one JSON whole number (2**63 has 19)
MAX_TENSORS = 1024  # tensors of a spec, names in a group, groups
MAX_DIMS = 4
MAX_NUMEL = 2 ** 40  # numbers in one tensor, and in all of a spec's tensors (a guard: core.limits compares with the memory)
MAX_VALUES = 2 ** 20  # explicit values written out in JSON
MAX_JOURNAL = 100_000  # journal actions (consecutive steps merge into one)
MAX_STEPS = 2 ** 53  # a step count (exact as a float)
MAX_HPARAMS = 64  # entries of one hyperparameter dict
MAX_NAME = 128  # tensor, group, optimizer and option names
MAX_TEXT = 10_000  # a spec's name and description
MAX_PATH = 4096


class SpecError(ValueError):
    """A spec or action that cannot be built; the message is for the user."""


# ----- types the dataclasses annotate their fields with -----

Word = Annotated[str, Meta(max_length=MAX_NAME)]  # a name or an option (dtype, init, kind, ...)
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
PathText = Annotated[str, Meta(max_length=MAX_PATH)]
# "Adam", "pytorch_optimizer.Lion" or "file:PATH.py:Class" (core.optimizer_names)
OptimizerText = Annotated[str, Meta(max_length=MAX_PATH + MAX_NAME + 8)]
Dim = Annotated[int, Meta(ge=1, le=MAX_NUMEL)]
Shape = Annotated[tuple[Dim, ...], Meta(max_length=MAX_DIMS)]
Names = Annotated[tuple[Word, ...], Meta(max_length=MAX_TENSORS)]
Count = Annotated[int, Meta(ge=1, le=MAX_STEPS)]
Index = Annotated[int, Meta(ge=0, le=MAX_TENSORS)]
Scalar = Union[None, bool, int, float, Text]
HValue = Union[Scalar, Annotated[tuple[Scalar, ...], Meta(max_length=MAX_TENSORS)]]
HParams = Annotated[dict[Annotated[str, Meta(min_length=1, max_length=MAX_NAME)], HValue],
                    Meta(max_length=MAX_HPARAMS)]
# explicit values: nested lists of numbers (a number for a scalar), checked against the shape
Values = Union[int, float, Annotated[list, Meta(max_length=MAX_VALUES)]]


# ----- reading JSON text -----

class _TooLong(Exception):
    pass


def _read_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _TooLong(len(text))
    return int(text)


def parse_json(text: str, source: str = "") -> object:
    """JSON text as Python data, or one SpecError sentence (naming ``source``, the file)."""
    who = source or "The session file"
    if _text_depth(text) > MAX_DEPTH:  # before parsing: json would recurse (RecursionError)
        raise SpecError(f"{who} nests deeper than {MAX_DEPTH} levels")
    try:
        # ints only: Python refuses over 4300 digits in a sentence about sys.set_int_max_str_digits,
        # while a float of any length is just a float (and a hook per float would cost)
        return json.loads(text, parse_int=_read_int)
    except _TooLong as e:
        raise SpecError(f"{who} holds a number {e.args[0]} characters long (at most {MAX_NUMBER_CHARS})") from None
    except RecursionError:
        raise SpecError(f"{who} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError, and what int/float refuse
        raise SpecError(f"{who} is not valid JSON ({' '.join(str(e).split())})") from None


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _text_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON text: the running count of the brackets
    outside strings (in numpy, not a Python loop); unbalanced text is left to the parser."""
    brackets = np.frombuffer(_NOT_BRACKET.sub("", _STRING.sub("", text)).encode(), dtype=np.uint8)
    if not brackets.size:
        return 0
    opening = (brackets == ord("[")) | (brackets == ord("{"))
    return int(np.cumsum(np.where(opening, 1, -1)).max())


@contextmanager
def in_file(source: str, kinds: tuple[type[BaseException], ...] = (SpecError,)):
    """Prefix the message of every ``kinds`` error raised inside with the file's name (same error)."""
    try:
        yield
    except kinds as e:
        msg = str(e)
        if source and e.args and not msg.startswith(source):
            e.args = (f"{source}: {msg}",) + e.args[1:]
        raise


# ----- JSON data to dataclasses -----

def convert(data, cls, where: str):
    """``data`` as a ``cls`` (a dataclass), checked strictly; ``where`` is its path in the document."""
    try:
        out = msgspec.convert(data, cls, strict=True)
    except msgspec.ValidationError as e:
        raise SpecError(_sentence(str(e), data, where)) from None
    except RecursionError:
        raise SpecError(f"{where or 'The document'} nests deeper than {MAX_DEPTH} levels") from None
    except (TypeError, ValueError) as e:  # raised by a dataclass's __post_init__
        raise SpecError(f"{where or 'The document'}: {' '.join(str(e).split())}") from None
    _refuse_unknown(cls, data, where)
    return out


def _refuse_unknown(cls, data: dict, where: str) -> None:
    """msgspec ignores unknown fields of dataclasses; we refuse them (a typo loses a setting)."""
    names = [f.name for f in dataclasses.fields(cls)]
    extra = [k for k in data if k not in names]
    if extra:
        raise SpecError(f"{where or 'The document'} has an unknown field {extra[0]!r}; "
                        f"it has {', '.join(names)}")
    hints = _hints(cls)
    for k, v in data.items():
        inner, many = _dataclass_in(hints[k])
        if inner is None or v is None:
            continue
        if many:
            for i, item in enumerate(v):
                _refuse_unknown(inner, item, f"{_join(where, k)}[{i}]")
        else:
            _refuse_unknown(inner, v, _join(where, k))


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls, include_extras=True)


def _dataclass_in(tp) -> tuple[type | None, bool]:
    """The dataclass a field holds (itself, optionally, or as the items of a tuple/list)."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        return _dataclass_in(real[0]) if len(real) == 1 else (None, False)
    if origin in (tuple, list) and args:
        inner, _ = _dataclass_in(args[0])
        return inner, inner is not None
    return (tp, False) if dataclasses.is_dataclass(tp) else (None, False)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# ----- msgspec's messages as our sentences -----

_EXPECTED = re.compile(r"Expected `(?P<want>[^`]+)`"
                       r"(?: (?P<op>[<>]=?) (?P<bound>\S+)| of length (?P<lop>[<>]=?) (?P<len>\d+))?"
                       r"(?:, got `(?P<got>[^`]+)`)?"
                       r"(?: - at (?:`key` in )?`\$(?P<path>[^`]*)`)?$")
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`(?: - at `\$(?P<path>[^`]*)`)?$")
_KIND = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "text",
         "array": "a list", "object": "an object", "null": "null"}
_STEP = re.compile(r"\.([A-Za-z_]\w*)|\[(\d+)\]|\[\.\.\.\]")


def _sentence(message: str, data, where: str) -> str:
    """One sentence naming the field for a msgspec ValidationError ``message`` about ``data``."""
    m = _MISSING.match(message)
    if m:
        path, _ = _locate(data, m["path"] or "", where)
        return f"{_join(path, m['field'])} is missing (it is required)"
    m = _EXPECTED.match(message)
    if not m:
        return f"{where or 'The document'}: {message}"
    path, value = _locate(data, m["path"] or "", where)
    path = path or "The document"
    if "`key` in" in message:
        return f"{path} has a key {_show(_bad_key(value))} that must be text of 1 to {MAX_NAME} characters"
    if m["len"]:
        n = len(value) if hasattr(value, "__len__") else "?"
        if m["want"] == "str":
            if m["lop"] == ">=":
                return f"{path} must not be empty"
            return f"{path} must be at most {int(m['len']):,} characters long, not {n:,}"
        unit = "entries" if m["want"] == "object" else "items"
        most = "at least" if m["lop"].startswith(">") else "at most"
        return f"{path} must have {most} {int(m['len']):,} {unit}, not {n:,}"
    if m["bound"]:
        bound = float(m["bound"])
        if abs(bound) == sys.float_info.max:
            return f"{path} must be a finite number, not {_show(value)}"
        bound_text = f"{int(bound):,}" if bound.is_integer() else m["bound"]
        word = "of at least" if m["op"].startswith(">") else "of at most"
        return f"{path} must be {_kinds(m['want'])} {word} {bound_text}, not {_show(value)}"
    return f"{path} must be {_kinds(m['want'])}, not {_show(value)}"


def _kinds(want: str) -> str:
    kinds = [_KIND.get(k.strip(), k.strip()) for k in want.split("|")]
    if "a number" in kinds and "a whole number" in kinds:
        kinds.remove("a whole number")
    return kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]


def _locate(data, path: str, where: str):
    """Our path for msgspec's ``$``-path, and the value found there in ``data``."""
    out, node = where, data
    for m in _STEP.finditer(path):
        if m[1] is not None:
            out, node = _join(out, m[1]), node.get(m[1]) if isinstance(node, dict) else None
        elif m[2] is not None:
            i = int(m[2])
            out = f"{out}[{i}]"
            node = node[i] if isinstance(node, (list, tuple)) and i < len(node) else None
        else:  # "[...]": a value of a hyperparameter dict; find the first that does not fit
            key = _first_bad_value(node)
            out = _join(out, key) if isinstance(key, str) and key.isidentifier() else f"{out}[{key!r}]"
            node = node.get(key) if isinstance(node, dict) else None
    return out, node


def _first_bad_value(node):
    if not isinstance(node, dict):
        return "..."
    for k, v in node.items():
        try:
            msgspec.convert(v, HValue, strict=True)
        except (msgspec.ValidationError, RecursionError):
            return k
    return "..."


def _bad_key(node) -> object:
    if isinstance(node, dict):
        for k in node:
            if not isinstance(k, str) or not 1 <= len(k) <= MAX_NAME:
                return k
    return "?"


def _show(value) -> str:
    """A value as the JSON that holds it, cut short."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
