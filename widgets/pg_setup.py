"""One place for pyqtgraph's global options and axis tweaks shared by the widgets."""
from __future__ import annotations

import math
import weakref

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import QGraphicsItem

LABEL_GAP = 10  # pixels between two tick labels side by side, at least
LABEL_GAP_V = 3  # between two labels one above the other

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


def short_numbers(values) -> list[str]:
    """``short_number`` of each, with more significant digits where that would label two
    neighbouring ticks alike (a constant lr of 0.05 had ticks 0.0495, 0.05, 0.0505, all "0.05")."""
    out = [short_number(v) for v in values]
    for digits in range(4, 10):
        if len(set(out)) == len(out):
            break
        out = [f"{v:.{digits}g}" for v in values]
    return out


def _nice_factors():
    k = 1
    while True:
        for m in (1, 2, 5):
            yield k * m
        k *= 10


def label_extent(axis: pg.AxisItem, strings: list[str]) -> float:
    """Pixels a label takes along the axis: its width on a horizontal axis, its height on a
    vertical one."""
    font = axis.style.get("tickFont") or axis.font()
    fm = QFontMetricsF(font)
    if axis.orientation in ("left", "right"):
        return 0.8 * fm.height()  # pyqtgraph's own estimate of a label's height
    return max((fm.horizontalAdvance(s) for s in strings), default=0.0)


