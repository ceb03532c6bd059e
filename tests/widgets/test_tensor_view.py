"""TensorView and TensorPanel: what a user sees and hovers."""
from __future__ import annotations

import numpy as np
import pytest
import shiboken6
from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtWidgets import QApplication

from core.snapshot import ArrayView, TensorSnapshot
from widgets.tensor_panel import TensorPanel
from widgets.tensor_view import TensorView

from .keys import shown, wheel


def av(full, stride=None) -> ArrayView:
    """ArrayView of ``full``; with ``stride`` the values are a strided preview."""
    full = np.asarray(full)
    exact = stride is None
    stride = stride or (1,) * full.ndim
    values = full if exact else full[tuple(slice(None, None, s) for s in stride)].copy()
    has = full.size > 0
    return ArrayView(
        shape=tuple(full.shape), dtype=str(full.dtype), values=values, exact=exact,
        stride=tuple(stride), min=float(np.min(full)) if has else 0.0,
        max=float(np.max(full)) if has else 0.0, mean=float(np.mean(full)) if has else 0.0,
        norm=float(np.linalg.norm(full.ravel())))


@pytest.fixture
def view(qtbot):
    tv = TensorView()
    shown(qtbot, tv, 420, 380)
    return tv


def move_mouse_to(tv: TensorView, x: float, y: float, qtbot) -> None:
    """Feed the widget's mouse handler the scene position of data point (x, y)."""
    vb = tv.pages.currentWidget().getPlotItem().getViewBox()
    qtbot.waitUntil(lambda: vb.viewRect().contains(QPointF(x, y)))  # auto range is lazy
    tv._on_mouse_moved(vb.mapViewToScene(QPointF(x, y)))


def test_hover_shows_index_and_exact_value(view, qtbot):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    view.setView(av(data), "weight")
    move_mouse_to(view, 2.5, 1.5, qtbot)  # column 2, row 1
    assert view.hover.text() == "[1, 2] = 6"
    assert view.valueAt(1, 2) == ((1, 2), 6.0)
    move_mouse_to(view, 0.5, 2.5, qtbot)
    assert view.hover.text() == "[2, 0] = 8"


def test_hover_outside_the_matrix_shows_hint(view):
    view.setView(av(np.ones((3, 4), np.float32)), "weight")
    view.hoverAt(10.0, 1.0)
    assert "hover" in view.hover.text()
    with pytest.raises(IndexError):
        view.valueAt(3, 0)


def test_rows_grow_downwards_like_a_matrix(view):
    view.setView(av(np.zeros((3, 4), np.float32)), "weight")
    vb = view.pages.currentWidget().getPlotItem().getViewBox()
    top = vb.mapViewToScene(QPointF(0.5, 0.5)).y()
    bottom = vb.mapViewToScene(QPointF(0.5, 2.5)).y()
    assert top < bottom


def test_signed_data_gets_symmetric_levels_and_diverging_map(view):
    view.setView(av(np.array([[-1.0, 0.5], [3.0, 2.0]], np.float32)), "grad")
    assert view.colorbar.levels() == (-3.0, 3.0)
    assert view.colorbar.colorMap().name.startswith("CET-D")
    # the image itself is uint8 through a colour table, levels passed explicitly
    assert view.image.image.dtype == np.uint8
    assert tuple(view.image.levels) == (0, 255)
    assert view.image.image[0, 0] == 85  # -1 on (-3, 3) -> a third of 0..254


def test_unsigned_data_gets_sequential_map_and_data_range(view):
    view.setView(av(np.array([[0.0, 1.0], [4.0, 2.0]], np.float32)), "exp_avg_sq")
    assert view.colorbar.levels() == (0.0, 4.0)
    assert view.colorbar.colorMap().name == "viridis"


def test_constant_data_does_not_crash(view, qtbot):
    view.setView(av(np.full((4, 4), 0.5, np.float32)), "weight")
    assert view.colorbar.levels() == (-0.5, 1.5)
    move_mouse_to(view, 1.5, 1.5, qtbot)
    assert view.hover.text() == "[1, 1] = 0.5"


