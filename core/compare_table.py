"""The comparison's table: chosen quantities of every run at chosen steps.

One definition for the Compare window's Table tab and ``optimlab compare``: both read a
``CompareHistory`` (plain numpy, see ``core.compare_frame``), so the window and the CLI
print the same numbers. A quantity measured only at some steps (validation, the norms on
their time budget, the distance between runs) reads its last value at or before the step.
No torch here: widgets/ imports it.
"""
from __future__ import annotations

import numpy as np

from .compare_frame import CompareHistory

# key -> (column title, what it is); keys are History fields (lr: group 0), and "distance"
COLUMNS = {"loss": ("loss", "The training loss at the step"),
           "val_loss": ("val loss", "The last validation loss at or before the step"),
           "val_accuracy": ("val acc", "The last validation accuracy at or before the step"),
           "grad_norm": ("grad norm", "The last measured gradient norm at or before the step"),
           "update_norm": ("update norm", "The last measured update norm ||Δθ|| at or before the step"),
           "lr": ("lr", "Group 0's learning rate"),
           "distance": ("distance to first", "||θ − θ_first||: how far the run is from the first configuration")}
DEFAULT_COLUMNS = ("loss", "val_accuracy")
MAX_STEPS = 20


def parse_steps(text: str) -> list[int]:
    """The table's steps from ``"10, 100 1000"``; ValueError with one sentence if a word is not a step."""
    out = []
    for word in text.replace(",", " ").split():
        if not word.isdigit():
            raise ValueError(f"Steps: {word!r} is not a whole number of steps")
        out.append(int(word))
    if len(out) > MAX_STEPS:
        raise ValueError(f"Steps: at most {MAX_STEPS} steps, not {len(out)}")
    return sorted(set(out))


def parse_columns(text: str) -> list[str]:
    """``"loss, grad_norm distance"`` as column keys; ValueError naming the first unknown word."""
    out = []
    for word in text.replace(",", " ").split():
        if word not in COLUMNS:
            raise ValueError(f"Columns: {word!r} is not one of {', '.join(COLUMNS)}")
        if word not in out:
            out.append(word)
    if not out:
        raise ValueError(f"Columns: name at least one of {', '.join(COLUMNS)}")
    return out


def value_at(step: np.ndarray, y: np.ndarray | None, k: int) -> float | None:
    """The series' last finite value at or before step ``k`` (a bucket counts from its first step)."""
    found = measured_at(step, y, k)
    return None if found is None else found[0]


def measured_at(step: np.ndarray, y: np.ndarray | None, k: int) -> tuple[float, int] | None:
    """``value_at``'s value and the step (or bucket) it was measured at."""
    if y is None or len(y) == 0 or len(step) != len(y):
        return None
    upto = np.searchsorted(step, k, side="right")
    ok = np.flatnonzero(np.isfinite(y[:upto]))
    return (float(y[ok[-1]]), int(step[ok[-1]])) if len(ok) else None


def available(history: CompareHistory, keys) -> list[str]:
    """``keys`` less the validation ones no run has a value of (only tasks are evaluated)."""
    def evaluated(key):
        return any(getattr(h, key) is not None and np.isfinite(getattr(h, key)).any() for h in history.runs)
    return [k for k in keys if not k.startswith("val_") or evaluated(k)]


def series(history: CompareHistory, run_ids: list[int], i: int, key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(steps, values) of quantity ``key`` for the ``i``-th run (``run_ids``: every run's id, in order)."""
    h = history.runs[i]
    if key == "lr":
        return h.step, h.lr[0] if h.lr else None
    if key != "distance":
        return h.step, getattr(h, key)
    if i == 0:
        return h.step, np.zeros(len(h.step))
    pair = history.cross.between(run_ids[0], run_ids[i])
    return history.cross.step, None if pair is None else pair[0]


def cell(history: CompareHistory, run_ids: list[int], i: int, key: str, k: int) -> float | None:
    """The ``i``-th run's ``key`` at step ``k`` (None where there is no value yet)."""
    return value_at(*series(history, run_ids, i, key), k)


def cell_at(history: CompareHistory, run_ids: list[int], i: int, key: str, k: int) -> tuple[float, int] | None:
    """``cell`` and the step its value was measured at (a norm measured at step 1 is not step 50's)."""
    return measured_at(*series(history, run_ids, i, key), k)
