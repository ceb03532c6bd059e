"""Measuring the skipped steps afterwards (core.remeasure): the branch replayed on an engine of
its own gives the histograms and norms that measuring every step live gives, and leaves the
session where it was."""
import numpy as np
import torch

from core.cli_open import open_session
from core.remeasure import first_unmeasured_dists, first_unmeasured_series, measure_skipped
from core.session import Session
from core.spec import SchedulerSpec, SetHparam, Step, ZeroGrad
from tests.core.test_fidelity import make_spec

NORMS = ("grad_norm", "update_norm", "update_ratio0")


def replayed(spec, actions, every_step: bool) -> Session:
    s = Session(spec)
    s.observer.every_step = every_step
    for a in actions:
        s.apply(a, undoable=False)
    s.flush()
    return s


def example_actions(name):
    s = open_session(name)
    return s.timeline.branch.spec, s.timeline.branch.journal.actions()


def assert_same_measurements(got: Session, want: Session, exact_sums: bool = True) -> None:
    gd, wd = got.timeline.branch.dists, want.timeline.branch.dists
    assert (gd.n, gd.width) == (wd.n, wd.width) and set(gd.data) == set(wd.data)
    for key in wd.data:
        assert np.array_equal(gd.samples[key][:wd.n], wd.samples[key][:wd.n]), key
        assert np.array_equal(gd.data[key][:wd.n], wd.data[key][:wd.n]), key
    gs, ws = got.timeline.branch.series, want.timeline.branch.series
    assert (gs.n, gs.width) == (ws.n, ws.width)
    for name in [n for n in ws.cols if n in NORMS or n.startswith("update_ratio")]:
        for k in ("count", "min", "max"):
            assert np.array_equal(gs.cols[name][k][:ws.n], ws.cols[name][k][:ws.n]), (name, k)
        if exact_sums:
            assert np.array_equal(gs.cols[name]["sum"][:ws.n], ws.cols[name]["sum"][:ws.n]), name
        else:  # buckets that merged in pairs live and summed in a row by the replay: the same up to rounding
            assert np.allclose(gs.cols[name]["sum"][:ws.n], ws.cols[name]["sum"][:ws.n], rtol=1e-12), name


def test_the_multi_group_example_gets_every_step_measured_as_if_measured_live():
    """Its journal edits an lr at step 100 between its steps; within the budget most steps go
    unmeasured, the replay fills them with exactly what measuring every step live records."""
    spec, actions = example_actions("multi_group")
    budgeted = replayed(spec, actions, every_step=False)
    b = budgeted.timeline.branch
    assert first_unmeasured_dists(b.dists, b.end_step) is not None  # the budget skipped steps
    live = replayed(spec, actions, every_step=True)
    params = {k: v.detach().clone() for k, v in budgeted.params.items()}
    r = measure_skipped(budgeted)
    assert r.first > 1 and r.last == 200 and "by replaying them" in r.message
    assert_same_measurements(budgeted, live)
    assert first_unmeasured_dists(b.dists, 200) is None and first_unmeasured_series(b.series, 200) is None
    assert all(torch.equal(budgeted.params[k], v) for k, v in params.items())  # the session did not move
    assert measure_skipped(budgeted).first == 0  # nothing left: nothing replayed


def test_buckets_of_many_steps_a_scheduler_and_a_zero_grad_in_the_journal():
    """1,300 steps: the histograms' 512 buckets hold 4 steps each, so a bucket is complete only
    when its 4 steps are; a scheduler changes the lr every step."""
    spec = make_spec("SGD", "objective")
    spec = spec.__class__(**{**spec.__dict__, "hparams": {"lr": 0.01, "momentum": 0.9},
                             "scheduler": SchedulerSpec("StepLR", {"step_size": 300, "gamma": 0.5}, "step")})
    actions = [Step(700), ZeroGrad(False), SetHparam(0, "lr", 0.02), Step(600)]
    budgeted = replayed(spec, actions, every_step=False)
    live = replayed(spec, actions, every_step=True)
    assert budgeted.timeline.branch.dists.width == 4
    r = measure_skipped(budgeted)
    assert r.last == 1300
    assert_same_measurements(budgeted, live, exact_sums=False)


def test_a_rewound_session_stays_where_it_stands_and_a_later_step_forks_as_before():
    spec, actions = example_actions("multi_group")
    s = replayed(spec, actions, every_step=False)
    s.goto(120)
    before = (s.position(), {k: v.detach().clone() for k, v in s.params.items()}, len(s.branches()))
    measure_skipped(s)
    assert s.position() == before[0] and len(s.branches()) == before[2]
    assert all(torch.equal(s.params[k], v) for k, v in before[1].items())
    steps, _, mean = s.distribution("weight")
    assert list(steps) == list(range(1, 121))  # shown up to where it stands, every step measured
    s.step(3)  # stepping from a rewound position forks, as before
    assert len(s.branches()) == before[2] + 1


def test_a_cancelled_replay_keeps_only_the_buckets_it_finished():
    spec, actions = example_actions("multi_group")
    s = replayed(spec, actions, every_step=False)
    b = s.timeline.branch
    first = first_unmeasured_dists(b.dists, 200)
    calls = []
    r = measure_skipped(s, cancelled=lambda: len(calls) > 30 or calls.append(1))
    assert r.last < 200
    assert first_unmeasured_dists(b.dists, 200) == r.last + 1 > first