def test_nan_gets_its_own_colour(view):
    view.setView(av(np.array([[np.nan, 1.0], [2.0, 3.0]], np.float32)), "weight")
    assert view.image.image[0, 0] == 255 and view.image.image[0, 1] < 255
    view.hoverAt(0.5, 0.5)
    assert view.hover.text() == "[0, 0] = nan"


def test_none_shows_placeholder(view):
    view.setView(None, "grad")
    assert view.pages.currentWidget() is view.placeholder
    assert view.placeholder.text() == "no gradient"
    assert view.stats.isHidden()
    view.setView(None, "exp_avg")
    assert view.placeholder.text() == "None"


def test_1d_draws_bars_and_hovers_by_position(view, qtbot):
    values = np.array([1.0, -2.0, 3.0], np.float32)
    view.setView(av(values), "bias")
    assert view.pages.currentWidget() is view._bars_page
    assert view.bars.isVisible()
    np.testing.assert_array_equal(view.bars.opts["height"], values)
    move_mouse_to(view, 1.1, 0.0, qtbot)
    assert view.hover.text() == "[1] = -2"


def test_long_1d_draws_a_step_curve_instead_of_many_bars(view):
    view.setView(av(np.linspace(-1, 1, 5000).astype(np.float32)), "bias")
    assert view.step_curve.isVisible() and not view.bars.isVisible()
    view.hoverAt(4999.0, 0.0)
    assert view.hover.text() == "[4999] = 1"


def test_scalar_shows_the_number(view):
    view.setView(av(np.array(12.0, np.float32)), "step")
    assert view.pages.currentWidget() is view.scalar
    assert view.scalar.text() == "12"
    view.setView(av(np.array(0.125, np.float64)), "lr")
    assert view.scalar.text() == "0.125"


def test_stats_footer_shows_shape_dtype_and_statistics(view):
    view.setView(av(np.array([[3.0, -4.0]], np.float32)), "weight")
    text = view.stats.text().replace("\u00a0", " ")
    for part in ("1×2 float32", "min -4", "max 3", "mean -0.5", "norm 5"):
        assert part in text


def test_preview_hover_maps_through_stride_and_requests_exact(view, qtbot):
    full = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)
    view.setView(av(full, stride=(4, 3)), "weight")
    assert "preview" in view.stats.text()
    # axes read original indices: data (x=7.5, y=9.5) is preview cell (2, 2)
    with qtbot.waitSignal(view.exactRequested) as sig:
        move_mouse_to(view, 7.5, 9.5, qtbot)
    assert sig.args == [(8, 6)]
    assert view.hover.text() == f"[8, 6] = {full[8, 6]:g} (preview)"
    view.showExact((3, 3), 1.0)  # a stale answer for somewhere else is ignored
    assert "(preview)" in view.hover.text()
    view.showExact((8, 6), 246.125)
    assert view.hover.text() == "[8, 6] = 246.125 (exact)"


def test_preview_requests_exact_once_per_index(view, qtbot):
    full = np.zeros((40, 30), np.float32)
    view.setView(av(full, stride=(4, 3)), "weight")
    with qtbot.waitSignal(view.exactRequested):
        view.hoverAt(7.5, 9.5)
    with qtbot.assertNotEmitted(view.exactRequested):
        view.hoverAt(7.9, 9.9)  # same cell


def test_the_read_out_survives_a_redraw_and_follows_the_run(view, qtbot):
    full = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)
    view.setView(av(full, stride=(4, 3)), "weight")
    with qtbot.waitSignal(view.exactRequested):
        move_mouse_to(view, 7.5, 9.5, qtbot)
    view.showExact((8, 6), 246.0)
    # the next frame (a run goes on): the read-out stays, and the value is fetched again
    with qtbot.waitSignal(view.exactRequested) as sig:
        view.setView(av(full + 1, stride=(4, 3)), "weight")
    assert sig.args == [(8, 6)]
    assert view.hover.text() == "[8, 6] = 246 (exact)"  # the last exact value until the new one comes
    with qtbot.assertNotEmitted(view.exactRequested):  # one fetch in flight at a time
        view.setView(av(full + 2, stride=(4, 3)), "weight")
    view.showExact((8, 6), 247.0)  # answers the fetch of the frame before: fetch once more
    assert view.hover.text() == "[8, 6] = 247 (exact)"
    assert view._asked == ((8, 6), view._gen)


