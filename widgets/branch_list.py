"""The timeline's branches as a tree (a fork sits under its parent), and the checkpoints' memory.

Each row: a colour (its curves' colour when overlaid, with a box to overlay them), the branch's
id, where it came from, its steps, last loss, optimizer and why it began. A click on a row
asks to stand on that branch (``switchRequested``); the box asks for its curves
(``overlayToggled``). Under the tree: what the checkpoints hold against their bound, and the
bound itself (``budgetChanged``, in bytes).
"""
from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QPixmap
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QSpinBox, QTreeWidget, QTreeWidgetItem,
                               QVBoxLayout, QWidget)

from core.snapshot import BranchSummary
from widgets.wheel_guard import guard

# one colour per branch id (cycled), distinct from the main curves' orange, blue and green
BRANCH_COLORS = [(204, 121, 167), (0, 114, 178), (213, 94, 0), (0, 158, 115), (240, 228, 66),
                 (86, 180, 233), (230, 159, 0), (160, 160, 160)]
COLUMNS = ("", "branch", "from", "steps", "last loss", "optimizer", "why")
MB = 2 ** 20
MIN_BUDGET_MB, MAX_BUDGET_MB = 16, 2 ** 25  # 16 MB .. 32 TB, as core.edits.set_checkpoint_budget takes


def branch_color(branch: int) -> tuple[int, int, int]:
    return BRANCH_COLORS[branch % len(BRANCH_COLORS)]


def size_text(nbytes: int) -> str:
    """``1.5 MB``, ``512 MB``, ``2 GB``: short and readable."""
    for unit, size in (("GB", 2 ** 30), ("MB", MB), ("KB", 2 ** 10)):
        if nbytes >= size:
            v = nbytes / size
            return f"{v:.1f} {unit}" if v < 10 and v != int(v) else f"{round(v):,} {unit}"
    return f"{nbytes} B"


