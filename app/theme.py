"""Light or dark palettes on the Fusion style, for ``--color-scheme`` (default: the desktop's).

Explicit palettes rather than Qt's colour-scheme hint: not every platform plugin (the
offscreen one among them) follows that hint. The plots keep their black background in
both schemes; the widgets' own colours come from the palette (``palette(mid)`` etc.).
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette, QPen
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle

_DARK = {
    QPalette.ColorRole.Window: (45, 45, 48), QPalette.ColorRole.WindowText: (225, 225, 225),
    QPalette.ColorRole.Base: (30, 30, 32), QPalette.ColorRole.AlternateBase: (45, 45, 48),
    QPalette.ColorRole.ToolTipBase: (60, 60, 64), QPalette.ColorRole.ToolTipText: (230, 230, 230),
    QPalette.ColorRole.PlaceholderText: (140, 140, 140), QPalette.ColorRole.Text: (225, 225, 225),
    QPalette.ColorRole.Button: (55, 55, 60), QPalette.ColorRole.ButtonText: (225, 225, 225),
    QPalette.ColorRole.BrightText: (255, 90, 90), QPalette.ColorRole.Link: (100, 160, 240),
    QPalette.ColorRole.Highlight: (60, 110, 190), QPalette.ColorRole.HighlightedText: (255, 255, 255),
    QPalette.ColorRole.Light: (80, 80, 85), QPalette.ColorRole.Midlight: (65, 65, 70),
    QPalette.ColorRole.Mid: (140, 140, 145), QPalette.ColorRole.Dark: (25, 25, 27),
    QPalette.ColorRole.Shadow: (10, 10, 10),
}
_DISABLED = (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText)


class OutlinedIndicators(QProxyStyle):
    """Fusion with a visible outline on check boxes and radio buttons: on a dark palette
    Fusion outlines them in a shade darker than the window, and an unchecked box vanishes."""

    BOXES = (QStyle.PrimitiveElement.PE_IndicatorCheckBox, QStyle.PrimitiveElement.PE_IndicatorItemViewItemCheck)

    def drawPrimitive(self, element, option, painter, widget=None) -> None:  # noqa: N802 (Qt name)
        super().drawPrimitive(element, option, painter, widget)
        radio = element == QStyle.PrimitiveElement.PE_IndicatorRadioButton
        if element not in self.BOXES and not radio:
            return
        painter.save()
        painter.setRenderHint(painter.RenderHint.Antialiasing, radio)
        painter.setPen(QPen(option.palette.color(QPalette.ColorRole.Mid), 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        r = option.rect.adjusted(0, 0, -1, -1)
        painter.drawEllipse(r) if radio else painter.drawRect(r)
        painter.restore()


_style = None  # the proxy style lives as long as the app


def apply_scheme(app: QApplication, scheme: str) -> None:
    """``"light"`` or ``"dark"``: the Fusion style with that palette; ``"system"`` changes nothing."""
    if scheme == "system":
        return
    if scheme not in ("light", "dark"):
        raise ValueError(f"Unknown colour scheme {scheme!r}: use system, light or dark")
    app.setStyle("Fusion")
    if scheme == "light":
        app.setPalette(app.style().standardPalette())
        return
    global _style
    _style = OutlinedIndicators("Fusion")
    app.setStyle(_style)
    pal = QPalette()
    for role, rgb in _DARK.items():
        pal.setColor(role, QColor(*rgb))
    for role in _DISABLED:
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 120))
    app.setPalette(pal)
