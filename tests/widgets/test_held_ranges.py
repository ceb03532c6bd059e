"""The held ranges' step axis: round numbers, few changes while a run grows."""
import numpy as np
import pyqtgraph as pg
import pytest

from widgets.held_ranges import HeldRanges, round_up


def test_round_up_gives_round_numbers_of_steps():
    assert [round_up(x) for x in (0, 0.3, 1, 1.01, 2, 2.5, 4, 6, 7.5, 10, 11, 4999, 5001)] == pytest.approx(
        [1, 0.3, 1, 1.5, 2, 3, 5, 7, 10, 10, 15, 5000, 7000])


@pytest.mark.parametrize("start", [1, 5000])
def test_a_growing_step_axis_changes_range_a_few_times_a_decade_and_always_shows_every_step(start, qtbot):
    """Steps from ``start`` to 100x further, one frame per step: the range changes about 6 times
    a decade (growing by a quarter each time, it changed some 20 times between steps 16 and
    1,500), holds every step shown, and the newest step is at 60% of its width or more."""
    vb = pg.ViewBox()
    held = HeldRanges()
    changes, last = 0, None
    for top in range(start + 16, start + 1600):
        held.hold("x", vb, 0, np.arange(start, top + 1, dtype=np.float64), live=True, steps=True)
        a, b = vb.viewRange()[0]
        assert a <= start and top <= b and (top - start) >= 0.6 * (b - start)
        changes += (a, b) != last
        last = (a, b)
    assert changes <= 14


def test_values_on_the_frames_edge_get_room_while_live(qtbot):
    """A comparison's lr plot before its first step stood at pyqtgraph's default range 0..1;
    running, Adadelta's lr of 1.0 (with 0.01 and 0.001 beside it) fitted that range, which was
    held, and its line lay under the plot's top edge, unseen until paused."""
    vb = pg.ViewBox()  # auto-range on, nothing drawn yet: 0..1
    assert vb.viewRange()[1] == [0, 1]
    held = HeldRanges()
    held.hold(("lr", 1), vb, 1, np.array([0.001, 0.01, 1.0]), live=True)
    lo, hi = vb.viewRange()[1]
    assert lo < 0.001 and hi > 1.0 + 0.05 * (hi - lo)  # inside, with room
    held.hold(("lr", 1), vb, 1, np.array([0.001, 0.01, 1.0]), live=True)
    assert tuple(vb.viewRange()[1]) == (lo, hi)  # and held there


@pytest.mark.parametrize("live", [True, False])
def test_a_constant_series_gets_a_range_about_its_value_with_distinct_tick_labels(live, qtbot):
    """A constant lr of 0.05, bucketed (its means off by float64 rounding), had a range of 3e-16
    from pyqtgraph's auto-range and three ticks all labelled "0.05"."""
    from widgets.pg_setup import compact_ticks
    plot = pg.PlotWidget()
    qtbot.addWidget(plot)
    plot.resize(300, 250)
    plot.show()
    axis = plot.getPlotItem().getAxis("left")
    compact_ticks(axis)
    vb = plot.getPlotItem().getViewBox()
    lr = np.full(1000, 0.05)
    lr[::7], lr[::11] = np.nextafter(0.05, 1), np.nextafter(0.05, 0)
    plot.plot(np.arange(1000.0), lr)
    held = HeldRanges()
    held.hold("lr", vb, 1, lr, live=live)
    qtbot.waitUntil(lambda: vb.viewRange()[1][1] < 0.9)  # paused: pyqtgraph's auto-range, when it draws
    lo, hi = vb.viewRange()[1]
    assert lo == pytest.approx(0.045) and hi == pytest.approx(0.055)
    labels = [s for sp, vals in axis.tickValues(lo, hi, 200) for s in axis.tickStrings(vals, 1.0, sp)]
    assert len(labels) >= 2 and len(set(labels)) == len(labels)
    if not live:  # once it varies, pyqtgraph fits it again
        held.hold("lr", vb, 1, np.concatenate([lr, [0.025]]), live=False)
        assert vb.autoRangeEnabled()[1]


def test_tick_labels_get_the_digits_that_tell_neighbours_apart():
    from widgets.pg_setup import short_numbers
    assert short_numbers([0.04, 0.05, 0.06]) == ["0.04", "0.05", "0.06"]
    assert short_numbers([0.04995, 0.05, 0.05005]) == ["0.04995", "0.05", "0.05005"]
    assert short_numbers([2500.0, 3000.0]) == ["2.5k", "3k"]
