"""The density strip draws a tensor's histograms over the steps (plain numpy in)."""
import numpy as np

from widgets.density_strip import DensityStrip, density_image, tick_labels


def edges():
    mags = np.logspace(-12, 6, 73)  # as core.distributions makes them (no torch here)
    return np.concatenate([-mags[::-1], mags])


def test_each_column_is_scaled_to_its_own_largest_bin():
    counts = np.zeros((3, 5))
    counts[0, 1], counts[1, 3], counts[2, 3] = 10, 1000, 1
    img = density_image(counts)
    assert img.shape == (5, 3) and img.dtype == np.uint8
    assert img[1, 0] == img[3, 1] == img[3, 2] == 254  # every column's peak is full colour
    assert img[0, 0] == 0 and img[3, 0] == 0


def test_labels_at_zero_decades_and_nan_and_none_on_top_of_another():
    major, minor = tick_labels(edges())
    labels = dict((text, pos) for pos, text in major + minor)
    assert {"0", "1e-9", "1e0", "-1e6", "-1e-6", "NaN"} <= set(labels)
    assert labels["-1e-6"] < labels["0"] < labels["1e-6"] < labels["1e3"] < labels["NaN"]
    assert {text for _, text in major} == {"-1e6", "-1e0", "-1e-6", "0", "1e-6", "1e0", "NaN"}
    pos = sorted(p for p, _ in major + minor)  # 4 bins a decade: labels at least 3 decades apart
    assert min(b - a for a, b in zip(pos, pos[1:])) >= 3 * 4 - 0.5  # (1e-12 sat beside 0, 1e6 beside NaN)


def test_steps_between_measured_ones_show_the_last_measured_histogram(qtbot):
    e = edges()
    counts = np.zeros((5, len(e) + 2))
    counts[1, 100], counts[3, 60] = 7, 3  # measured at steps 2 and 4 only
    w = DensityStrip()
    qtbot.addWidget(w)
    w.resize(400, 300)
    w.show()
    w.setData((np.arange(1.0, 6.0), e, counts))
    img = w.image.image
    assert not img[:, 0].any()  # before the first measurement: nothing
    assert img[100, 2] == img[100, 1] == 254 and img[60, 4] == img[60, 3] == 254
    assert w.hoverAt(2.5, 100.5) == "step 3: not measured; at step 2: 7 elements in (3.16e-06 .. 5.62e-06]"
    assert w.hoverAt(0.5, 100.5) == "step 1: not measured"
    w.hoverAt(9.0, 100.5)  # away from the data: how much of it is measured
    assert w.hover.text() == "2 of 5 columns measured (hover: which)"


def test_the_strip_draws_data_and_says_when_there_is_none(qtbot):
    w = DensityStrip()
    qtbot.addWidget(w)
    w.show()
    assert w.note.isVisible()
    steps = np.array([1.0, 2.0, 3.0])
    counts = np.zeros((3, len(edges()) + 2))
    counts[:, 40] = 4
    w.setData((steps, edges(), counts))
    assert not w.note.isVisible() and w.image.image.shape == (len(edges()) + 2, 3)
    w.setData(None)
    assert w.note.isVisible() and w.image.image is None


