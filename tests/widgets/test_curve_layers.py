"""Curves: the min/max envelope of bucketed series, the update/weight ratio, other branches overlaid."""
from __future__ import annotations

import numpy as np
import pytest

from core.snapshot import History
from widgets.curves import CurvesView

from .keys import shown


@pytest.fixture
def curves(qtbot):
    return shown(qtbot, CurvesView(), 400, 600)


def bucketed(n=100, bucket=4) -> History:
    step = np.arange(1, n + 1, dtype=np.float64) * bucket
    mean = 1.0 / step
    return History(step, mean, mean * 2, mean * 3, (np.full(n, 0.1),),
                   loss_min=mean * 0.5, loss_max=mean * 1.5, grad_norm_min=mean, grad_norm_max=mean * 4,
                   update_norm_min=mean * 2, update_norm_max=mean * 4,
                   update_ratio=(np.full(n, 1e-3), np.full(n, 1e-2)), bucket=bucket)


def test_a_band_spans_each_bucket_when_points_stand_for_several_steps(curves):
    h = bucketed()
    curves.setHistory(h)
    for name in ("loss", "grad_norm", "update_norm"):
        env = curves.envelopes[name]
        assert env.isVisible()
        lo, hi = env.data()
        np.testing.assert_array_equal(lo, getattr(h, f"{name}_min"))
        np.testing.assert_array_equal(hi, getattr(h, f"{name}_max"))
    assert not curves.envelopes["loss"].band.path().isEmpty()


def test_no_band_while_every_point_is_one_step(curves):
    h = bucketed(bucket=1)
    curves.setHistory(History(h.step, h.loss, h.grad_norm, h.update_norm, h.lr, loss_min=h.loss_min,
                              loss_max=h.loss_max, bucket=1))
    assert not any(e.isVisible() for e in curves.envelopes.values())


def test_the_update_ratio_has_a_log_curve_per_group(curves):
    curves.setHistory(bucketed())
    assert len(curves.ratioCurves) == 2
    assert curves.plots["update_ratio"].getAxis("left").logMode
    assert not curves.plots["loss"].getAxis("left").logMode
    np.testing.assert_array_equal(curves.ratioCurves[1].getOriginalDataset()[1], np.full(100, 1e-2))
    assert curves.pointAt("update_ratio", 40.0, 0.009) == ("update ratio group 1", 40.0, 0.01)
    assert curves.legendText() == "lr, update ratio: group 0, group 1"
    curves.ratioLog.setChecked(False)
    assert not curves.plots["update_ratio"].getAxis("left").logMode


def test_other_branches_are_overlaid_in_their_colour_and_removed(curves):
    curves.setHistory(bucketed())
    other = bucketed(n=30, bucket=1)
    curves.setOverlays({3: ((213, 94, 0), other)})
    shown_ = curves.overlays.shown()
    assert set(shown_) == {3}
    np.testing.assert_array_equal(shown_[3]["loss"], other.loss)
    item = curves.overlays._items[(3, "loss")]
    assert item.opts["pen"].color().getRgb()[:3] == (213, 94, 0)
    curves.setOverlays({})
    assert curves.overlays.shown() == {}
    assert item not in curves.plots["loss"].items


def test_an_overlaid_branch_joins_its_measured_norms_like_its_own_curve(curves):
    """The moons example's branch 0, overlaid after a fork at step 15: its norms, measured every 2-6
    steps past step 31 (NaN between), were drawn as nothing from there on."""
    n = 100
    step = np.arange(1.0, n + 1)
    grad = np.full(n, np.nan)
    grad[::5] = np.linspace(1.0, 0.1, len(grad[::5]))  # measured one step in five
    loss = 1.0 / step
    loss[40:43] = np.nan  # a loss's gap stays a gap
    curves.setHistory(bucketed(n=10, bucket=1))
    curves.setOverlays({0: ((213, 94, 0), History(step, loss, grad, grad * 0.1, (np.full(n, 0.1),)))})
    x, y = curves.overlays._items[(0, "grad_norm")].getData()
    assert len(x) == 20 and np.isfinite(y).all() and x[-1] == 96  # a line through every measured point
    assert np.isnan(curves.overlays.shown()[0]["loss"][40:43]).all()


def test_csv_export_keeps_the_bucket_ranges_and_ratios(curves, tmp_path):
    curves.setHistory(bucketed(n=3))
    path = tmp_path / "c.csv"
    curves.exportCsv(path)
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["step", "loss", "grad_norm", "update_norm", "loss_min", "loss_max", "grad_norm_min",
                      "grad_norm_max", "update_norm_min", "update_norm_max", "lr_group_0",
                      "update_ratio_group_0", "update_ratio_group_1"]


def test_a_norm_measured_every_few_buckets_has_one_band_joining_its_measured_buckets(curves):
    """Like its line, the band of a norm measured on a budget joins the measured buckets (one
    piece per unmeasured gap had made thousands of polygons, a 170-ms redraw); the loss's band
    still breaks where the loss has no value."""
    h = bucketed(n=3000)
    gaps = np.arange(3000) % 3 != 0
    g_min, g_max = h.grad_norm_min.copy(), h.grad_norm_max.copy()
    g_min[gaps] = g_max[gaps] = np.nan
    l_min, l_max = h.loss_min.copy(), h.loss_max.copy()
    l_min[1500] = l_max[1500] = np.nan
    curves.setHistory(History(h.step, h.loss, h.grad_norm, h.update_norm, h.lr, loss_min=l_min, loss_max=l_max,
                              grad_norm_min=g_min, grad_norm_max=g_max, update_ratio=h.update_ratio, bucket=8))
    band = curves.envelopes["grad_norm"].band.path()
    assert len(band.toSubpathPolygons()) == 1
    assert band.boundingRect().left() == h.step[0] and band.boundingRect().right() == h.step[2997]
    assert len(curves.envelopes["loss"].band.path().toSubpathPolygons()) == 2
