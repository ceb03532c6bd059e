"""Plain descriptions of optimizers and their hyperparameters (no torch here).

`core.catalogue` fills these from torch at run time; widgets build forms from them.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field

# kinds of hyperparameter value a form has to edit
FLOAT, INT, BOOL, OPT_BOOL, TUPLE, CHOICE, TEXT = (
    "float", "int", "bool", "optional bool", "tuple", "choice", "text")

# flags that pick an implementation rather than change the maths
ADVANCED = frozenset({"foreach", "fused", "capturable", "differentiable"})


@dataclass(frozen=True)
class HyperParam:
    """One constructor argument of an optimizer."""

    name: str
    kind: str
    default: object
    doc: str = ""
    choices: tuple[object, ...] = ()  # for CHOICE: the allowed values (None allowed)
    length: int = 0  # for TUPLE: number of items
    optional: bool = False  # None is an accepted value
    advanced: bool = False

    def format(self, value: object) -> str:
        """Text shown in a form for ``value``."""
        if value is None:
            return "None"
        if isinstance(value, tuple):
            return "(" + ", ".join(self._fmt_item(v) for v in value) + ")"
        return self._fmt_item(value)

    @staticmethod
    def _fmt_item(v: object) -> str:
        if isinstance(v, float):
            r = repr(v)  # exact when short; a scheduler's 0.007499999999999997 reads as 0.0075
            return r if len(r) <= 12 else f"{v:.10g}"
        return str(v)

    def parse(self, text: str) -> object:
        """Turn the text of a form field into a value, or raise ValueError (one sentence)."""
        t = text.strip()
        shown = repr(t if len(t) <= 40 else t[:37] + "...")  # a pasted novel is not echoed whole
        if self.optional and t in ("", "None", "none"):
            return None
        if self.kind in (BOOL, OPT_BOOL):
            low = t.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError(f"{self.name} must be True or False, not {shown}")
        if self.kind == INT:
            try:
                return int(t)
            except ValueError:
                raise ValueError(f"{self.name} must be a whole number, not {shown}") from None
        if self.kind == FLOAT:
            try:
                v = float(t)
            except ValueError:
                raise ValueError(f"{self.name} must be a number, not {shown}") from None
            if not math.isfinite(v):
                raise ValueError(f"{self.name} must be a finite number, not {shown}")
            return v
        if self.kind == TUPLE:
            return self._parse_tuple(t, shown)
        if self.kind == CHOICE:
            for c in self.choices:
                if t == self.format(c) or (isinstance(c, str) and t.strip("'\"") == c):
                    return c
            raise ValueError(f"{self.name} must be one of "
                             f"{', '.join(self.format(c) for c in self.choices)}, not {shown}")
        return t

    def _parse_tuple(self, t: str, shown: str) -> tuple:
        try:
            v = ast.literal_eval(t)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ValueError(f"{self.name} must be a tuple like {self.format(self.default)}, not {shown}") from None
        if not isinstance(v, (tuple, list)) or (self.length and len(v) != self.length):
            raise ValueError(f"{self.name} must be a tuple of {self.length} numbers, not {shown}")
        out = []
        for item in v:
            if item is not None and not isinstance(item, (int, float)) or isinstance(item, bool):
                raise ValueError(f"{self.name} must hold numbers, not {item!r}"[:200])
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"{self.name} must hold finite numbers, not {item!r}")
            out.append(float(item) if isinstance(item, int) else item)
        return tuple(out)


@dataclass(frozen=True)
class OptimizerInfo:
    """An optimizer class of torch.optim as a form sees it."""

    name: str
    summary: str
    hparams: tuple[HyperParam, ...]
    constraints: tuple[str, ...] = field(default_factory=tuple)  # sentences for the user

    def hparam(self, name: str) -> HyperParam | None:
        for h in self.hparams:
            if h.name == name:
                return h
        return None

    @property
    def defaults(self) -> dict[str, object]:
        return {h.name: h.default for h in self.hparams}
