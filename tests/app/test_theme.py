"""The dark palette keeps every control visible."""
from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QApplication, QCheckBox, QStyle, QStyleOptionButton

from app.theme import apply_scheme


def test_an_unchecked_checkbox_stands_out_on_the_dark_palette(qtbot):
    app = QApplication.instance()
    style, palette = app.style().name(), app.palette()
    try:
        apply_scheme(app, "dark")
        box = QCheckBox("zero_grad before every step")
        qtbot.addWidget(box)
        box.show()
        qtbot.waitExposed(box)
        img = box.grab().toImage()
        opt = QStyleOptionButton()
        opt.initFrom(box)
        r = box.style().subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, opt, box)
        window = app.palette().window().color().lightness()
        edge = [img.pixelColor(QPoint(x, r.top())) for x in range(r.left() + 2, r.right() - 1)] + \
               [img.pixelColor(QPoint(r.left(), y)) for y in range(r.top() + 2, r.bottom() - 1)]
        contrast = max(abs(c.lightness() - window) for c in edge)
        assert contrast >= 60, contrast  # the box's outline is plain to see, not 10 shades off
    finally:
        app.setStyle(style)
        app.setPalette(palette)
