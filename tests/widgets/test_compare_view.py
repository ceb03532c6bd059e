"""The comparison's widgets: one curve per pair of runs, colours that stay, lines through measured points."""
import numpy as np
import pyqtgraph as pg

from core.compare_frame import CrossSeries
from widgets.compare_plots import PairCurves, RunCurves, color_of, colour_slots


def test_each_pair_gets_one_distance_and_one_cosine_curve_and_a_removed_run_drops_its_pairs(qtbot):
    w = PairCurves()
    qtbot.addWidget(w)
    s = np.arange(1.0, 4.0)
    cross = CrossSeries(s, ((0, 1), (0, 2), (1, 2)), tuple(s * k for k in (1, 2, 3)),
                        tuple(np.full(3, c) for c in (1.0, 0.5, -0.5)))
    w.setPairs(cross, {0: 0, 1: 1, 2: 2}, {0: "SGD", 1: "Adam", 2: "RMSprop"})
    assert set(w.distance.items) == {(0, 1), (0, 2), (1, 2)}
    assert list(w.distance.data((0, 2))[1]) == [2.0, 4.0, 6.0] and list(w.cosine.data((1, 2))[1]) == [-0.5] * 3
    assert w.distance.items[(1, 2)].opts["pen"].color().getRgb()[:3] == color_of(1)
    w.setPairs(cross, {0: 0, 1: 1}, {0: "SGD", 1: "Adam"})
    assert set(w.cosine.items) == {(0, 1)}


def test_a_removed_run_frees_its_colour_and_the_others_keep_theirs():
    slots = colour_slots({}, [0, 1, 2])
    assert slots == {0: 0, 1: 1, 2: 2}
    slots = colour_slots(slots, [0, 2])
    assert slots == {0: 0, 2: 2}
    assert colour_slots(slots, [0, 2, 3]) == {0: 0, 2: 2, 3: 1}  # a new run takes the free colour


def test_norms_measured_every_few_steps_are_drawn_as_a_line_through_the_measured_points(qtbot):
    from core.snapshot import History
    w = RunCurves()
    qtbot.addWidget(w)
    step = np.arange(1.0, 7.0)
    nan = np.nan
    h = History(step, step * 0.5, np.array([1.0, nan, nan, 2.0, nan, 3.0]), np.full(6, nan), (np.full(6, 0.1),))
    w.setRuns([(0, "SGD")], [h])
    x, y = w.curve("grad_norm", 0)
    assert list(x) == [1.0, 4.0, 6.0] and list(y) == [1.0, 2.0, 3.0]
    none = w.curve("update_norm", 0)[0]  # never measured: no points at all
    assert (none is None or len(none) == 0) and len(w.curve("loss", 0)[0]) == 6


def test_validation_plots_are_laid_out_only_once_a_run_is_evaluated(qtbot):
    from core.snapshot import History
    w = RunCurves()
    qtbot.addWidget(w)
    step = np.arange(1.0, 5.0)
    nan = np.full(4, np.nan)
    objective = History(step, step, step, step, (step,), nan, nan)  # an objective: never evaluated
    w.setRuns([(0, "SGD"), (1, "Adam")], [objective, objective])
    assert w.shown() == ("loss", "grad_norm", "update_norm", "lr")
    items = w.layout_widget.ci.items
    assert w.overlays["val_loss"].plot not in items and w.overlays["loss"].plot in items
    task = History(step, step, step, step, (step,), np.array([np.nan, 0.5, np.nan, 0.4]), nan)
    w.setRuns([(0, "SGD"), (1, "Adam")], [objective, task])
    assert w.shown() == ("loss", "val_loss", "grad_norm", "update_norm", "lr")
    assert w.overlays["val_loss"].plot in w.layout_widget.ci.items
    assert list(w.curve("val_loss", 1)[1]) == [0.5, 0.4]


def test_the_comparison_map_does_not_offer_a_click_that_starts_nothing(qtbot):
    from widgets.compare_view import TrajectoryMap
    from widgets.landscape import LandscapeView
    xs = ys = np.linspace(-1.0, 1.0, 5)
    z = np.add.outer(ys ** 2, xs ** 2)
    for cls, offered in ((TrajectoryMap, False), (LandscapeView, True)):
        w = cls()
        qtbot.addWidget(w)
        assert ("click" in w.hover.text()) is offered
        w.setLandscape(xs, ys, z)
        w.hoverAt(0.1, 0.2)
        assert "f ≈" in w.hover.text() and ("click" in w.hover.text()) is offered


