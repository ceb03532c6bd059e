"""Light or dark palettes on the Fusion style, for ``--color-scheme`` (default: the desktop's).

Explicit palettes rather than Qt's colour-scheme hint: not every platform plugin (the
offscreen one among them) follows that hint. The plots keep their black background in
both schemes; the widgets' own colours come from the palette (``palette(mid)`` etc.).
"""
from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

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
    pal = QPalette()
    for role, rgb in _DARK.items():
        pal.setColor(role, QColor(*rgb))
    for role in _DISABLED:
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 120))
    app.setPalette(pal)
