"""The held ranges' step axis: round numbers, few changes while a run grows."""
import numpy as np
import pyqtgraph as pg
import pytest

from widgets.held_ranges import HeldRanges, round_up


def test_round_up_gives_1_2_5_times_a_power_of_ten():
    assert [round_up(x) for x in (0, 0.3, 1, 1.01, 2, 3, 7, 10, 11, 4999, 5001)] == \
        [1, 0.5, 1, 2, 2, 5, 10, 10, 20, 5000, 10000]


@pytest.mark.parametrize("start", [1, 5000])
def test_a_growing_step_axis_changes_range_a_few_times_a_decade_and_always_shows_every_step(start, qtbot):
    """Steps from ``start`` to 100x further, one frame per step: the range changes about 3 times
    a decade (growing by a quarter each time, it changed some 20 times between steps 16 and
    1,500), holds every step shown, and the newest step fills at least 40% of it."""
    vb = pg.ViewBox()
    held = HeldRanges()
    changes, last = 0, None
    for top in range(start + 16, start + 1600):
        held.hold("x", vb, 0, np.arange(start, top + 1, dtype=np.float64), live=True, steps=True)
        a, b = vb.viewRange()[0]
        assert a <= start and top <= b and (top - start) >= 0.4 * (b - start)
        changes += (a, b) != last
        last = (a, b)
    assert changes <= 8
