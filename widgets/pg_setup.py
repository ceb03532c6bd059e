"""One place for pyqtgraph's global options and axis tweaks shared by the widgets."""
from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtWidgets import QGraphicsItem

_done = False


def configure() -> None:
    """Set row-major images (numpy's ``[row, col]`` order). Safe to call many times."""
    global _done
    if _done:
        return
    pg.setConfigOptions(imageAxisOrder="row-major")
    _done = True


def short_number(v: float) -> str:
    """At most about five characters: 0.05, 250, 3k, 1.5M, 2e-06, 4e+09."""
    a = abs(v)
    if 1e3 <= a < 1e6:
        return f"{v / 1e3:.3g}k"
    if 1e6 <= a < 1e9:
        return f"{v / 1e6:.3g}M"
    return f"{v:.3g}"


def compact_ticks(axis: pg.AxisItem, width: int | None = None) -> None:
    """Short tick labels (``short_number``), optionally a fixed axis width.

    pyqtgraph drops tick text wider than the axis, and an axis whose width follows its
    labels can make a view with a locked aspect resize itself for ever.
    """
    def tick_strings(values, scale, spacing) -> list[str]:
        if axis.logMode:
            return axis.logTickStrings(values, scale, spacing)
        return [short_number(v * scale) for v in values]

    axis.tickStrings = tick_strings
    if width is not None:
        axis.setWidth(width)


def cache_axes(plot: pg.PlotItem, *extra: pg.AxisItem) -> None:
    """Draw each axis once into a pixmap and blit it on later frames.

    Without this, every redraw of a plot (a new heatmap, 40 times a second) replays
    every axis's picture through Python: a fifth of the GUI thread's time while running.
    An axis whose ticks change repaints itself, which refreshes its cache.
    """
    mode = QGraphicsItem.CacheMode.DeviceCoordinateCache
    for name in ("left", "bottom", "right", "top"):
        plot.getAxis(name).setCacheMode(mode)
    for axis in extra:
        axis.setCacheMode(mode)


def index_ticks(axis: pg.AxisItem, extent=lambda: math.inf, centre: float = 0.5) -> None:
    """Ticks labelled with whole indices only: index i sits at ``i + centre`` (0.5 for a
    heatmap whose cell i spans [i, i+1), 0 for bars centred on i). No "0.5" under a
    2-column tensor, and no index outside [0, extent())."""
    spacings = axis.tickSpacing

    def tick_values(a, b, size):
        lo, hi = min(a, b), max(a, b)  # an inverted axis (rows downwards) asks high to low
        first_i = max(0, math.ceil(lo - centre))
        last_i = min(math.floor(hi - centre), math.ceil(float(extent())) - 1)
        out, seen, shown = [], set(), set()
        for spacing, _offset in spacings(lo, hi, size):
            step = max(1, int(round(spacing)))
            if step in seen:
                continue
            seen.add(step)
            start = math.ceil(first_i / step) * step
            count = (last_i - start) // step + 1 if last_i >= start else 0
            values = [start + k * step + centre for k in range(min(count, 1000))]
            # a tick of a coarser level is not repeated (its label would be drawn twice)
            out.append((step, [v for v in values if v not in shown]))
            shown.update(values)
        return out

    axis.tickValues = tick_values
    axis.tickStrings = lambda values, scale, spacing: [str(int(round(v - centre))) for v in values]


def map_plot(parent, x_label: str, y_label: str, left_width: int, bottom_height: int):
    """A plot for a 2-D map (landscape, decision boundary): no buttons or menu, labelled axes
    of fixed size (a locked aspect must not chase label widths). Returns (widget, plot item)."""
    configure()
    widget = pg.PlotWidget(parent)
    pi = widget.getPlotItem()
    cache_axes(pi)
    pi.hideButtons()
    pi.setMenuEnabled(False)
    pi.setLabel("bottom", x_label)
    pi.setLabel("left", y_label)
    compact_ticks(pi.getAxis("left"), left_width)
    pi.getAxis("bottom").setHeight(bottom_height)
    return widget, pi