def test_exact_view_never_requests(view, qtbot):
    view.setView(av(np.ones((3, 3), np.float32)), "weight")
    with qtbot.assertNotEmitted(view.exactRequested):
        view.hoverAt(1.5, 1.5)


def test_4d_tensor_shows_rows_by_flattened_rest(view):
    full = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    view.setView(av(full), "conv.weight")
    assert view.image.image.shape == (2, 12)
    assert view.valueAt(1, 5) == ((1, 1, 0, 1), float(full[1, 1, 0, 1]))


def test_4d_preview_maps_every_axis_through_its_stride(view):
    full = np.arange(8 * 4 * 3 * 3, dtype=np.float32).reshape(8, 4, 3, 3)
    view.setView(av(full, stride=(2, 2, 1, 1)), "conv.weight")
    index, value = view.valueAt(1, 9 + 4)  # preview (1, 1, 1, 1)
    assert index == (2, 2, 1, 1) and value == float(full[2, 2, 1, 1])


def test_same_shape_update_reuses_items(view):
    view.setView(av(np.zeros((5, 6), np.float32)), "weight")
    image, bar = view.image, view.colorbar
    view.setView(av(np.ones((5, 6), np.float32) * np.arange(6)), "weight")
    assert view.image is image and view.colorbar is bar
    assert view.image.image[0, -1] == 254
    view.setView(av(np.array([1.0, 2.0], np.float32)), "bias")
    bars = view.bars
    view.setView(av(np.array([3.0, 4.0], np.float32)), "bias")
    assert view.bars is bars and view.image is image


class _LayoutCounter(QObject):
    def __init__(self):
        super().__init__()
        self.count = 0

    def eventFilter(self, obj, event):  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.LayoutRequest:
            self.count += 1
        return False


@pytest.mark.parametrize("size", [(220, 210), (300, 250), (160, 140)])
def test_heatmap_layout_settles_at_small_sizes(view, qtbot, size):
    """A locked aspect with label-sized axes used to relayout for ever (100% CPU)."""
    view.setView(av(np.arange(6, dtype=np.float32).reshape(2, 3) - 2), "weight")
    view.resize(*size)
    app = QApplication.instance()
    for _ in range(10):
        app.processEvents()
    counter = _LayoutCounter()
    app.installEventFilter(counter)
    try:
        for _ in range(10):
            app.processEvents()
    finally:
        app.removeEventFilter(counter)
    assert counter.count == 0


def test_widget_renders_something(view, tmp_path):
    rng = np.random.default_rng(0)
    view.setView(av(rng.normal(size=(16, 24)).astype(np.float32)), "weight")
    img = view.grab().toImage()
    assert img.save(str(tmp_path / "tensor_view.png"))
    colours = {img.pixel(x, y) for x in range(0, img.width(), 7) for y in range(0, img.height(), 7)}
    assert len(colours) > 20


# ----------------------------------------------------------------- TensorPanel
def snapshot(state: dict, grad=True) -> TensorSnapshot:
    w = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    return TensorSnapshot(name="fc.weight", index=0, group=0, value=av(w),
                          grad=av(w * 0.1) if grad else None, state=state)


@pytest.fixture
def panel(qtbot):
    p = TensorPanel()
    shown(qtbot, p, 700, 600)
    return p


def test_panel_shows_value_grad_and_every_state_entry(panel):
    m = av(np.ones((2, 3), np.float32))
    panel.setTensor(snapshot({"exp_avg": m, "exp_avg_sq": m, "step": av(np.array(3.0, np.float32))}))
    assert list(panel.views()) == ["value", "grad", "exp_avg", "exp_avg_sq"]
    assert panel.views()["value"].title.text() == "fc.weight"
    assert panel.stateTexts() == {"step": "3"}