def test_hovering_reads_out_the_step_the_values_and_the_count(qtbot):
    from widgets.density_strip import bin_text
    e = edges()
    assert bin_text(e, 0) == "≤ -1e+06" and bin_text(e, len(e)) == "> 1e+06" and bin_text(e, len(e) + 1) == "NaN"
    assert bin_text(e, 73) == "about 0 (-1e-12 .. 1e-12]"
    assert bin_text(e, 74 + 48) == "(1 .. 1.78]"
    w = DensityStrip()
    qtbot.addWidget(w)
    counts = np.zeros((3, len(e) + 2))
    counts[1, 74 + 48] = 9
    w.resize(400, 300)
    w.show()
    w.setData((np.array([1.0, 2.0, 3.0]), e, counts))
    vb = w.plot.getViewBox()
    from PySide6.QtCore import QPointF
    qtbot.waitUntil(lambda: vb.viewRect().contains(QPointF(1.6, 122.5)))
    w._on_mouse_moved(vb.mapViewToScene(QPointF(1.6, 122.5)))  # what the scene's mouse move sends
    assert w.hover.text() == "step 2: 9 elements in (1 .. 1.78]"
    assert w.hoverAt(2.5, 1.2) == "step 3: not measured; at step 2: 0 elements in (-1e+06 .. -5.62e+05]"
    assert w.hoverAt(3.5, 5) == "" and w.hover.text().startswith("1 of 3 columns measured")  # past the last step
    w.setData((np.array([4.0, 8.0]), e, counts[:2] / 4))  # buckets of 4 steps: a mean count per step
    assert w.hoverAt(5.0, 74 + 48) == "steps 5–8: 2.25 elements a step in (1 .. 1.78]"


def test_ctrl_wheel_zooms_the_steps_the_zoom_stays_as_steps_arrive_and_whole_run_resets(qtbot):
    from PySide6.QtCore import Qt

    from tests.widgets.test_tensor_view import wheel
    w = DensityStrip()
    qtbot.addWidget(w)
    w.resize(500, 300)
    w.show()
    qtbot.waitExposed(w)
    e = edges()
    steps = np.arange(1.0, 101.0)
    w.setData((steps, e, np.ones((100, len(e) + 2))))
    vb = w.plot.getViewBox()
    (x0, x1), (y0, y1) = vb.viewRange()
    centre = w.plot.viewport().rect().center()
    wheel(qtbot, w.plot.viewport(), centre, 120)  # the plain wheel is the column's: no zoom
    assert vb.viewRange() == [[x0, x1], [y0, y1]] and not w.isZoomed()
    wheel(qtbot, w.plot.viewport(), centre, 120, ctrl=True)
    qtbot.waitUntil(w.isZoomed)
    (a, b), (c, d) = vb.viewRange()
    assert b - a < 0.95 * (x1 - x0) and x0 <= a < b <= x1  # fewer steps shown, inside the run
    assert (c, d) == (y0, y1)  # every bin still shown
    more = np.arange(1.0, 151.0)
    w.setData((more, e, np.ones((150, len(e) + 2))))
    assert vb.viewRange()[0] == [a, b]  # new steps do not undo the zoom
    qtbot.mouseClick(w.resetButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not w.isZoomed())
    assert vb.viewRange()[0] == [0.0, 150.0]


def test_the_rows_shown_are_those_holding_values_with_room_not_all_148(qtbot):
    """A weight's band between 1e-4 and 1 had been drawn a few pixels high in the 148 rows from
    below -1e6 to NaN; the strip shows the bins holding values (any column), with 2 bins of room."""
    w = DensityStrip()
    qtbot.addWidget(w)
    w.resize(400, 300)
    w.show()
    e = edges()
    lo_bin, hi_bin = int(np.searchsorted(e, 1e-4)), int(np.searchsorted(e, 1.0))
    counts = np.zeros((5, len(e) + 2))
    counts[:, lo_bin] = 3
    counts[2, hi_bin] = 1  # one column reaches higher: it counts too
    w.setData((np.arange(1.0, 6.0), e, counts))
    y0, y1 = w.plot.getViewBox().viewRange()[1]
    assert (round(y0), round(y1)) == (lo_bin - 2, hi_bin + 3)
    counts[:] = 0
    counts[:, len(e) + 1] = 9  # NaNs only: the top row, at least 16 rows shown
    w.setData((np.arange(1.0, 6.0), e, counts))
    y0, y1 = w.plot.getViewBox().viewRange()[1]
    assert round(y1) == len(e) + 2 and round(y1 - y0) == 16
