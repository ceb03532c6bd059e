"""File > New…: start from an empty problem or from one of the shipped examples.

Each entry has a picture (``resources/examples/NAME.png``, made by ``python -m
app.thumbnails``), the example's one-line name and its description as a tooltip. Also
shown at start (when no file was named) unless "Show at start" is unticked.
"""
from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QVBoxLayout, QWidget)

from core.spec import SpecError, loads

from .startup import EXAMPLES

THUMB = QSize(120, 80)
ROLE = Qt.ItemDataRole.UserRole


def empty_picture() -> QPixmap:
    """A 2x2 grid of cells: the empty problem's one 2x2 tensor."""
    pix = QPixmap(THUMB)
    pix.fill(QColor(0, 0, 0))
    p = QPainter(pix)
    side = 30
    x0, y0 = (THUMB.width() - 2 * side) // 2, (THUMB.height() - 2 * side) // 2
    for r in range(2):
        for c in range(2):
            p.fillRect(x0 + c * side + 1, y0 + r * side + 1, side - 2, side - 2, QColor(70, 110, 180))
    p.end()
    return pix


def examples() -> list[tuple[str, str, str, Path | None]]:
    """(file name, one-line title, description, picture path or None) of each example."""
    out = []
    for path in sorted(EXAMPLES.glob("*.json")):
        try:
            spec, _ = loads(path.read_text())
        except (OSError, SpecError, ValueError):
            continue  # a broken example is not offered
        png = path.with_suffix(".png")
        out.append((path.stem, spec.name or path.stem, spec.description, png if png.is_file() else None))
    return out


class NewSessionDialog(QDialog):
    """Lists "Empty problem" and the examples; ``chosen(name)`` on Open or a double-click."""

    EMPTY = ""
    chosen = Signal(str)

    def __init__(self, settings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("New session")
        self.settings = settings
        self.list = QListWidget()
        self._entries: dict[str, tuple[QLabel, QLabel]] = {}
        self.list.setSpacing(1)
        self._add(self.EMPTY, "Empty problem",
                  "One 2x2 tensor with a manual gradient of ones and SGD: build your own from here",
                  QIcon(empty_picture()))
        for name, title, description, png in examples():
            icon = QIcon(QPixmap(str(png)).scaled(THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                                  Qt.TransformationMode.SmoothTransformation)) if png else QIcon()
            self._add(name, title, description, icon)
        self.list.setCurrentRow(0)
        # a double-click opens on its release: a window that vanishes while the button is still
        # down leaves the main window without mouse moves (no hover read-outs) until the next click
        self._open_on_release = False
        self.list.itemDoubleClicked.connect(lambda _: setattr(self, "_open_on_release", True))
        self.list.viewport().installEventFilter(self)
        self.show_at_start = QCheckBox("Show at start")
        self.show_at_start.setChecked(settings.value("start/show", True, type=bool))
        self.show_at_start.toggled.connect(lambda on: settings.setValue("start/show", on))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        bottom = QHBoxLayout()
        bottom.addWidget(self.show_at_start)
        bottom.addWidget(buttons, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Start from an empty problem or from an example (hover one for what it shows):"))
        lay.addWidget(self.list, 1)
        lay.addLayout(bottom)
        self.resize(560, 560)

    def _add(self, name: str, title: str, description: str, icon: QIcon) -> None:
        """One entry: the picture, the title in bold and the description's first sentence."""
        item = QListWidgetItem()
        item.setData(ROLE, name)
        item.setToolTip(description)
        item.setSizeHint(QSize(0, THUMB.height() + 8))
        self.list.addItem(item)
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(4, 4, 4, 4)
        pic = QLabel()
        pic.setPixmap(icon.pixmap(THUMB))
        pic.setFixedSize(THUMB)
        first = description.split(". ")[0].rstrip(".") + "." if description else ""
        text = QLabel(f"<b>{html.escape(title)}</b><br><span style='color: #888'>"
                      f"{html.escape(first)}</span>")
        text.setWordWrap(True)
        text.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        lay.addWidget(pic)
        lay.addWidget(text, 1)
        row.setToolTip(description)
        self.list.setItemWidget(item, row)
        self._entries[name] = (pic, text)

    def entry(self, name: str) -> tuple[QPixmap, str]:
        """The picture and the text shown for ``name``."""
        pic, text = self._entries[name]
        return pic.pixmap(), text.text()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.MouseButtonRelease and self._open_on_release:
            self._open_on_release = False
            QTimer.singleShot(0, self.accept)
        return False

    def names(self) -> list[str]:
        """The entries' names in order ("" is the empty problem)."""
        return [self.list.item(i).data(ROLE) for i in range(self.list.count())]

    def choose(self, name: str) -> None:
        """Select ``name`` and open it, as a double-click does."""
        self.list.setCurrentRow(self.names().index(name))
        self.accept()

    def accept(self) -> None:
        item = self.list.currentItem()
        super().accept()
        if item is not None:
            self.chosen.emit(item.data(ROLE))
