"""Breakpoints: pause at the first step where a condition holds.

Conditions, in the syntax of the CLI's ``--until`` and the window's breakpoint list::

    loss nonfinite            loss > 5            loss rising 10      (rising on each of 10 steps)
    loss < 0.01               grad_norm < 1e-4    (below: run until it has converged)
    grad_norm > 10            update_norm > 1     update_ratio[1] > 0.01   (group 1: ||dp|| / ||p||)
    weight nonfinite          fc1.weight.grad abs > 100      fc1.weight.exp_avg_sq nonfinite
    params nonfinite          step == 120                    t0.Q[1] abs > 1e3

A tensor condition names a parameter, optionally followed by ``.grad`` or an optimizer
state key (``exp_avg``, ``momentum_buffer`` ...); a state entry that is a list of tensors
(SOAP's and Kron's preconditioners) is named item by item, ``Q[1]``, as the state view
lists it. The observer evaluates each enabled condition after every step as a tensor on
the parameters' device and reads the results in batches, so watching adds no host sync
per step on a GPU (see ``core.observer``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import torch

KINDS = ("loss", "grad_norm", "update_norm", "update_ratio", "tensor", "params", "step")
OPS = ("nonfinite", ">", "<", "rising", "abs>", "==")


class BreakpointError(ValueError):
    """A condition that cannot be parsed or does not fit the session (one sentence)."""


@dataclass(frozen=True)
class Breakpoint:
    """One condition. ``target`` is a tensor (``fc1.weight``, ``fc1.weight.grad``, ``w.exp_avg``)."""

    kind: str
    op: str
    value: float = 0.0
    group: int = 0
    target: str = ""
    enabled: bool = True

    @property
    def text(self) -> str:
        what = {"update_ratio": f"update_ratio[{self.group}]", "tensor": self.target}.get(self.kind, self.kind)
        if self.op == "nonfinite":
            return f"{what} nonfinite"
        if self.op == "rising":
            return f"{what} rising {int(self.value)}"
        if self.op == "abs>":
            return f"{what} abs > {self.value:g}"
        if self.op == "==":
            return f"{what} == {int(self.value)}"
        return f"{what} {self.op} {self.value:g}"

    @property
    def needs(self) -> frozenset[str]:
        """What the observer must measure on every step while this is enabled."""
        return frozenset({"grad_norm": {"grad_norm"}, "update_norm": {"update_norm"},
                          "update_ratio": {"update_norm"}}.get(self.kind, set()))

    def with_enabled(self, on: bool) -> "Breakpoint":
        return replace(self, enabled=on)


DEFAULTS = (Breakpoint("loss", "nonfinite"), Breakpoint("params", "nonfinite"))

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_TARGET = r"([A-Za-z_][\w.]*(?:\[\d+\])?)"  # fc1.weight, fc1.weight.grad, t0.Q[1] (an item of a list)
_PATTERNS = [
    (re.compile(r"^(loss|params)\s+nonfinite$"), lambda m: Breakpoint(m[1], "nonfinite")),
    (re.compile(rf"^(loss|grad_norm|update_norm)\s*([<>])\s*{_NUM}$"),
     lambda m: Breakpoint(m[1], m[2], float(m[3]))),
    (re.compile(r"^loss\s+rising\s+(\d+)$"), lambda m: Breakpoint("loss", "rising", float(m[1]))),
    (re.compile(rf"^update_ratio\[(\d+)\]\s*([<>])\s*{_NUM}$"),
     lambda m: Breakpoint("update_ratio", m[2], float(m[3]), group=int(m[1]))),
    (re.compile(r"^step\s*==\s*(\d+)$"), lambda m: Breakpoint("step", "==", float(m[1]))),
    (re.compile(rf"^{_TARGET}\s+nonfinite$"), lambda m: Breakpoint("tensor", "nonfinite", target=m[1])),
    (re.compile(rf"^{_TARGET}\s+abs\s*>\s*{_NUM}$"),
     lambda m: Breakpoint("tensor", "abs>", float(m[2]), target=m[1])),
]


def parse(text: str) -> Breakpoint:
    """A Breakpoint from its text, or BreakpointError naming what is wrong."""
    t = " ".join(str(text).split())
    for pattern, make in _PATTERNS:
        m = pattern.match(t)
        if m:
            bp = make(m)
            if bp.op in (">", "<", "abs>") and not math.isfinite(bp.value):
                raise BreakpointError(f"Invalid breakpoint {text!r}: the threshold must be a finite number")
            if bp.op == "rising" and bp.value < 1:
                raise BreakpointError(f"Invalid breakpoint {text!r}: rising needs at least 1 step")
            return bp
    raise BreakpointError(f"Cannot read the breakpoint {text!r}: write e.g. 'loss nonfinite', 'loss < 0.01', "
                          "'grad_norm > 10', "
                          "'update_ratio[0] > 0.01', 'loss rising 5', 'weight.grad abs > 100', 'w.Q[1] nonfinite' "
                          "or 'step == 120'")


def resolve_target(target: str, names, state_keys_of) -> tuple[str, str]:
    """(tensor name, "value" | "grad" | state key) for a tensor condition's target."""
    if target in names:
        return target, "value"
    head, _, which = target.rpartition(".")
    if head in names and which:
        if which in ("value", "grad") or which in state_keys_of(head):
            return head, which
        raise BreakpointError(f"{head} has no {which!r}: use value, grad or one of its optimizer state entries "
                              f"({', '.join(sorted(state_keys_of(head))) or 'none yet'})")
    raise BreakpointError(f"The breakpoint names {target!r}, which is not a tensor of this session")


def check_fits(bp: Breakpoint, names, n_groups: int) -> None:
    """Refuse (BreakpointError) a condition that names what the session does not have."""
    if bp.kind == "update_ratio" and not 0 <= bp.group < n_groups:
        raise BreakpointError(f"update_ratio[{bp.group}] names a group the optimizer does not have "
                              f"(it has {n_groups})")
    if bp.kind == "tensor":
        head = bp.target
        while head and head not in names:
            head = head.rpartition(".")[0]
        if not head:
            raise BreakpointError(f"The breakpoint names {bp.target!r}, which is not a tensor of this session")


def tensor_flag(t: torch.Tensor | None, op: str, value: float) -> torch.Tensor | None:
    """A 0-d bool tensor on ``t``'s device: does ``t`` meet the condition? (no host sync)."""
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        return None
    t = t.detach()
    if t.is_sparse:
        t = t.coalesce().values()
    if t.numel() == 0:
        return None
    if op == "nonfinite":
        return ~torch.isfinite(t).all()
    return t.abs().amax() > value
