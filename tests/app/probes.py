"""Reads (and, for error tests, sabotage) done on the runner, which may be another process:
module-level functions, so they travel by name."""
from __future__ import annotations

import os


def step_count(s):
    return s.step_count


def journal(s):
    return list(s.journal)


def loss_value(s):
    return s.loss_value()


def scheduler_name(s):
    return type(s.scheduler).__name__


def _boom(*_):
    raise RuntimeError("boom from the objective")


def break_loss(s):
    """Make the session's loss raise (as a bug in the user's loss would)."""
    s.engine._loss = _boom


def mend_loss(s):
    del s.engine._loss


def pid(s):
    return os.getpid()


def value_at(s, name, index):
    return float(s.params[name].detach()[tuple(index)])
