"""CurvesView: loss, norms and lr per group against the step."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QFontMetricsF

from core.snapshot import History
from widgets.curves import CurvesView

from .keys import shown, wheel


def history(n: int = 50, groups: int = 2) -> History:
    step = np.arange(n, dtype=np.float64)
    loss = 10.0 / (1 + step)
    loss[5:8] = np.nan  # e.g. a closure that returned no loss for a while
    lr = []
    for g in range(groups):
        s = np.full(n, 0.1 / (g + 1))
        s[: 10 * g] = np.nan  # group g added at step 10*g
        lr.append(s)
    return History(step, loss, np.sqrt(step + 1), step * 1e-3, tuple(lr))


@pytest.fixture
def curves(qtbot):
    cv = CurvesView()
    shown(qtbot, cv, 400, 500)
    return cv


def move_mouse_to(cv: CurvesView, series: str, x: float, y: float, qtbot) -> None:
    vb = cv.plots[series].getViewBox()
    qtbot.waitUntil(lambda: vb.viewRect().contains(QPointF(x, y)))  # auto range is lazy
    cv._on_mouse_moved(vb.mapViewToScene(QPointF(x, y)))


def test_curves_keep_nan_as_gaps(curves):
    curves.setHistory(history())
    loss = curves.curves["loss"]
    assert loss.opts["connect"] == "finite"
    _, y = loss.getData()
    assert np.isnan(y[5:8]).all() and np.isfinite(y[8:]).all()


def test_hover_skips_nan_to_the_nearest_real_point(curves):
    curves.setHistory(history())
    assert curves.pointAt("loss", 6.2) == ("loss", 8.0, 10.0 / 9)
    assert curves.pointAt("loss", 5.4) == ("loss", 4.0, 2.0)
    curves.hoverAt("loss", 6.2)
    assert curves.hover.text() == "loss · step 8: 1.11111"


def test_hover_with_the_mouse_reads_the_plot_under_it(curves, qtbot):
    curves.setHistory(history())
    move_mouse_to(curves, "grad_norm", 15.1, 4.0, qtbot)
    assert curves.hover.text() == "grad norm · step 15: 4"


def test_lr_has_one_curve_and_legend_entry_per_group_outside_the_plots(curves):
    curves.setHistory(history(groups=3))
    assert curves.legendText() == "lr: group 0, group 1, group 2"
    assert len(curves.lrCurves) == 3
    # the legend is a line above the plots: it covers no data and is never clipped
    label = curves.legendLabel
    assert label.isVisible() and label.width() >= label.sizeHint().width() - 1
    assert label.geometry().bottom() < curves.graphics.geometry().top()
    for plot in curves.plots.values():
        assert plot.legend is None
    curves.setHistory(history(groups=1))
    assert curves.legendText() == "lr: group 0"


def test_lr_hover_picks_the_group_nearest_the_cursor(curves):
    curves.setHistory(history(groups=2))
    assert curves.pointAt("lr", 30.0, 0.06) == ("lr group 1", 30.0, 0.05)
    assert curves.pointAt("lr", 30.0, 0.09) == ("lr group 0", 30.0, 0.1)
    # before group 1 existed only group 0 has points there
    assert curves.pointAt("lr", 3.0, 0.05)[0] == "lr group 0"


def test_updates_reuse_curves(curves):
    curves.setHistory(history(groups=2))
    items = dict(curves.curves), list(curves.lrCurves)
    curves.setHistory(history(n=80, groups=2))
    assert curves.curves == items[0] and curves.lrCurves == items[1]
    assert len(curves.curves["loss"].getData()[0]) == 80


def test_log_scale_on_either_axis(curves, qtbot):
    curves.setHistory(history())
    curves.logY.setChecked(True)
    assert all(p.getAxis("left").logMode for p in curves.plots.values())
    assert not curves.plots["loss"].getAxis("bottom").logMode
    move_mouse_to(curves, "grad_norm", 15.1, np.log10(4.0), qtbot)  # the view is in log10 units
    assert curves.hover.text() == "grad norm · step 15: 4"
    curves.logX.setChecked(True)
    assert all(p.getAxis("bottom").logMode for p in curves.plots.values())
    curves.logY.setChecked(False)
    curves.logX.setChecked(False)
    assert not curves.plots["loss"].getAxis("left").logMode


def test_log_ticks_are_decades_that_do_not_overlap(curves, qtbot):
    n = 400
    step = np.arange(1, n + 1, dtype=np.float64)
    loss = 10.0 ** (2 - 8 * step / n)  # 1e2 down to 1e-6
    curves.setHistory(History(step, loss, loss, loss, ()))
    curves.logY.setChecked(True)
    axis = curves.plots["loss"].getAxis("left")
    size = axis.geometry().height()
    levels = axis.tickValues(-6.0, 2.0, size)
    assert len(levels) == 1
    values = levels[0][1]
    assert all(abs(v - round(v)) < 1e-9 for v in values)  # decades only, not 2..9 between them
    gaps = np.diff(sorted(values)) * size / 8.0
    assert (gaps >= QFontMetricsF(axis.font()).height()).all()  # labels never touch
    assert axis.tickStrings([-6.0, 0.0, 2.0], 1.0, 1.0) == ["1e-06", "1", "100"]


def test_smoothing_draws_the_moving_average_over_the_faint_raw_curve(curves):
    curves.setHistory(history())
    assert not curves.raw["loss"].isVisible()
    curves.setSmoothing(0.6)
    assert curves.smoothingLabel.text() == "smooth 0.60"
    raw, smoothed = curves.raw["loss"].getData()[1], curves.curves["loss"].getData()[1]
    assert curves.raw["loss"].isVisible()
    assert np.array_equal(raw, history().loss, equal_nan=True)
    assert smoothed[0] == raw[0]  # debiased: the first point is itself
    first5 = 10.0 / np.arange(1, 6)
    weights = 0.4 * 0.6 ** np.arange(4, -1, -1)  # TensorBoard's: older points weigh less
    assert smoothed[4] == pytest.approx((weights * first5).sum() / (1 - 0.6 ** 5))
    assert np.isnan(smoothed[5:8]).all() and np.isfinite(smoothed[8:]).all()
    assert smoothed[-1] > raw[-1]  # a falling curve's average lags behind it
    curves.hoverAt("loss", 20.0)
    assert curves.hover.text().startswith("loss · step 20: 0.47619 (smoothed ")


def test_first_step_shows_steps_zero_to_one_not_minus_twenty_to_twenty(curves, qtbot):
    one = History(np.array([1.0]), np.array([2.0]), np.array([1.0]), np.array([0.1]), (np.array([0.1]),))
    curves.setHistory(one)
    vb = curves.plots["loss"].getViewBox()
    qtbot.waitUntil(lambda: vb.viewRange()[0][0] > -0.1)
    lo, hi = vb.viewRange()[0]
    assert -0.1 < lo <= 0.0 and 1.0 <= hi < 1.1
    curves.setHistory(history(n=50))  # then the range follows the data again
    qtbot.waitUntil(lambda: vb.viewRange()[0][1] >= 49)


def test_export_writes_the_series_as_csv_and_the_plots_as_png(curves, tmp_path):
    curves.setHistory(history(n=12, groups=2))
    csv_path, png_path = tmp_path / "c.csv", tmp_path / "c.png"
    curves.exportCsv(csv_path)
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "step,loss,grad_norm,update_norm,lr_group_0,lr_group_1"
    assert len(lines) == 13
    assert lines[6].split(",")[1] == ""  # step 5: no loss (NaN) is an empty cell
    assert lines[1] == "0,10.0,1.0,0.0,0.1,"
    assert lines[11].split(",")[5] == repr(0.05)
    curves.exportPng(png_path)
    from PySide6.QtGui import QImage
    img = QImage(str(png_path))
    assert img.width() == curves.graphics.width() and img.height() == curves.graphics.height()
    assert not list(tmp_path.glob(".*.tmp"))


def test_hover_readout_follows_new_data(curves):
    curves.setHistory(history())
    curves.hoverAt("update_norm", 20.0)
    assert curves.hover.text() == "update norm · step 20: 0.02"
    h = history()
    curves.setHistory(History(h.step, h.loss, h.grad_norm, h.update_norm * 2, h.lr))
    assert curves.hover.text() == "update norm · step 20: 0.04"


def test_empty_and_all_nan_history_draw_without_error(curves):
    curves.setHistory(History.empty())
    assert curves.pointAt("loss", 0.0) is None
    n = np.full(5, np.nan)
    curves.setHistory(History(np.arange(5.0), n, n, n, (n,)))
    curves.hoverAt("lr", 2.0, 0.0)
    assert "hover" in curves.hover.text()


def test_widget_renders_something(curves, tmp_path):
    curves.setHistory(history())
    img = curves.grab().toImage()
    assert img.save(str(tmp_path / "curves.png"))
    colours = {img.pixel(x, y) for x in range(0, img.width(), 5) for y in range(0, img.height(), 5)}
    assert len(colours) > 20


def test_big_tick_values_are_short_enough_to_leave_the_axis_title_readable():
    from widgets.pg_setup import short_number
    assert [short_number(v) for v in (0.05, 250.0, 3000.0, -1500.0, 2.5e6, 2e-6, 0.0)] == \
        ["0.05", "250", "3k", "-1.5k", "2.5M", "2e-06", "0"]


def test_a_constant_lr_is_read_on_its_axis_not_rounded_to_zero(curves, qtbot):
    n = 30
    step = np.arange(n, dtype=np.float64)
    curves.setHistory(History(step, np.ones(n), np.ones(n), np.ones(n), (np.full(n, 0.01),)))
    vb = curves.plots["lr"].getViewBox()
    qtbot.waitUntil(lambda: vb.viewRange()[1][1] < 0.1)
    lo, hi = vb.viewRange()[1]
    assert lo < 0.01 < hi and hi - lo <= 0.011  # 0.01 sits mid-axis, not on a "0" tick of -0.5..0.5
    axis = curves.plots["lr"].getAxis("left")
    values = [v for _, vs in axis.tickValues(lo, hi, axis.geometry().height()) for v in vs]
    labels = axis.tickStrings(values, 1.0, 1.0)
    assert "0" not in labels and min(values) <= 0.01 <= max(values), labels


def test_the_legend_wraps_between_entries_never_inside_one(curves):
    from core.snapshot import History as H
    h = history(groups=2)
    curves.setHistory(H(h.step, h.loss, h.grad_norm, h.update_norm, h.lr, val_loss=h.loss,
                        update_ratio=h.lr))
    assert curves.legendText() == "loss: train, validation · lr, update ratio: group 0, group 1"
    # Qt wraps rich text at plain spaces only: every piece between them is a whole entry
    pieces = [p for p in curves.legendLabel.text().split(" ") if p]
    words = [p.split("</span>")[-1].replace("&nbsp;", " ").strip() for p in pieces]
    assert "group 0" in words and "group 1" in words and any(w.startswith("lr, update ratio:") for w in words)
    assert "0" not in words and "group" not in words and "ratio:" not in words


def test_on_short_rows_the_axis_labels_shorten_instead_of_running_into_each_other(qtbot):
    cv = shown(qtbot, CurvesView(), 300, 260)  # the right column at 1024x700
    cv.setHistory(history())

    def label(name):
        return cv.plots[name].getAxis("left").labelText
    qtbot.waitUntil(lambda: label("update_norm") == "|Δp|")
    assert label("grad_norm") == "|g|" and label("update_ratio") == "Δp/p"
    for name in ("grad_norm", "update_norm", "update_ratio"):  # each fits its row
        axis = cv.plots[name].getAxis("left")
        assert QFontMetricsF(axis.label.font()).horizontalAdvance(label(name)) <= axis.geometry().height()
    cv.resize(300, 900)
    qtbot.waitUntil(lambda: label("update_norm") == "|update|")
    assert label("grad_norm") == "|grad|"


def test_a_branch_at_step_0_says_no_step_yet_and_keeps_no_old_ranges(curves, qtbot):
    curves.setHistory(history())
    vb = curves.plots["grad_norm"].getViewBox()
    qtbot.waitUntil(lambda: vb.viewRange()[1][1] > 5)  # sqrt(50): the old branch's range
    curves.setHistory(History.empty())  # a rebuild: a new branch at step 0
    assert curves.plots["loss"].titleLabel.text == "no step yet"  # not "the gradients are set by hand"
    for name in ("loss", "grad_norm", "lr"):
        assert curves.plots[name].getViewBox().viewRange()[1] == [0.0, 1.0]
    curves.setHistory(history())
    qtbot.waitUntil(lambda: vb.viewRange()[1][1] > 5)  # drawn again when steps come


def test_a_log_axis_whose_curve_stays_within_one_decade_still_has_labels(curves, qtbot):
    """An update/weight ratio between 0.0012 and 0.0014 (Lion's sign updates) spans no power of
    ten: the log axis had no tick label at all."""
    n = 50
    step = np.arange(1, n + 1, dtype=np.float64)
    ratio = 0.0012 + 0.0002 * np.linspace(0.0, 1.0, n)
    curves.setHistory(History(step, np.full(n, 1.0), np.ones(n), np.ones(n), (np.full(n, 0.1),),
                              update_ratio=(ratio,)))
    axis = curves.plots["update_ratio"].getAxis("left")
    qtbot.waitUntil(lambda: axis.range[0] > -3.0 and axis.range[1] < -2.8)  # auto range is lazy
    lo, hi = axis.range
    values = [v for _, vs in axis.tickValues(lo, hi, axis.height()) for v in vs if lo <= v <= hi]
    labels = axis.tickStrings(values, 1.0, 0.0)
    assert len(values) >= 2 and len(set(labels)) == len(labels)
    assert all(0.0011 <= float(t) <= 0.0015 for t in labels)


@pytest.mark.parametrize("lo, hi", [(0.0012, 0.0014), (2e-4, 9e-4), (1e-5, 1e-3), (0.01, 0.05)])
def test_the_tick_labels_of_a_curve_leave_its_rotated_axis_title_uncovered(curves, qtbot, lo, hi):
    """The rows' left axes share one width (their plots line up); a tick label like 0.0012 is wider
    than the room beside the rotated title ("ratio"), which it covered: drawn, the axes widen to
    fit the widest label, every row alike."""
    from widgets.pg_setup import needed_width
    n = 50
    step = np.arange(1, n + 1, dtype=np.float64)
    ratio = np.geomspace(lo, hi, n)
    curves.setHistory(History(step, np.full(n, 1.0), np.ones(n), np.ones(n), (np.full(n, 0.1),),
                              update_ratio=(ratio,)))
    axis = curves.plots["update_ratio"].getAxis("left")
    qtbot.waitUntil(lambda: axis.range[0] >= np.log10(lo) - 0.5 and axis.range[1] <= np.log10(hi) + 0.5)

    def fits() -> bool:
        curves.grab()  # paint: the axis makes its tick labels
        a, b = axis.range
        strings = [s for _, vs in axis.tickValues(a, b, axis.height())
                   for s in axis.tickStrings([v for v in vs if a <= v <= b], 1.0, 0.0)]
        return bool(strings) and needed_width(axis, strings) <= axis.width()
    qtbot.waitUntil(fits)
    assert len({p.getAxis("left").width() for p in curves.plots.values()}) == 1


def test_while_running_the_ranges_hold_until_the_curves_leave_them(curves, qtbot):
    """A range that changes redraws the axes' ticks and the layout (most of drawing the curves):
    while live, steps and values move within held ranges, which grow when the curves leave
    them; paused, the ranges fit the curves again; a range the user zoomed to stays theirs."""
    curves.setHistory(history(n=100), live=True)
    vb = curves.plots["loss"].getViewBox()
    x0 = tuple(vb.viewRange()[0])
    assert x0[1] >= 99 + 0.2 * 99  # room past the newest step
    y0 = tuple(curves.plots["grad_norm"].getViewBox().viewRange()[1])
    curves.setHistory(history(n=110), live=True)  # within the room: nothing moves
    assert tuple(vb.viewRange()[0]) == x0
    assert tuple(curves.plots["grad_norm"].getViewBox().viewRange()[1]) == y0
    curves.setHistory(history(n=400), live=True)  # past it: the range grows
    x1 = vb.viewRange()[0]
    assert x1[1] >= 399 and x1 != x0
    curves.setHistory(history(n=400), live=False)  # paused: a tight fit again
    qtbot.waitUntil(lambda: 399 <= vb.viewRange()[0][1] < 399 + 0.1 * 399)
    gvb = curves.plots["grad_norm"].getViewBox()
    curves.setHistory(history(n=410), live=True)
    gvb.setYRange(0.0, 3.0, padding=0)  # the user's zoom (pyqtgraph turns auto-range off)
    curves.setHistory(history(n=900), live=True)
    assert gvb.viewRange()[1] == [0.0, 3.0]
    assert vb.viewRange()[0][1] >= 899  # the other axes still follow


@pytest.mark.parametrize("size", [30.0, 45.0, 60.0, 120.0])
def test_a_log_axis_over_eight_decades_in_a_short_row_still_has_labels(size, qtbot):
    """An update ratio from 0.3 down to 2e-9 (a bias late in a decayed schedule) on a short row:
    pyqtgraph offers decades 2 apart, and thinning them as if they were 1 apart kept none."""
    import pyqtgraph as pg
    from widgets.pg_setup import compact_ticks
    plot = pg.PlotItem()
    plot.setLogMode(y=True)
    axis = plot.getAxis("left")
    compact_ticks(axis)
    lo, hi = -8.70062734466812, -0.5738446590609234
    values = [v for _, vs in axis.tickValues(lo, hi, size) for v in vs if lo <= v <= hi]
    assert values and all(abs(v - round(v)) < 1e-9 for v in values)
    if len(values) > 1:
        assert min(np.diff(sorted(values))) * size / (hi - lo) >= QFontMetricsF(axis.font()).height()


def test_a_ratio_that_rounds_to_zero_is_noted_on_its_log_axis_not_silently_ended(curves):
    # lr decayed to nothing: the update rounds away, ||Δp||/||p|| is exactly 0, which a log
    # axis cannot draw; the plot says since when
    h = history(n=40, groups=2)
    step = np.asarray(h.step)
    r0 = np.where(step < 25, 1e-3, 0.0)
    r0[1::2] = np.nan  # measured every other step
    r1 = np.full(40, 1e-4)
    note = curves.zeroNotes["update_ratio"]
    curves.setHistory(History(h.step, h.loss, h.grad_norm, h.update_norm, h.lr, update_ratio=(r0, r1)))
    assert note.isVisible() and note.toPlainText() == "group 0: 0 since step 26"
    curves.ratioLog.setChecked(False)  # a linear axis draws the zeros
    assert not note.isVisible()
    curves.ratioLog.setChecked(True)
    r0[-2] = 1e-9  # moving again: no note
    curves.setHistory(History(h.step, h.loss, h.grad_norm, h.update_norm, h.lr, update_ratio=(r0, r1)))
    assert not note.isVisible()
    r0[-2] = 0.0
    assert not curves.zeroNotes["grad_norm"].isVisible()  # the norms' axes are linear by default
    r1[30:] = 0.0  # both groups at 0: since the later of their steps
    curves.setHistory(History(h.step, h.loss, h.grad_norm, h.update_norm, h.lr, update_ratio=(r0, r1)))
    assert note.toPlainText() == "groups 0, 1: 0 since step 30"


def test_a_wheel_zoom_over_the_curves_has_a_way_back(curves, qtbot):
    """The wheel zooms a row (its steps move every row); the plots have no pyqtgraph button or
    menu, so "reset view" appears and frames every step and value again, following the run."""
    curves.setHistory(history(n=100))
    vb = curves.plots["loss"].getViewBox()
    qtbot.waitUntil(lambda: 99 <= vb.viewRange()[0][1] < 110)
    assert not curves.resetButton.isOffered()
    port = curves.graphics.viewport()
    centre = curves.graphics.mapFromScene(vb.sceneBoundingRect().center())
    wheel(qtbot, port, centre, -120 * 4)  # out: steps far past the data, below 0 too
    qtbot.waitUntil(curves.resetButton.isVisible)
    zoomed = vb.viewRange()[0]
    assert zoomed[1] - zoomed[0] > 1.5 * 99
    curves.setHistory(history(n=200), live=True)  # the user's zoom stays theirs while running
    assert vb.viewRange()[0] == zoomed
    button = curves.resetButton
    assert button.geometry().right() <= curves.graphics.width() and button.y() >= 0  # over the plots' corner
    curves.resize(520, 500)  # a wider dock: the button stays in the corner
    qtbot.waitUntil(lambda: abs(button.geometry().right() - curves.graphics.width()) < 12)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert not button.isOffered()
    x0, x1 = vb.viewRange()[0]
    assert x0 <= 0 and 199 <= x1 < 199 * 1.3, (x0, x1)  # every step, with the room a live run keeps
    curves.setHistory(history(n=400), live=True)
    assert vb.viewRange()[0][1] >= 399  # following the run again


def test_a_long_title_never_pushes_the_plots_past_the_panel(qtbot):
    """The seed walkthrough's note "no loss: the gradients are set by hand" made the loss plot's
    title ask for its whole width: in the 270-px Curves dock the plots came out wider than the
    dock, their right part (and the notes anchored there) cut off."""
    cv = shown(qtbot, CurvesView(), 270, 420)
    n = 40
    step = np.arange(1.0, n + 1)  # a ratio falling over decades, as the seed's: wide tick labels
    cv.setHistory(History(step, np.full(n, np.nan), np.sqrt(step), step * 1e-3, (np.full(n, 0.1),),
                          update_ratio=(np.geomspace(1e-4, 1e-8, n),)))
    assert "no loss" in cv.plots["loss"].titleLabel.text
    port = cv.graphics.viewport()
    qtbot.wait(100)  # the layout takes the title's size at a later turn of the event loop
    assert all(p.getViewBox().sceneBoundingRect().right() <= port.width() for p in cv.plots.values())