def _loss_text(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def _swatch(color) -> QIcon:
    pm = QPixmap(12, 12)
    pm.fill(QColor(*color))
    return QIcon(pm)


class BranchList(QWidget):
    """Branches (``BranchSummary``) as a tree, and the checkpoint memory with its bound."""

    switchRequested = Signal(int)  # branch id
    overlayToggled = Signal(int, bool)  # branch id, its curves shown
    budgetChanged = Signal(int)  # bytes

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._branches: tuple[BranchSummary, ...] = ()
        self._overlaid: set[int] = set()
        self._rows: dict[int, QTreeWidgetItem] = {}
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(True)
        self.tree.setIndentation(12)
        self.tree.setUniformRowHeights(True)
        self.tree.setToolTip("Click a branch to stand on it (its last step); tick the box to overlay its curves")
        header = self.tree.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.memory = QLabel()
        self.memory.setWordWrap(True)  # two lines rather than a wider dock
        self.memory.setToolTip("Checkpoints make rewinding fast; when they reach the bound the older ones "
                               "are thinned (kept denser near the present)")
        self.budgetBox = QSpinBox()
        self.budgetBox.setRange(MIN_BUDGET_MB, MAX_BUDGET_MB)
        self.budgetBox.setSuffix(" MB")
        self.budgetBox.setGroupSeparatorShown(True)
        self.budgetBox.setKeyboardTracking(False)
        self.budgetBox.setToolTip("The most memory the checkpoints may use")
        guard(self.budgetBox)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(self.memory, 1)
        bottom.addWidget(QLabel("bound"))
        bottom.addWidget(self.budgetBox)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addWidget(self.tree, 1)
        lay.addLayout(bottom)
        self.tree.itemClicked.connect(self._on_clicked)
        self.tree.itemChanged.connect(self._on_changed)
        self.budgetBox.valueChanged.connect(lambda mb: self.budgetChanged.emit(int(mb) * MB))
        self.setMemory(0, 512 * MB)

    # ----------------------------------------------------------------- public
    def setBranches(self, branches: tuple[BranchSummary, ...]) -> None:
        """Show ``branches``: while the tree keeps its shape (the same branches, the same current
        one) only the rows' texts change, so a running branch's steps and loss tick over without
        the tree being rebuilt under the mouse (selection, scroll and a click in progress stay)."""
        branches = tuple(branches)
        if branches == self._branches:
            return
        shape = tuple((b.id, b.parent, b.current) for b in branches)
        same_shape = shape == tuple((b.id, b.parent, b.current) for b in self._branches)
        self._branches = branches
        self.tree.blockSignals(True)
        if same_shape:
            for b in branches:
                self._fill(self._rows[b.id], b)
        else:
            self._rebuild(branches)
        self.tree.blockSignals(False)

    def _rebuild(self, branches) -> None:
        self._overlaid &= {b.id for b in branches}
        self.tree.clear()
        self._rows: dict[int, QTreeWidgetItem] = {}
        bold = QFont(self.tree.font())
        bold.setBold(True)
        for b in sorted(branches, key=lambda b: b.id):  # a parent always has a smaller id
            parent = self._rows.get(b.parent) if b.parent is not None else None
            item = QTreeWidgetItem(parent if parent is not None else self.tree)
            self._fill(item, b)
            for col in range(len(COLUMNS)):
                if b.current:
                    item.setFont(col, bold)
                    item.setBackground(col, QBrush(QColor(128, 128, 128, 45)))
            item.setIcon(0, _swatch(branch_color(b.id)))
            item.setCheckState(0, Qt.CheckState.Checked if b.id in self._overlaid else Qt.CheckState.Unchecked)
            item.setToolTip(0, "the current branch: its curves are drawn in full" if b.current
                            else "overlay this branch's curves, faintly, in this colour")
            item.setData(0, Qt.ItemDataRole.UserRole, b.id)
            self._rows[b.id] = item
        self.tree.expandAll()

    @staticmethod
    def _fill(item: QTreeWidgetItem, b: BranchSummary) -> None:
        """The row's texts: id, origin, steps, last loss, optimizer, why it began."""
        origin = "—" if b.parent is None else f"{b.parent} at {b.fork_step:,}"
        texts = ("", f"{'▶ ' if b.current else ''}{b.id}", origin, f"{b.steps:,}", _loss_text(b.last_loss),
                 b.optimizer, b.reason or "the first")
        for col, text in enumerate(texts):
            if item.text(col) != text:
                item.setText(col, text)
        item.setToolTip(6, b.reason or "the session's first branch")

    def branches(self) -> tuple[BranchSummary, ...]:
        return self._branches

    def item(self, branch: int) -> QTreeWidgetItem | None:
        return self._rows.get(branch)

    def overlaid(self) -> set[int]:
        """Branches whose box is ticked."""
        return set(self._overlaid)

    def setOverlay(self, branch: int, on: bool) -> None:
        """Tick or untick a branch's box (as a click would; emits ``overlayToggled``)."""
        it = self.item(branch)
        if it is not None:
            it.setCheckState(0, Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def setMemory(self, used: int, budget: int) -> None:
        """``used`` of ``budget`` bytes; the bound's box follows unless the user is typing in it."""
        self.memory.setText(f"checkpoints {size_text(used)} of {size_text(budget)}")
        if not self.budgetBox.hasFocus() and budget:
            self.setBudgetShown(budget)

    def setBudgetShown(self, budget: int) -> None:
        self.budgetBox.blockSignals(True)
        self.budgetBox.setValue(max(MIN_BUDGET_MB, min(MAX_BUDGET_MB, round(budget / MB))))
        self.budgetBox.blockSignals(False)

    # -------------------------------------------------------------- internals
    def _on_clicked(self, item: QTreeWidgetItem, column: int) -> None:
        if column == 0:
            return  # the overlay box and colour, not a switch
        # the current branch too: from a rewound step, a click goes back to its last step
        self.switchRequested.emit(int(item.data(0, Qt.ItemDataRole.UserRole)))

    def _on_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if column != 0:
            return
        b = int(item.data(0, Qt.ItemDataRole.UserRole))
        on = item.checkState(0) == Qt.CheckState.Checked
        if on == (b in self._overlaid):
            return
        (self._overlaid.add if on else self._overlaid.discard)(b)
        self.overlayToggled.emit(b, on)