def thin_levels(axis: pg.AxisItem, levels, lo: float, hi: float, size: float, strings_of, origin: float = 0.0):
    """Keep every k-th tick of the first level (k = 1, 2, 5, 10, ...) so its labels do not
    run together, and only the finer levels whose labels fit too.

    pyqtgraph always draws the first level's labels, however crowded ("0 1000200030004000"
    on a 4096-long axis); its finer levels are dropped when crowded, this one is not.
    ``strings_of(values, spacing)`` gives the labels; ``origin`` is where index 0 sits.
    """
    if not levels or size <= 0 or hi <= lo:
        return levels
    spacing, values = levels[0]
    values = sorted(values)
    if len(values) < 2:
        return levels
    gap = LABEL_GAP_V if axis.orientation in ("left", "right") else LABEL_GAP
    need = label_extent(axis, strings_of(values, spacing)) + gap
    px = size / (hi - lo)
    if not spacing:  # uneven ticks (a log axis's 2..9): keep those far enough from the last kept
        kept = [values[0]]
        for v in values[1:]:
            if (v - kept[-1]) * px >= need:
                kept.append(v)
        return [(spacing, kept)] if len(kept) < len(values) else levels
    room = spacing * px  # pixels between two neighbouring ticks
    if room < need:
        k = next(f for f in _nice_factors() if f * room >= need or f > 10 ** 12)
        kept = [v for v in values if round((v - origin) / spacing) % k == 0]
        return [(spacing * k, kept or values[len(values) // 2:len(values) // 2 + 1])]  # never no label
    out = [levels[0]]
    for sp, vals in levels[1:]:  # a finer level only where its labels fit between the coarser ones
        vals = list(vals)
        if not sp or not vals or sp * px < label_extent(axis, strings_of(vals, sp)) + gap:
            break
        out.append((sp, vals))
    return out


def linear_in_log(lo: float, hi: float) -> list:
    """Ticks at round values (1, 2 or 5 times a power of ten apart) for a log axis showing
    10**lo .. 10**hi, as log10 positions: a curve within one decade (an update ratio between
    0.0012 and 0.0014) would otherwise have no tick label on its axis."""
    v0, v1 = 10.0 ** lo, 10.0 ** hi
    if not (math.isfinite(v0) and math.isfinite(v1)) or v1 <= v0:
        return []
    raw = (v1 - v0) / 4
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(v0 / step) * step
    values = [first + i * step for i in range(int((v1 - first) / step) + 1)]
    return [(0.0, [math.log10(v) for v in values if v > 0])]  # uneven in log space: thinned by pixels


def needed_width(axis: pg.AxisItem, strings: list[str]) -> float:
    """Pixels a vertical axis needs for these tick labels beside its (rotated) title."""
    fm = QFontMetricsF(axis.style.get("tickFont") or axis.font())
    title = axis.label.boundingRect().height() if axis.label.isVisible() and axis.labelText else 0.0
    text = max((fm.horizontalAdvance(s) for s in strings), default=0.0)
    return math.ceil(text + title + axis.style["tickTextOffset"][0] + max(0, axis.style["tickLength"]))


def compact_ticks(axis: pg.AxisItem, width: int | None = None, grow=None) -> None:
    """Short tick labels (``short_number``, decades on a log axis) that never run together,
    optionally a fixed axis width.

    pyqtgraph drops tick text wider than the axis, and an axis whose width follows its
    labels can make a view with a locked aspect resize itself for ever. ``grow(pixels)``, if
    given, is called when the labels about to be drawn need a wider axis than it has (the
    caller widens it, and its neighbours, only ever upwards: no resize loop).
    """
    values_of = axis.tickValues

    def tick_strings(values, scale, spacing) -> list[str]:
        if axis.logMode:
            out = [short_number(10.0 ** v) for v in values]
        else:
            out = short_numbers([v * scale for v in values])
        if grow is not None and axis.orientation in ("left", "right") and out:
            need = needed_width(axis, out)
            if need > axis.width():
                grow(need)
        return out

    def tick_values(a, b, size):
        lo, hi = min(a, b), max(a, b)
        levels = values_of(a, b, size)
        if axis.logMode:  # decades only (pyqtgraph labels 2..9 between them, which collide)
            levels = [(lv[0] or 1.0, [v for v in lv[1] if abs(v - round(v)) < 1e-9]) for lv in levels[:1]] \
                if levels and len(levels[0][1]) >= 2 else levels[1:2] or levels
            if sum(lo <= v <= hi for _, vals in levels for v in vals) < 2:
                levels = linear_in_log(lo, hi)  # a range within one decade: no label at all else
        return thin_levels(axis, levels, lo, hi, size, lambda v, sp: tick_strings(v, 1.0, sp))

    axis.tickStrings = tick_strings
    axis.tickValues = tick_values
    if width is not None:
        axis.setWidth(width)


class SameWidth:
    """Left axes of plots stacked one above another, kept at one width so that their steps line
    up on screen (a spike at step k sits at the same x in each): each axis starts ``width``
    pixels wide with compact tick labels (``compact_ticks``); when one's labels need more,
    every axis grows to that, only ever upwards (up to ``most``), so nothing can oscillate."""

    def __init__(self, axes, width: int, most: int = 90):
        self.axes = list(axes)
        self.width, self.most = width, most
        for axis in self.axes:
            compact_ticks(axis, width, grow=self._grow)

    def _grow(self, pixels: float) -> None:  # called while an axis paints its labels
        width = min(int(math.ceil(pixels)), self.most)
        if width > self.width:
            self.width = width
            QTimer.singleShot(0, self._apply)  # not from inside the axis's own paint

    def _apply(self) -> None:
        for axis in self.axes:
            axis.setWidth(self.width)


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
        return thin_levels(axis, out, lo, hi, size, lambda v, sp: strings(v, 1.0, sp), origin=centre)

    def strings(values, scale, spacing):
        return [str(int(round(v - centre))) for v in values]

    axis.tickValues = tick_values
    axis.tickStrings = strings


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


def relax_title(plot) -> None:
    """``plot``'s title asks for no width: pyqtgraph's title label makes its whole text's width
    the plot's minimum (on every text and resize), and a long title ("no loss: the gradients are
    set by hand") made the Curves dock's plots wider than the dock, their right part cut off.
    A title wider than its plot now overflows its own row instead."""
    label = plot.titleLabel
    ref, fit = weakref.ref(label), type(label).updateMin  # no cycle through the label (gui_gc.py)

    def update_min() -> None:
        item = ref()
        if item is not None:
            fit(item)
            item.setMinimumWidth(0)
    label.updateMin = update_min
    update_min()