def test_a_table_cell_measured_before_its_step_names_the_step_it_was_measured_at():
    from widgets.compare_view import cell_text
    assert cell_text((162.86, 1), 50) == "162.86 (step 1)"  # read as step 50's grad norm otherwise
    assert cell_text((1.7026, 100), 100) == "1.7026"
    assert cell_text(None, 5) == "—" and cell_text((float("nan"), 3), 5) == "—"


def test_while_running_the_compare_plots_hold_their_ranges_until_the_curves_leave_them(qtbot):
    from core.snapshot import History

    def hist(n):
        step = np.arange(1.0, n + 1)
        return History(step, 2.0 / step, np.sqrt(step), 0.01 / step, (np.full(n, 0.1),))
    w = RunCurves()
    qtbot.addWidget(w)
    w.resize(600, 400)
    w.show()
    vb = w.overlays["loss"].plot.getViewBox()
    w.setRuns([(0, "SGD"), (1, "Adam")], [hist(100), hist(100)], live=True)
    held = [tuple(r) for r in vb.viewRange()]
    assert held[0][1] >= 100 + 0.2 * 99
    w.setRuns([(0, "SGD"), (1, "Adam")], [hist(110), hist(110)], live=True)
    assert [tuple(r) for r in vb.viewRange()] == held  # within the room: nothing moves
    w.setRuns([(0, "SGD"), (1, "Adam")], [hist(500), hist(500)], live=True)
    assert vb.viewRange()[0][1] >= 500
    w.setRuns([(0, "SGD"), (1, "Adam")], [hist(500), hist(500)], live=False)  # paused: a tight fit
    qtbot.waitUntil(lambda: 500 <= vb.viewRange()[0][1] < 500 + 0.1 * 499)
    # one step axis: every plot shows the same steps, and zooming one zooms them all
    plots = [w.overlays[k].plot.getViewBox() for k in w.shown()]
    assert len(plots) >= 4 and all(p.viewRange()[0] == vb.viewRange()[0] for p in plots)
    plots[-1].setXRange(100, 200, padding=0)
    assert all(p.viewRange()[0] == [100.0, 200.0] for p in plots)
    w.setRuns([(0, "SGD"), (1, "Adam")], [hist(600), hist(600)], live=True)
    assert vb.viewRange()[0] == [100.0, 200.0]  # the user's zoom stays theirs
    lo, hi = vb.viewRange()[1]  # and the values fit the steps shown: loss 2/step from 0.01 to 0.02
    assert lo <= 0.01 and 0.02 <= hi < 0.03
    p = PairCurves()
    qtbot.addWidget(p)
    cross = CrossSeries(np.arange(1.0, 101), ((0, 1),), (np.linspace(0, 1, 100),), (np.zeros(100),))
    p.setPairs(cross, {0: 0, 1: 1}, {0: "SGD", 1: "Adam"}, live=True)
    assert p.distance.plot.getViewBox().viewRange()[0][1] >= 100 + 0.2 * 99
    dist, cos = p.distance.plot.getViewBox(), p.cosine.plot.getViewBox()
    assert cos.viewRange()[0] == dist.viewRange()[0]
    cos.setXRange(20, 40, padding=0)  # zooming the cosine's steps zooms the distance's
    assert dist.viewRange()[0] == [20.0, 40.0]
    p.setPairs(cross, {0: 0, 1: 1}, {0: "SGD", 1: "Adam"}, live=True)
    lo, hi = dist.viewRange()[1]  # the distances at steps 20-40 (0.19-0.39), not 0-1
    assert 0.1 <= lo <= 0.2 and 0.39 <= hi <= 0.5


def test_side_by_side_heatmaps_share_one_colour_scale_unless_unticked(qtbot):
    """SGD's weights at 10x Adam's: on one scale (the default) both heatmaps' colour bars span
    the widest range, so a colour means the same value in each; unticked, each has its own."""
    from types import SimpleNamespace

    import torch

    from core.observe import make_snapshot
    from core.session import Session
    from core.spec import ManualGrad, SessionSpec, TensorSpec
    from widgets.compare_view import SideBySide

    def run(label, scale):
        s = Session(SessionSpec(optimizer="SGD", tensors=[TensorSpec("w", (8, 8), init="values", grad=ManualGrad(),
                                                                      values=(torch.arange(64.0).reshape(8, 8) - 20)
                                                                      .mul(scale).tolist())]))
        return SimpleNamespace(label=label, snapshot=make_snapshot(s, 1))
    w = SideBySide()
    qtbot.addWidget(w)
    w.show()
    w.setFrame(SimpleNamespace(runs=[run("SGD", 1.0), run("Adam", 0.1)]))
    assert [tuple(v.colorbar.levels()) for v in w.views] == [(-43.0, 43.0)] * 2
    w.same_scale.setChecked(False)
    assert np.allclose([v.colorbar.levels() for v in w.views], [(-43.0, 43.0), (-4.3, 4.3)])


