"""The Compare window's side panel: the configurations in the comparison (each can be removed)
and the form that adds one (an optimizer, its arguments and an lr scheduler).

Plain widgets: the window sends what they ask for to its runner (``core.compare_edits``);
nothing here touches the comparison's runs.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QLineEdit, QListWidget, QListWidgetItem, QMenu,
                               QPushButton, QVBoxLayout, QWidget)

from core import catalogue, schedulers
from widgets.compare_plots import color_of
from widgets.scheduler_form import SchedulerForm

from .training import _scheduler_validator


class ConfigPanel(QWidget):
    """The configurations (coloured as their curves) and the add-configuration form.

    ``removeRequested(run id)`` when the user removes one (button or context menu);
    ``exportRequested(run id)`` when they ask for it as a plain PyTorch script (context menu);
    ``addRequested()`` when the user asks to add the configuration the form describes."""

    removeRequested = Signal(int)
    exportRequested = Signal(int)  # run id: write it as a plain PyTorch script
    addRequested = Signal()

    def __init__(self, n_groups=lambda: 1, parent: QWidget | None = None):
        super().__init__(parent)
        self.runs = QListWidget()
        self.runs.setToolTip("The configurations stepped together; right-click one to remove it")
        self.runs.setTextElideMode(Qt.TextElideMode.ElideRight)  # long labels: whole in each tooltip
        self.runs.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.runs.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.runs.customContextMenuRequested.connect(self._menu)
        self.remove_button = QPushButton("Remove configuration")
        self.remove_button.setToolTip("Drop the selected configuration; the others go on as they are")
        self.remove_button.clicked.connect(self._remove_selected)
        listed = QGroupBox("Configurations")
        col = QVBoxLayout(listed)
        col.addWidget(self.runs)
        col.addWidget(self.remove_button)

        self.optimizer = QComboBox()
        self.optimizer.addItems([i.name for i in catalogue.catalogue()])
        self.args = QLineEdit()
        self.args.setPlaceholderText("e.g. lr=0.01, momentum=0.9")
        self.scheduler = SchedulerForm()
        self.scheduler.setSchedulers(schedulers.catalogue(), schedulers.skipped())
        self.scheduler.setRequiredFiller(schedulers.with_required)
        self.scheduler.setValidator(_scheduler_validator(n_groups))
        self.add_button = QPushButton("Add configuration")
        self.add_button.setToolTip("It starts from the runs' first step (0, or a resumed checkpoint's) "
                                   "on the same problem and catches up with the others")
        self.add_button.clicked.connect(self.addRequested)
        adding = QGroupBox("Add a configuration")
        form = QFormLayout()
        form.addRow("optimizer", self.optimizer)
        form.addRow("arguments", self.args)
        col = QVBoxLayout(adding)
        col.addLayout(form)
        col.addWidget(self.scheduler)
        col.addWidget(self.add_button)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(listed, 1)
        lay.addWidget(adding)
        lay.addStretch(0)

    def setRuns(self, runs, slots: dict[int, int]) -> None:
        """``runs``: the frame's RunFrames; each listed in its curves' colour (kept selection)."""
        rows = [(r.id, r.label + (f" (stopped: {r.halted})" if r.halted else "")) for r in runs]
        if rows == [(self.runs.item(i).data(Qt.ItemDataRole.UserRole), self.runs.item(i).text())
                    for i in range(self.runs.count())]:
            return
        keep = self.selected()
        self.runs.clear()
        for rid, text in rows:
            item = QListWidgetItem(_swatch(color_of(slots.get(rid, 0))), text)
            item.setData(Qt.ItemDataRole.UserRole, rid)
            item.setToolTip(text)
            self.runs.addItem(item)
            if rid == keep:
                self.runs.setCurrentItem(item)

    def selected(self) -> int | None:
        item = self.runs.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def select(self, run_id: int) -> None:
        for i in range(self.runs.count()):
            if self.runs.item(i).data(Qt.ItemDataRole.UserRole) == run_id:
                self.runs.setCurrentRow(i)

    def _remove_selected(self) -> None:
        rid = self.selected()
        self.removeRequested.emit(-1 if rid is None else rid)  # -1: none chosen (the window says so)

    def _menu(self, pos) -> None:
        item = self.runs.itemAt(pos)
        if item is None:
            return
        menu = QMenu(self)
        rid = item.data(Qt.ItemDataRole.UserRole)
        menu.addAction(f"Export {item.text()} as a PyTorch script…", lambda: self.exportRequested.emit(rid))
        menu.addAction(f"Remove {item.text()}", lambda: self.removeRequested.emit(rid))
        menu.exec(self.runs.mapToGlobal(pos))


def _swatch(rgb) -> QIcon:
    """A square of the run's colour (its curves' colour; readable on a light or dark list)."""
    pix = QPixmap(12, 12)
    pix.fill(QColor(*rgb))
    return QIcon(pix)