def test_panel_adds_reuses_and_removes_state_views(panel):
    m = av(np.ones((2, 3), np.float32))
    panel.setTensor(snapshot({"momentum_buffer": m}))
    first = panel.views()
    panel.setTensor(snapshot({"momentum_buffer": m, "exp_avg": m}))
    second = panel.views()
    assert second["momentum_buffer"] is first["momentum_buffer"]
    assert second["value"] is first["value"]
    assert "exp_avg" in second
    removed = second["momentum_buffer"]
    panel.setTensor(snapshot({"exp_avg": m}))
    assert list(panel.views()) == ["value", "grad", "exp_avg"]
    assert panel.views()["exp_avg"] is second["exp_avg"]
    # a removed view never becomes a stray top-level window (it is hidden, then deleted).
    # Only this view is checked: walking every top-level widget met pyqtgraph's parentless
    # menus being collected meanwhile, and crashed the interpreter.
    assert not shiboken6.isValid(removed) or (not removed.isVisible() and not removed.isWindow())


def test_panel_shows_numbers_and_text_state_as_labels(panel):
    panel.setTensor(snapshot({"n_iter": 5, "func_evals": 7, "t": 0.25, "old_dirs": "[3 tensors]"}))
    assert panel.stateTexts() == {"n_iter": "5", "func_evals": "7", "t": "0.25",
                                  "old_dirs": "[3 tensors]"}
    assert "n_iter" in panel.scalars.text() and "<b>5</b>" in panel.scalars.text()
    assert list(panel.views()) == ["value", "grad"]


def test_panel_shows_no_gradient_placeholder(panel):
    panel.setTensor(snapshot({}, grad=False))
    grad = panel.views()["grad"]
    assert grad.pages.currentWidget() is grad.placeholder
    assert grad.placeholder.text() == "no gradient"


def test_panel_forwards_exact_requests_and_answers(panel, qtbot):
    full = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)
    panel.setTensor(snapshot({"exp_avg": av(full, stride=(4, 3))}))
    view = panel.views()["exp_avg"]
    with qtbot.waitSignal(panel.exactRequested) as sig:
        view.hoverAt(3.5, 4.5)
    assert sig.args == ["fc.weight", "exp_avg", (4, 3)]
    panel.showExact("fc.weight", "exp_avg", (4, 3), 123.5)
    assert view.hover.text() == "[4, 3] = 123.5 (exact)"


def test_panel_none_shows_placeholder_and_drops_views(panel):
    panel.setTensor(snapshot({"exp_avg": av(np.ones((2, 3), np.float32))}))
    panel.setTensor(None)
    assert panel.views() == {}
    assert panel.placeholder.isVisible()


def test_panel_wraps_into_columns(panel):
    m = av(np.ones((2, 3), np.float32))
    panel.setTensor(snapshot({"exp_avg": m, "exp_avg_sq": m}))
    grid = panel._grid
    cols = {grid.getItemPosition(grid.indexOf(v))[1] for v in panel.views().values()}
    assert cols == {0, 1}  # 700 px: two columns


def _ticks(view, side):
    page = view if hasattr(view, "getPlotItem") else view._image_page
    ax = page.getPlotItem().getAxis(side)
    levels = ax.tickValues(ax.range[0], ax.range[1], 300)
    values = sorted({v for _, vs in levels for v in vs})
    return values, ax.tickStrings(values, 1.0, 1.0)


def test_axes_label_whole_indices_at_cell_centres_and_only_inside_the_tensor(view, qtbot):
    view.resize(420, 200)  # wide: the square cells leave room left and right of a 2x2
    view.setView(av(np.arange(4.0).reshape(2, 2)), "w")
    qtbot.wait(10)
    assert _ticks(view, "bottom") == ([0.5, 1.5], ["0", "1"])
    assert _ticks(view, "left") == ([0.5, 1.5], ["0", "1"])  # rows: an inverted axis


def test_a_long_thin_tensor_fills_the_panel_instead_of_a_strip(view, qtbot):
    view.resize(420, 200)
    view.setView(av(np.arange(32.0).reshape(16, 2)), "w")
    qtbot.wait(10)
    vb = view._image_page.getPlotItem().getViewBox()
    (x0, x1), _ = vb.viewRange()
    assert not vb.state["aspectLocked"] and x1 - x0 < 2.5  # two columns span the width
    values, labels = _ticks(view, "left")
    assert labels[0] == "0" and int(labels[-1]) <= 15


def test_bars_are_labelled_with_whole_indices_under_each_bar(view, qtbot):
    view.setView(av(np.array([0.5, -1.0])), "w")
    qtbot.wait(10)
    assert _ticks(view._bars_page, "bottom") == ([0.0, 1.0], ["0", "1"])


