"""What the compare window asks its runner (and the main window's) to do: module-level
functions, so they travel to a runner process by name (see ``core.edits``).

Builders (``runner.replace``) return the Comparison the runner steps from then on;
commands (``runner.call``) get it as their first argument. ``branch_run`` runs on the
main window's runner: it reads a branch of that session's timeline.
"""
from __future__ import annotations

from . import compare_file, compare_recovery
from .compare import Comparison, RunSpec
from .observe import exact_value as _exact


def build(current, runs) -> Comparison:
    """A new comparison of ``runs`` (RunSpecs), all at their first step (0, or the step of the
    checkpoint a resumed session starts at)."""
    return Comparison(runs)


def recovery_runs(c: Comparison) -> tuple:
    """The configurations that rebuild ``c`` from its first step, should the runner process die
    (each run is the same run alone, so stepping them again in lockstep to the step it stood at
    gives the same values; ``core.compare_recovery``)."""
    return compare_recovery.recovery_runs(c)


def open_recovery(current, path) -> Comparison:
    """The comparison a recovery document (``core.compare_recovery``) describes, at its first
    step; ``steps_to_recover`` says how far to step it in lockstep to stand where it stood."""
    runs, step = compare_recovery.read(path)
    c = Comparison(runs)
    c.recover_to = step
    return c


def steps_to_recover(c: Comparison) -> int:
    """Lockstep steps left to the step a recovered comparison stood at (0 for any other)."""
    return max(0, (c.recover_to or 0) - c.step_count)


def explain_run(c: Comparison, run_id: int, tensor: str, index, step: int):
    """Run ``run_id``'s update of ``tensor[index]`` at ``step`` explained (``core.explain``), as the
    main window explains a session's: replayed on an engine of its own (the run does not move)."""
    return c.in_run(run_id, _explain, tensor, tuple(index), step)


def _explain(run, tensor: str, index: tuple, step: int):  # where the run lives (Comparison.in_run)
    from .explain import explain
    with run.own_rng():
        return explain(run.session, tensor, index, step)


def export_run(c: Comparison, run_id: int, path) -> list[str]:
    """Write run ``run_id`` as a plain PyTorch script (``core.export``: it reproduces the run, which
    is the same run alone, and checks its own result); returns the files written."""
    return c.in_run(run_id, _export, path)


def _export(run, path) -> list[str]:
    from .export import write_script
    with run.own_rng():
        return [str(p) for p in write_script(run.session, path)]


def open_comparison(current, path) -> Comparison:
    return compare_file.load(path)


def save(c: Comparison, path) -> None:
    compare_file.save(c, path)


def add_run(c: Comparison, rs: RunSpec) -> str:
    """Add a configuration mid-run (it catches up from the runs' first step); returns its label."""
    return c.add(rs).label


def add_config(c: Comparison, optimizer: str, hparams: dict, scheduler) -> str:
    """Add the configuration of ``optimizer``, its arguments and ``scheduler`` (``Comparison.config``:
    on a resumed problem it needs the checkpoint's data, which is here); returns its label."""
    return c.add(c.config(optimizer, hparams, scheduler)).label


def remove_run(c: Comparison, run_id: int) -> None:
    c.remove(run_id)


def set_view(c: Comparison, shown) -> None:
    """Frames carry the values of these tensors only (names; None: all), and the others' shapes
    without statistics. The window shows one tensor's heatmaps for every run, on one tab:
    copying and summarising every tensor of every run for each frame was most of its cost."""
    from .observe import View
    c.view = View(None if shown is None else frozenset(shown), hidden_stats=shown is None)


def measure_skipped(c: Comparison, seconds: float | None = None) -> tuple[bool, int, int, int]:
    """Replay what the runs left unmeasured (each run's norms and histograms, the distance and
    cosine between them) for about ``seconds`` (core.remeasure): (done, first step replayed (0:
    none was missing), last, the comparison's step)."""
    from .remeasure import measure_comparison
    r = measure_comparison(c, seconds)
    return r.done, r.first, r.last, r.end


def exact_value(c: Comparison, run_id: int, name: str, which: str, index: tuple) -> float:
    """One element of a run's parameter, gradient or state tensor, exactly."""
    return c.in_run(run_id, _exact_value, name, which, index)


def _exact_value(run, name: str, which: str, index: tuple) -> float:
    return _exact(run.session, name, which, index)


def branch_run(session, branch: int) -> RunSpec:
    """(On the main window's runner.) Branch ``branch`` of the session as a configuration."""
    return RunSpec.from_branch(session, branch)


def current_run(session) -> RunSpec:
    """(On the main window's runner.) The session's current configuration, with the checkpoint
    data a resumed one starts from."""
    return RunSpec.from_spec(session)
