"""CurvesView: loss, norms and lr per group against the step."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF

from core.snapshot import History
from widgets.curves import CurvesView

from .keys import shown


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


def test_lr_has_one_curve_and_legend_entry_per_group(curves):
    curves.setHistory(history(groups=3))
    names = [label.text for _, label in curves.legend.items]
    assert names == ["group 0", "group 1", "group 2"]
    assert len(curves.lrCurves) == 3
    curves.setHistory(history(groups=1))
    assert [label.text for _, label in curves.legend.items] == ["group 0"]


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


def test_log_toggle_switches_loss_axis(curves):
    curves.setHistory(history())
    curves.logLoss.setChecked(True)
    assert curves.plots["loss"].getAxis("left").logMode
    assert not curves.plots["grad_norm"].getAxis("left").logMode
    curves.logLoss.setChecked(False)
    assert not curves.plots["loss"].getAxis("left").logMode


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
