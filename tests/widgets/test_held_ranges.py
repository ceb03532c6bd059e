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