def test_the_pairs_legend_lists_every_pair_below_the_plots_and_wraps_in_a_narrow_window(qtbot):
    """Six runs with long labels make 15 pairs: listed in the runs' order below both plots (inside
    the distance plot the legend covered its curves), wrapped so the window need not widen."""
    labels = {i: f"Optimizer{i} lr=0.00{i} momentum=0.9 · CosineAnnealingLR" for i in range(6)}
    pairs = tuple((a, b) for a in range(6) for b in range(a + 1, 6))
    s = np.arange(1.0, 4.0)
    cross = CrossSeries(s, pairs, tuple(s for _ in pairs), tuple(np.ones(3) for _ in pairs))
    w = PairCurves()
    qtbot.addWidget(w)
    w.setPairs(cross, {i: i for i in range(6)}, labels)
    assert w.listed() == [f"{labels[a]} vs {labels[b]}" for a, b in pairs]
    assert w.distance.plot.legend is None and w.cosine.plot.legend is None
    assert w.minimumSizeHint().width() < 500
    w.setPairs(cross, {0: 0, 2: 1}, labels)  # runs removed: their pairs leave the legend
    assert w.listed() == [f"{labels[0]} vs {labels[2]}"]


def test_the_distance_and_cosine_plots_put_a_step_at_the_same_x(qtbot):
    """Stacked, their steps line up on screen, whatever their tick labels ("12,345.5" beside the
    distance, "-0.5" beside the cosine: their axes had differed in width, the steps by 14 px)."""
    s = np.arange(0.0, 5000.0, 10.0)
    cross = CrossSeries(s, ((0, 1),), (12345.5 + s,), (np.sin(s),))
    w = PairCurves()
    qtbot.addWidget(w)
    w.resize(700, 600)
    w.show()
    w.setPairs(cross, {0: 0, 1: 1}, {0: "Adam", 1: "SGD"})

    def x_of(plot, step):
        vb = plot.getViewBox()
        return vb.mapViewToScene(pg.QtCore.QPointF(step, 0)).x()
    # laid out and drawn: the distance's labels reach 17k
    qtbot.waitUntil(lambda: w.distance.plot.getViewBox().viewRange()[1][1] > 17000 and w.distance.plot.isVisible())
    for _ in range(3):  # the axes' paints (a wider label widens both, on the next turn of the loop)
        w.grab()
        qtbot.wait(20)
    for k in (0, 2500, 4990):
        assert abs(x_of(w.distance.plot, k) - x_of(w.cosine.plot, k)) < 0.5


def test_before_the_first_step_the_plots_say_why_they_are_empty(qtbot):
    from core.snapshot import History
    from widgets.compare_plots import NO_STEP
    curves, pairs = RunCurves(), PairCurves()
    for w in (curves, pairs):
        qtbot.addWidget(w)
        w.show()
    empty = History.empty()
    curves.setRuns([(0, "Adam"), (1, "SGD")], [empty, empty])
    pairs.setPairs(CrossSeries(np.zeros(0), ((0, 1),), (np.zeros(0),), (np.zeros(0),)), {0: 0, 1: 1},
                   {0: "Adam", 1: "SGD"})
    assert curves.empty.isVisible() and curves.empty.text() == NO_STEP
    assert pairs.empty.isVisible() and pairs.empty.text() == NO_STEP
    pairs.setPairs(CrossSeries(np.zeros(0)), {0: 0}, {0: "Adam"})  # one run: no pair to draw
    assert pairs.empty.isVisible() and "add another" in pairs.empty.text()
    s = np.arange(1.0, 11.0)
    h = History(s, 1 / s, s, s, (np.full(10, 0.1),))
    curves.setRuns([(0, "Adam"), (1, "SGD")], [h, h])
    pairs.setPairs(CrossSeries(s, ((0, 1),), (s,), (np.ones(10),)), {0: 0, 1: 1}, {0: "Adam", 1: "SGD"})
    assert not curves.empty.isVisible() and not pairs.empty.isVisible()
