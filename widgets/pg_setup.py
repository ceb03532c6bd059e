"""One place for pyqtgraph's global options, so every widget draws images the same way."""
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
