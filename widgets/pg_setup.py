"""One place for pyqtgraph's global options and axis tweaks shared by the widgets."""
from __future__ import annotations

import pyqtgraph as pg

_done = False


def configure() -> None:
    """Set row-major images (numpy's ``[row, col]`` order). Safe to call many times."""
    global _done
    if _done:
        return
    pg.setConfigOptions(imageAxisOrder="row-major")
    _done = True


def compact_ticks(axis: pg.AxisItem, width: int | None = None) -> None:
    """Short "%.3g" tick labels, optionally a fixed axis width.

    pyqtgraph drops tick text wider than the axis, and an axis whose width follows its
    labels can make a view with a locked aspect resize itself for ever.
    """
    def tick_strings(values, scale, spacing) -> list[str]:
        if axis.logMode:
            return axis.logTickStrings(values, scale, spacing)
        return [f"{v * scale:.3g}" for v in values]

    axis.tickStrings = tick_strings
    if width is not None:
        axis.setWidth(width)


def map_plot(parent, x_label: str, y_label: str, left_width: int, bottom_height: int):
    """A plot for a 2-D map (landscape, decision boundary): no buttons or menu, labelled axes
    of fixed size (a locked aspect must not chase label widths). Returns (widget, plot item)."""
    configure()
    widget = pg.PlotWidget(parent)
    pi = widget.getPlotItem()
    pi.hideButtons()
    pi.setMenuEnabled(False)
    pi.setLabel("bottom", x_label)
    pi.setLabel("left", y_label)
    compact_ticks(pi.getAxis("left"), left_width)
    pi.getAxis("bottom").setHeight(bottom_height)
    return widget, pi
