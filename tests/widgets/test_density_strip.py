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


def test_labels_at_zero_decades_and_nan():
    labels = dict((text, pos) for pos, text in tick_labels(edges()))
    assert {"0", "1e-12", "1e0", "1e6", "-1e-6", "NaN"} <= set(labels)
    assert labels["-1e-6"] < labels["0"] < labels["1e-6"] < labels["NaN"]


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
