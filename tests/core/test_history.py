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
