"""Argument descriptions read from a docstring, whatever its style.

Forms take each field's tooltip (and, where the signature has no annotation, its type)
from the class's docstring. Optimizers outside torch.optim write them in every style:

- Google / torch: ``Args:`` (or ``Arguments:``, ``Parameters:``, ``Keyword Args:``) then
  ``name (type): text`` or ``name: text``, the text possibly on the next, deeper lines;
- numpy: ``Parameters`` over a line of dashes, then ``name : type`` with the text below;
- reST / Sphinx: ``:param name: text`` or ``:param type name: text``, and ``:type name: type``;
- none at all (every description is then empty).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_GOOGLE_HEAD = re.compile(r"^(\s*)(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|"
                          r"Other Parameters)\s*:\s*$")
_GOOGLE_ARG = re.compile(r"^(\s*)\*{0,2}(\w+)\s*(?:\(([^)]*(?:\([^)]*\)[^)]*)*)\))?\s*:(?!:)\s*(.*)$")
_NUMPY_ARG = re.compile(r"^(\s*)\*{0,2}(\w+)\s*(?::\s*(.*))?$")
_REST_PARAM = re.compile(r"^(\s*):param\s+(?:(.+?)\s+)?\*{0,2}(\w+)\s*:\s*(.*)$")
_REST_TYPE = re.compile(r"^\s*:type\s+\*{0,2}(\w+)\s*:\s*(.*)$")
_NUMPY_SECTIONS = ("Parameters", "Other Parameters", "Keyword Arguments")


@dataclass(frozen=True)
class ArgDoc:
    """What a docstring says about one argument."""

    text: str = ""
    type: str = ""  # as written ("float", "Tuple[float, float], optional"); "" when not given


def arg_docs(doc: str | None) -> dict[str, ArgDoc]:
    """name -> ArgDoc for every argument the docstring describes (first description wins)."""
    if not doc:
        return {}
    lines = _dedent(doc).splitlines()
    out: dict[str, ArgDoc] = {}
    for found in (_google(lines), _numpy(lines), _rest(lines)):
        for k, v in found.items():
            out.setdefault(k, v)
    return out


def arg_texts(doc: str | None) -> dict[str, str]:
    """name -> description only (what a tooltip shows)."""
    return {k: v.text for k, v in arg_docs(doc).items()}


def _dedent(doc: str) -> str:
    """The docstring with the common indent of its later lines removed (PEP 257's rule)."""
    lines = doc.expandtabs().splitlines()
    rest = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    cut = min(rest) if rest else 0
    return "\n".join([lines[0].strip()] + [line[cut:] for line in lines[1:]]) if lines else ""


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _google(lines: list[str]) -> dict[str, ArgDoc]:
    out: dict[str, ArgDoc] = {}
    i = 0
    while i < len(lines):
        head = _GOOGLE_HEAD.match(lines[i])
        i += 1
        if not head:
            continue
        head_indent, arg_indent = len(head.group(1)), None
        cur, text, typ = None, [], ""
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            ind = _indent(line)
            if ind <= head_indent:
                break  # the section ended (the next section, or prose)
            m = _GOOGLE_ARG.match(line)
            if m and (arg_indent is None or ind == arg_indent):
                if cur:
                    out.setdefault(cur, ArgDoc(_clean(" ".join(text)), typ))
                arg_indent = ind
                cur, typ, text = m.group(2), _clean(m.group(3) or ""), [m.group(4)]
            elif cur and arg_indent is not None and ind > arg_indent:
                text.append(line)
            elif arg_indent is not None and ind <= arg_indent:
                break
            i += 1
        if cur:
            out.setdefault(cur, ArgDoc(_clean(" ".join(text)), typ))
    return out


def _numpy(lines: list[str]) -> dict[str, ArgDoc]:
    out: dict[str, ArgDoc] = {}
    for i in range(len(lines) - 1):
        if lines[i].strip() not in _NUMPY_SECTIONS or not re.fullmatch(r"\s*-{3,}\s*", lines[i + 1]):
            continue
        base = _indent(lines[i])
        cur, text, typ = None, [], ""
        for line in lines[i + 2:]:
            if not line.strip():
                continue
            ind = _indent(line)
            if ind < base:
                break
            if ind == base:
                m = _NUMPY_ARG.match(line)
                if not m or line.strip().startswith("-"):
                    break
                if cur:
                    out.setdefault(cur, ArgDoc(_clean(" ".join(text)), typ))
                cur, typ, text = m.group(2), _clean(m.group(3) or ""), []
            elif cur:
                text.append(line)
        if cur and not (len(text) == 0 and _is_header(lines, cur)):
            out.setdefault(cur, ArgDoc(_clean(" ".join(text)), typ))
    return out


def _is_header(lines: list[str], word: str) -> bool:
    """A name that is really the next numpy section's title (``Returns`` over dashes)."""
    return any(line.strip() == word and j + 1 < len(lines) and re.fullmatch(r"\s*-{3,}\s*", lines[j + 1])
               for j, line in enumerate(lines))


def _rest(lines: list[str]) -> dict[str, ArgDoc]:
    texts: dict[str, list[str]] = {}
    types: dict[str, str] = {}
    cur, cur_indent = None, 0
    for line in lines:
        m = _REST_PARAM.match(line)
        t = _REST_TYPE.match(line)
        if m:
            cur, cur_indent = m.group(3), _indent(line)
            texts.setdefault(cur, [m.group(4)])
            if m.group(2):
                types.setdefault(cur, _clean(m.group(2)))
        elif t:
            types.setdefault(t.group(1), _clean(t.group(2)))
            cur = None
        elif cur and line.strip() and _indent(line) > cur_indent and not line.strip().startswith(":"):
            texts[cur].append(line)
        else:
            cur = None
    return {k: ArgDoc(_clean(" ".join(v)), types.get(k, "")) for k, v in texts.items()}