def test_in_slices_of_time_each_slice_ends_on_a_whole_bucket_and_the_next_goes_on_from_there():
    """The window asks for a fraction of a second at a time; slices add up to the whole."""
    spec = make_spec("SGD", "objective")
    actions = [Step(560), SetHparam(0, "lr", 0.02), Step(140)]
    s = replayed(spec, actions, every_step=False)
    live = replayed(spec, actions, every_step=True)
    b = s.timeline.branch
    slices = []
    while True:
        r = measure_skipped(s, seconds=0.02)
        slices.append(r)
        if r.done:
            break
        assert (r.last - b.dists.origin) % b.dists.width == 0  # a bucket boundary
        assert first_unmeasured_dists(b.dists, 700) == r.last + 1
    assert len(slices) > 3 and slices[-1].last == 700
    assert_same_measurements(s, live, exact_sums=False)


def test_a_model_drawing_from_the_global_generator_steps_on_as_if_never_measured(tmp_path):
    """Dropout draws from torch's global generator; the replay restores the states its
    checkpoints saved. The session's next steps must draw from where it stands: measured or
    not, the same parameters after 20 more steps (also from a rewound position)."""
    from core import trust
    from core.spec import GradientSpec, SessionSpec
    from core.task_spec import TaskSpec
    from tests.core.test_compare import SCRIPT
    path = tmp_path / "dropout.py"
    path.write_text(SCRIPT)
    trust.trust_file(str(path))
    try:
        spec = SessionSpec(optimizer="Adam", zero_grad_each_step=True, gradient=GradientSpec("task", task=TaskSpec(
            kind="script", script=str(path), batch_size=16, eval_every=100, seed=2)))
        for rewind in (None, 150):
            runs = []
            for measure in (False, True):
                torch.manual_seed(5)
                s = Session(spec)
                s.run(300)
                if rewind:
                    s.goto(rewind)
                if measure:
                    assert measure_skipped(s).steps > 0
                s.run(20)
                runs.append({k: v.detach().clone() for k, v in s.params.items()})
            assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0]), rewind
    finally:
        trust.forget()


def _comparison(case: str, every_step: bool, n: int):
    from core.compare import Comparison, RunSpec
    from tests.core.test_compare import specs_of
    c = Comparison([RunSpec("", s) for s in specs_of(case)])
    if every_step:  # measured live at every step: each run's observer and the series between them
        for r in c.runs:
            r.session.observer.every_step = True
        c.watch._budget.fraction = 1e9
        for _ in range(n):
            c.advance()
    else:
        c.run(n)
    c.flush()
    return c


def test_a_comparison_gets_each_runs_norms_and_the_series_between_runs_at_every_step():
    """4 runs of the digits MLP with schedulers, run as the app runs them (in turns, measured
    within their budgets): afterwards every run's norms and histograms and the distance and
    cosine between every pair equal measuring every step live, one lockstep step at a time."""
    from core.remeasure import first_unmeasured_cross, measure_comparison
    n = 300
    budgeted = _comparison("digits-schedulers", False, n)
    live = _comparison("digits-schedulers", True, n)
    assert first_unmeasured_cross(budgeted.watch.series, n) is not None  # the budget skipped steps
    r = measure_comparison(budgeted)
    assert r.done and r.first >= 1 and r.last == n
    for got, want in zip(budgeted.runs, live.runs):
        assert_same_measurements(got.session, want.session)
    gs, ws = budgeted.watch.series, live.watch.series
    assert gs.n == ws.n == n and set(gs.cols) == set(ws.cols) and len(ws.cols) == 2 * 6  # 6 pairs
    for name in ws.cols:
        for k in ("count", "sum", "min", "max"):
            assert np.array_equal(gs.cols[name][k][:n], ws.cols[name][k][:n]), (name, k)
    assert measure_comparison(budgeted).first == 0


def test_a_comparison_is_measured_in_slices_that_add_up():
    from core.remeasure import first_unmeasured_cross, measure_comparison
    c = _comparison("adam-vs-adamw-rosenbrock", False, 700)
    slices = 0
    while not measure_comparison(c, seconds=0.05).done:
        slices += 1
        assert slices < 100
    assert slices >= 2 and first_unmeasured_cross(c.watch.series, 700) is None
    live = _comparison("adam-vs-adamw-rosenbrock", True, 700)
    for name in live.watch.series.cols:
        assert np.array_equal(c.watch.series.cols[name]["count"][:350], live.watch.series.cols[name]["count"][:350])
        assert np.allclose(c.watch.series.cols[name]["sum"][:350], live.watch.series.cols[name]["sum"][:350],
                           rtol=1e-12, equal_nan=True)


def test_replays_for_an_export_or_for_measuring_leave_numpys_generator_alone(tmp_path):
    """A user's optimizer drawing from numpy's global generator: its checkpoints carry that
    generator's state, and a replay restores it. Exporting and measuring (and explaining, which
    replays the same way) must leave the generator where the session left it."""
    import numpy as np

    from core import edits, optimizer_names, trust
    from core.spec import GradientSpec, SessionSpec, TensorSpec
    from tests.core.optimizer_files import NUMPY_NOISE
    path = tmp_path / "noise.py"
    path.write_text(NUMPY_NOISE)
    trust.trust_file(str(path))
    try:
        spec = SessionSpec(optimizer=optimizer_names.file_name(str(path), "NumpyNoise"), hparams={"lr": 0.001},
                           tensors=(TensorSpec("xy", (2,), init="values", values=[-1.5, 2.0]),),
                           gradient=GradientSpec("objective", objective="rosenbrock"), zero_grad_each_step=True)
        s = Session(spec)
        s.run(300)
        np.random.seed(123)
        want = np.random.get_state()[1].copy()
        for replay in (lambda: measure_skipped(s), lambda: edits.export_script(s, tmp_path / "x.py")):
            replay()
            assert np.array_equal(np.random.get_state()[1], want)
    finally:
        trust.forget()
