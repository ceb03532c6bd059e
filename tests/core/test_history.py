"""History stays bounded and evenly thinned however long the run."""
import numpy as np

from core.history import HistoryRecorder


def test_history_is_bounded_and_spans_the_whole_run():
    h = HistoryRecorder(capacity=64)
    for step in range(1, 10_001):
        h.add(step, loss=1.0 / step, grad_norm=None, update_norm=0.5, lrs=[0.1], xy=(step, -step))
    v = h.view()
    assert len(v.step) < 64
    assert v.step[0] == 1 and v.step[-1] > 9_000
    d = np.diff(v.step)
    assert (d > 0).all() and d.max() == d.min(), "evenly thinned"
    assert np.isnan(v.grad_norm).all() and (v.update_norm == 0.5).all()
    assert h.path().shape == (len(v.step), 2)


def test_groups_added_later_have_nan_before_they_existed():
    h = HistoryRecorder()
    h.add(1, None, None, None, [0.1])
    h.add(2, None, None, None, [0.1, 0.001])
    v = h.view()
    assert np.isnan(v.lr[1][0]) and v.lr[1][1] == 0.001


def test_history_round_trips_through_arrays():
    h = HistoryRecorder(capacity=32)
    for s in range(100):
        h.add(s, float(s), 2.0, 3.0, [0.1, 0.2], (1.0, 2.0))
    g = HistoryRecorder.from_arrays(h.to_arrays())
    a, b = h.view(), g.view()
    for x, y in [(a.step, b.step), (a.loss, b.loss), (a.lr[1], b.lr[1]), (h.path(), g.path())]:
        assert np.array_equal(x, y)
    h.add(100, 0.0, 0.0, 0.0, [0.1, 0.2])
    g.add(100, 0.0, 0.0, 0.0, [0.1, 0.2])
    assert np.array_equal(h.view().step, g.view().step)


def test_curves_read_between_steps_equal_curves_read_once_at_the_end():
    """Frames read the curves while the run goes on (only the buckets that changed are
    recomputed): whatever the reading pattern, through bucket merges, a group added late and
    values missing at some steps, every frame equals a fresh computation of its columns."""
    from core.series import SeriesSet
    rng = np.random.default_rng(0)
    live, step = SeriesSet(capacity=64), 0
    while step < 700:
        k = int(rng.integers(1, 40))
        steps = list(range(step + 1, step + k + 1))
        rows = [{"loss": float(rng.normal()), "grad_norm": None if s % 3 else float(rng.random()),
                 "update_ratio0": float(rng.random()),
                 **({"update_ratio1": float(rng.random())} if s > 300 else {})} for s in steps]
        if rng.random() < 0.5:
            live.add_many(steps, rows)
        else:
            for s, r in zip(steps, rows):
                live.add(s, r)
        if rng.random() < 0.5:
            live.add_constant(steps[0], steps[-1], {"lr0": 0.1 if step < 400 else 0.05})
        step = steps[-1]
        if rng.random() < 0.6:
            v = live.view()
            assert v.step.shape == (live.n,)
            for got, name in [(v.loss, "loss"), (v.grad_norm, "grad_norm")] + [(lr, "lr0") for lr in v.lr]:
                assert np.array_equal(got, live.column(name)[0], equal_nan=True), (step, name)
            assert np.array_equal(v.loss_min, live.column("loss")[1], equal_nan=True)
            assert np.array_equal(v.grad_norm_max, live.column("grad_norm")[2], equal_nan=True)
            if step > 300:
                assert np.array_equal(v.update_ratio[1], live.column("update_ratio1")[0], equal_nan=True)
    assert live.width > 1  # the grid merged on the way


def test_a_running_frame_reuses_curves_younger_than_frame_age_and_an_idle_one_never(monkeypatch):
    """Frames while running carry curves at most FRAME_AGE old (rebuilding them was most of a small
    problem's frame); a paused or idle frame always ends at the last step."""
    from core import series as series_mod
    from core.series import SeriesSet
    now = [100.0]
    monkeypatch.setattr(series_mod.time, "perf_counter", lambda: now[0])
    s = SeriesSet()
    s.add(1, {"loss": 1.0})
    s.add_xy(1, 0.0, 0.0)
    first, path = s.view(series_mod.FRAME_AGE), s.path_array(series_mod.FRAME_AGE)
    s.add(2, {"loss": 0.5})
    s.add_xy(2, 1.0, 1.0)
    assert s.view(series_mod.FRAME_AGE) is first and s.path_array(series_mod.FRAME_AGE) is path  # young: reused
    fresh = s.view()  # idle: always the newest
    assert list(fresh.step) == [1, 2] and list(fresh.loss) == [1.0, 0.5]
    assert s.path_array().tolist() == [[0.0, 0.0], [1.0, 1.0]]
    s.add(3, {"loss": 0.25})
    s.add_xy(3, 2.0, 2.0)
    now[0] += series_mod.FRAME_AGE + 0.01  # older than FRAME_AGE: rebuilt
    assert list(s.view(series_mod.FRAME_AGE).step) == [1, 2, 3]
    assert s.path_array(series_mod.FRAME_AGE).tolist()[-1] == [2.0, 2.0]


def test_the_path_is_rebuilt_after_thinning_even_at_the_same_length():
    from core.series import SeriesSet
    s = SeriesSet(capacity=4)
    for k in range(1, 9):  # 2 * capacity points
        s.add_xy(k, float(k), 0.0)
    before = s.path_array().tolist()
    s.add_xy(9, 9.0, 0.0)  # thinned to 5 points
    for k in range(10, 13):
        s.add_xy(k, float(k), 0.0)
    after = s.path_array().tolist()  # 8 points again, other ones
    assert len(after) == len(before) == 8 and after[-1] == [12.0, 0.0] and after[1] == [3.0, 0.0]


def test_a_group_with_no_update_ratio_keeps_the_later_groups_in_their_places():
    """The multi_group example's bias stays 0 (its update ratio is 0/0 at every step): its group
    has no recorded ratio, and groups after it had been left out of the curves altogether."""
    from core.series import SeriesSet
    s = SeriesSet()
    s.add_many([1, 2, 3], [{"lr0": 0.1, "lr1": 0.1, "lr2": 0.01, "update_ratio0": 0.2, "update_ratio1": None,
                            "update_ratio2": 0.01 * k} for k in (1, 2, 3)])
    v = s.view()
    assert len(v.lr) == 3 and len(v.update_ratio) == 3
    assert np.isnan(v.update_ratio[1]).all()
    assert list(v.update_ratio[2]) == [0.01, 0.02, 0.03] and list(v.update_ratio[0]) == [0.2] * 3