def test_no_index_is_labelled_twice_on_a_big_tensor(view, qtbot):
    view.resize(420, 300)
    view.setView(av(np.zeros((64, 64))), "w")
    qtbot.wait(10)
    ax = view._image_page.getPlotItem().getAxis("bottom")
    levels = ax.tickValues(ax.range[0], ax.range[1], 300)
    values = [v for _, vs in levels for v in vs]
    assert len(values) == len(set(values)) and len(levels) >= 1


# ----------------------------------------------------------------- clicking an element
def click_on(tv: TensorView, x: float, y: float, qtbot) -> None:
    """A real left click (press and release on the plot's viewport) at data point (x, y)."""
    pw = tv.pages.currentWidget()
    vb = pw.getPlotItem().getViewBox()
    qtbot.waitUntil(lambda: vb.viewRect().contains(QPointF(x, y)))  # auto range is lazy
    at = pw.mapFromScene(vb.mapViewToScene(QPointF(x, y)))
    qtbot.mouseClick(pw.viewport(), Qt.MouseButton.LeftButton, pos=at)


def test_a_click_on_a_cell_names_its_element(view, qtbot):
    view.setView(av(np.arange(12, dtype=np.float32).reshape(3, 4)), "weight")
    with qtbot.waitSignal(view.elementClicked) as sig:
        click_on(view, 2.5, 1.5, qtbot)  # column 2, row 1
    assert sig.args == [(1, 2)]


def test_a_click_on_a_bar_names_its_element_and_one_off_the_data_nothing(view, qtbot):
    view.setView(av(np.arange(5, dtype=np.float32)), "bias")
    with qtbot.waitSignal(view.elementClicked) as sig:
        click_on(view, 3.1, 1.0, qtbot)
    assert sig.args == [(3,)]
    with qtbot.assertNotEmitted(view.elementClicked):
        assert view.clickAt(40.0, 1.0) is None


def test_panel_asks_to_explain_an_element_clicked_in_a_preview_or_the_gradient(panel, qtbot):
    full = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)
    ts = TensorSnapshot(name="fc.weight", index=0, group=0, value=av(full, stride=(4, 3)), grad=av(full, (4, 3)),
                        state={"exp_avg_sq_row": av(np.ones(40, np.float32))})
    panel.setTensor(ts)
    with qtbot.waitSignal(panel.explainRequested) as sig:
        panel.views()["grad"].clickAt(3.5, 16.5)  # preview cell (4, 1): element (16, 3)
    assert sig.args == ["fc.weight", (16, 3)]
    with qtbot.assertNotEmitted(panel.explainRequested):  # a row factor's element is not the tensor's
        panel.views()["exp_avg_sq_row"].clickAt(2.0, 1.0)
def test_cell_values_are_formatted_by_magnitude():
    from widgets.cell_labels import cell_text
    assert [cell_text(v) for v in (2.656e-05, 0.005154, -1.0901, 0.0, 1234.5, 123456.0, float("nan"))] == \
        ["2.656e-05", "0.0052", "-1.0901", "0.0000", "1234.5000", "1.235e+05", "nan"]


def test_cell_labels_that_do_not_fit_are_hidden_not_overprinted(view, qtbot):
    data = np.array([[2.656e-05, -0.25], [1.5, 3.0]], dtype=np.float32)
    view.resize(420, 380)
    view.setView(av(data), "w")
    qtbot.waitUntil(lambda: all(shown for _, shown in view.cellLabels()))
    assert [t for t, _ in view.cellLabels()] == ["2.656e-05", "-0.2500", "1.5000", "3.0000"]
    # sparse_adam's 6x4 in a narrow panel: no label fits its cell, none is drawn
    six_four = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    view.resize(160, 200)
    view.setView(av(six_four), "embedding")
    qtbot.waitUntil(lambda: not any(shown for _, shown in view.cellLabels()))
    view.resize(700, 700)  # room enough: they come back, each inside its cell
    qtbot.waitUntil(lambda: all(shown for _, shown in view.cellLabels()))
    items = view.cells.items()
    rects = [t.mapRectToScene(t.boundingRect()) for t in items]
    for i, a in enumerate(rects):
        assert not any(a.intersects(b) for b in rects[i + 1:])


