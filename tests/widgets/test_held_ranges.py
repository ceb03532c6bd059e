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