def test_ticks_of_a_long_axis_are_thinned_so_labels_never_run_together(view, qtbot):
    view.resize(300, 200)
    view.setView(av(np.zeros(4096, np.float32)[::16].repeat(16), stride=(16,)), "bias")
    qtbot.wait(10)
    ax = view._bars_page.getPlotItem().getAxis("bottom")
    size = ax.geometry().width()
    levels = ax.tickValues(ax.range[0], ax.range[1], size)
    values = sorted(v for _, vs in levels for v in vs)
    labels = ax.tickStrings(values, 1.0, 1.0)
    from PySide6.QtGui import QFontMetricsF
    fm = QFontMetricsF(ax.font())
    px = size / (ax.range[1] - ax.range[0])
    for (a, la), (b, lb) in zip(zip(values, labels), zip(values[1:], labels[1:])):
        room = (b - a) * px
        assert room >= (fm.horizontalAdvance(la) + fm.horizontalAdvance(lb)) / 2 + 4, (la, lb, room)
    assert len(values) >= 2


def four_views(n=6):
    m = av(np.random.default_rng(1).normal(size=(n, n)).astype(np.float32))
    return TensorSnapshot(name="w", index=0, group=0, value=m, grad=m, state={"exp_avg": m, "exp_avg_sq": m})


def test_the_wheel_over_a_heatmap_scrolls_the_column_and_ctrl_wheel_zooms(qtbot):
    panel = shown(qtbot, TensorPanel(), 420, 500)  # one column of four views: it scrolls
    panel.setTensor(four_views())
    view = panel.views()["value"]
    plot = view.pages.currentWidget()
    vb = plot.getPlotItem().getViewBox()
    bar = panel.scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    before = vb.viewRange()
    centre = plot.viewport().rect().center()
    wheel(qtbot, plot.viewport(), centre, -120)
    qtbot.waitUntil(lambda: bar.value() > 0)  # the column scrolled
    assert vb.viewRange() == before and not view.isZoomed()  # the heatmap did not zoom

    bar.setValue(0)
    qtbot.waitUntil(lambda: plot.viewport().rect().contains(centre))
    wheel(qtbot, plot.viewport(), centre, 120, ctrl=True)
    qtbot.waitUntil(view.isZoomed)
    assert vb.viewRange()[0][1] - vb.viewRange()[0][0] < before[0][1] - before[0][0]
    assert view.resetButton.isVisible()
    qtbot.mouseClick(view.resetButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not view.isZoomed())
    (x0, x1), (y0, y1) = vb.viewRange()
    assert x0 <= 0 and x1 >= 6 and y0 <= 0 and y1 >= 6  # the whole 6x6 tensor again
    assert x1 - x0 < 1.2 * (before[0][1] - before[0][0])


def test_same_shape_entries_are_drawn_at_the_same_size(qtbot):
    for width, height in ((700, 600), (420, 500), (1100, 400)):
        panel = shown(qtbot, TensorPanel(), width, height)
        snap = four_views()
        panel.setTensor(TensorSnapshot(name="w", index=0, group=0, value=snap.value, grad=None,
                                       state=snap.state))  # "no gradient" is a label, not a plot
        qtbot.waitUntil(lambda: len(set(panel.viewSizes().values())) == 1)
        plots = [v.pages.currentWidget() for k, v in panel.views().items() if k != "grad"]
        qtbot.waitUntil(lambda: len({(p.width(), p.height()) for p in plots}) == 1)
        w, h = next(iter(panel.viewSizes().values()))
        assert w >= 200 and h >= 200, (width, height, w, h)


def test_a_long_title_is_elided_instead_of_widening_the_view(qtbot):
    title = "SGD lr=0.05 momentum=0.9 weight_decay=0.0001 nesterov=True · StepLR step_size=10 · fc1.weight value"
    tv = shown(qtbot, TensorView(), 220, 200)
    tv.setView(av(np.arange(6.0).reshape(2, 3)), title)
    assert tv.minimumSizeHint().width() < 200  # a QLabel asked for its whole text's width
    assert tv.title.text() == title and tv.title.isElided()
    qtbot.waitUntil(lambda: tv.title.toolTip() == title)  # the whole title where it is cut
